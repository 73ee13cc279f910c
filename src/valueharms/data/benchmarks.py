"""Benchmark loading (METHODS A4): every benchmark becomes one PROMPTS_SCHEMA table.

The loaders themselves are registered per benchmark (valueharms.benchmarks); here are
the pieces they share, the dispatch and the subsampling.

prompt_id is built from the prompt's row number in the source file, so a subsample (or a
rerun on a larger subsample) keeps the ids of the prompts it shares with another run.

Files are read strictly (issue 21): bytes that are not UTF-8, a quote left open, a row with
the wrong number of fields, a row that spans lines in a format whose rows never do (rows
merged by a stray quote) are DataErrors naming the config key, the file and the line.
Repeated prompts are dropped and counted, an error, or kept and counted, as
`datasets.<name>.duplicates` says (DUPLICATES).
"""

from __future__ import annotations

import csv
import inspect
import io
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from valueharms.data.sources import (
    DataError,
    LoadReport,
    check_rows,
    data_error,
    require_columns,
    require_file,
)

# datasets.<name>.duplicates: what a loader does with a prompt that repeats an earlier one.
DUPLICATES: tuple[str, ...] = ("drop", "error", "keep")
# The line a row starts on in its file: for messages only, never a prompts column.
LINE = "__line__"

PROMPTS_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("category", pa.string()),
        pa.field("axis", pa.string()),
        pa.field("descriptor", pa.string()),
    ]
)


def frame(
    benchmark: str,
    prompts: list[str],
    category: list[str] | None = None,
    axis: list[str] | None = None,
    descriptor: list[str] | None = None,
    rows: list[int] | None = None,
) -> pd.DataFrame:
    """PROMPTS_SCHEMA frame; ids number the source rows (`rows`, default 0..n-1)."""
    n = len(prompts)
    none = [None] * n
    rows = list(range(n)) if rows is None else rows
    return pd.DataFrame(
        {
            "benchmark": [benchmark] * n,
            "prompt_id": [f"{benchmark}-{i:06d}" for i in rows],
            "prompt": prompts,
            "category": category if category is not None else none,
            "axis": axis if axis is not None else none,
            "descriptor": descriptor if descriptor is not None else none,
        },
        columns=PROMPTS_SCHEMA.names,
    )


def load_report(name: str, path: str | os.PathLike[str], report: LoadReport | None) -> LoadReport:
    return report if report is not None else LoadReport(name, str(path))


def read_text(name: str, path: str | os.PathLike[str]) -> str:
    """The whole file as text: UTF-8 (a BOM is dropped), or a DataError naming the line
    of the first byte that is not (a Latin-1 or Windows-1252 export, say)."""
    data = require_file(name, path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise data_error(
            name,
            path,
            f"line {line}, byte {col}",
            f"not UTF-8 (byte 0x{data[err.start]:02x}); re-save the file as UTF-8 "
            "(e.g. `iconv -f latin1 -t utf-8`)",
        ) from None


def _at(line: int, row: int) -> str:
    """A row's place in messages: the file's line, and the 0-based data row (its id)."""
    return f"line {line} (row {row})"


def _csv_error(
    name: str, path: str | os.PathLike[str], err: csv.Error, line: int, start: int
) -> DataError:
    msg = str(err)
    if "unexpected end of data" in msg:
        return data_error(
            name, path, f"line {start}", "a quote opened here is never closed (the file ends)"
        )
    if "expected after" in msg:
        what = (
            f"text after a closing quote ({msg}): a quote left open on line {start} (rows "
            "merged up to here) or an unescaped quote inside a quoted field"
        )
        return data_error(name, path, f"line {line}", what)
    return data_error(name, path, f"line {line}", f"malformed CSV ({msg})")


def _records(
    name: str, path: str | os.PathLike[str], blank_ws: bool
) -> tuple[list[list[str]], list[tuple[int, int]]]:
    """Every record of a CSV file, strictly parsed, with the (first, last) line of each.

    Blank lines are skipped (as pandas does), and so are whitespace-only ones when
    `blank_ws` (pandas again; a one-column file keeps them, to count as empty texts).
    """
    reader = csv.reader(io.StringIO(read_text(name, path), newline=""), strict=True)
    records: list[list[str]] = []
    lines: list[tuple[int, int]] = []
    end = 0
    try:
        for rec in reader:
            start, end = end + 1, reader.line_num
            if not rec or (blank_ws and len(rec) == 1 and not rec[0].strip()):
                continue
            records.append(rec)
            lines.append((start, end))
    except csv.Error as err:
        raise _csv_error(name, path, err, reader.line_num, end + 1) from None
    return records, lines


def read_rows(
    name: str,
    path: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    one_line: bool = True,
) -> pd.DataFrame:
    """A CSV file as strings, parsed strictly (module docstring).

    The first line is the header unless `columns` names the columns of a header-less
    file. Every row needs exactly the header's number of fields; with `one_line` (formats
    whose rows never hold a line break) a row spanning lines is an error: rows merged by a
    quote left open. Index: the 0-based data row; column LINE: the line it starts on.
    """
    records, lines = _records(name, path, blank_ws=columns is None or len(columns) > 1)
    if columns is None:
        if not records:
            raise data_error(name, path, "", "no header line (an empty file?)")
        columns, _ = records.pop(0), lines.pop(0)
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise data_error(name, path, "header", f"repeats columns {repeated}")
    for i, (rec, (start, stop)) in enumerate(zip(records, lines, strict=True)):
        if one_line and stop != start:
            raise data_error(
                name,
                path,
                f"lines {start}-{stop} (row {i})",
                "one row spans several lines, which this file's rows never do: rows merged "
                f"by a quote left open on line {start}?",
            )
        if len(rec) != len(columns):
            raise data_error(
                name,
                path,
                _at(start, i),
                f"{len(rec)} fields where the file has {len(columns)} ({list(columns)}): "
                "an unquoted comma, or a quote that closes early?",
            )
    df = pd.DataFrame(records, columns=list(columns), dtype=object)
    df[LINE] = [start for start, _ in lines]
    return df


def read_csv(
    name: str, path: str | os.PathLike[str], needed: list[str], expected_rows: int | None
) -> pd.DataFrame:
    """A CSV file with a header (`read_rows`), checked for its `needed` columns and the
    declared row count. No NA parsing: a prompt that reads "NA" or "None" is text."""
    df = read_rows(name, path)
    require_columns(name, path, [c for c in df.columns if c != LINE], needed)
    check_rows(name, path, len(df), expected_rows)
    return df


def drop_empty(df: pd.DataFrame, columns: list[str], rep: LoadReport) -> pd.DataFrame:
    """Drop (and count) rows whose `columns` are blank; the first blank column names why."""
    keep = pd.Series(True, index=df.index)
    for col in columns:
        blank = keep & df[col].str.strip().eq("")
        rep.drop(f"empty {col}", int(blank.sum()))
        keep &= ~blank
    return df[keep]


def drop_duplicates(
    df: pd.DataFrame,
    key: list[str],
    rep: LoadReport,
    path: str | os.PathLike[str],
    duplicates: str = "drop",
    what: str = "prompt",
) -> pd.DataFrame:
    """Rows whose `key` columns (whitespace-stripped) repeat an earlier row's: dropped and
    counted ("drop"), an error naming both lines ("error"), or kept and counted ("keep"),
    as "duplicate <what>". The first of the repeated rows is the one kept."""
    name = rep.dataset
    check_duplicates_setting(name, duplicates)
    if df.empty:
        return df
    stripped = pd.DataFrame({k: df[k].str.strip() for k in key})
    dup = stripped.duplicated(keep="first")
    n = int(dup.sum())
    if duplicates == "error" and n:
        i = dup.idxmax()
        j = (stripped == stripped.loc[i]).all(axis=1).idxmax()
        raise data_error(
            name,
            path,
            _at(df.at[i, LINE], i),
            f"repeats the {what} of {_at(df.at[j, LINE], j)} ({n} repeated rows in all); "
            f"set datasets.{name}.duplicates to drop (or keep) repeats",
        )
    if duplicates == "keep":
        rep.flag(f"duplicate {what}", n)
        return df
    rep.drop(f"duplicate {what}", n)
    return df[~dup]


def duplicates_setting(name: str, config: dict[str, Any] | None) -> str | None:
    """datasets.<name>.duplicates of `config`; None: the loader's default."""
    return (((config or {}).get("datasets") or {}).get(name) or {}).get("duplicates")


def check_duplicates_setting(name: str, duplicates: str) -> None:
    if duplicates not in DUPLICATES:
        raise DataError(
            f"datasets.{name}.duplicates: {duplicates!r} is not one of {list(DUPLICATES)}"
        )


def categorised_loader(name: str) -> Callable[..., pd.DataFrame]:
    """The loader of a CSV of prompts with a category column (columns prompt, category):
    empty prompts or categories are dropped and counted, and so are repeated prompts
    (`duplicates`: drop_duplicates). No row spans lines in these files."""

    def load(
        path: str | os.PathLike[str],
        expected_rows: int | None = None,
        report: LoadReport | None = None,
        duplicates: str = "drop",
    ) -> pd.DataFrame:
        df = read_csv(name, path, ["prompt", "category"], expected_rows)
        rep = load_report(name, path, report)
        rep.rows_in = len(df)
        df = drop_empty(df, ["prompt", "category"], rep)
        df = drop_duplicates(df, ["prompt"], rep, path, duplicates)
        rep.close(len(df))
        return frame(
            name, df["prompt"].tolist(), category=df["category"].tolist(), rows=df.index.tolist()
        )

    return load


def load_benchmark(
    name: str,
    path: str | os.PathLike[str],
    expected_rows: int | None = None,
    report: LoadReport | None = None,
    duplicates: str | None = None,
) -> pd.DataFrame:
    """Load benchmark `name` with its registered loader (valueharms.benchmarks).

    `duplicates` (datasets.<name>.duplicates; None: the loader's own default) goes to
    loaders that check repeated prompts; setting it for one that does not is an error.
    """
    from valueharms import benchmarks

    bench = benchmarks.get(name)
    if bench.load is None:
        raise ValueError(f"benchmark {name!r} has no loader: its prompts are built elsewhere")
    if duplicates is None:
        return bench.load(path, expected_rows=expected_rows, report=report)
    if "duplicates" not in inspect.signature(bench.load).parameters:
        raise DataError(f"datasets.{name}.duplicates: {name}'s loader does not check repeats")
    return bench.load(path, expected_rows=expected_rows, report=report, duplicates=duplicates)


def subsample(
    df: pd.DataFrame,
    n: int | None,
    seed: int = 0,
    stratify: bool = False,
    mode: Literal["random", "head"] = "random",
) -> pd.DataFrame:
    """A deterministic subset of `n` prompts, returned in prompt_id order.

    mode="head" keeps the first n (Study A took the first 3000 RTP prompts). With
    `stratify` and n >= number of categories, one prompt per category is drawn first so
    no category vanishes; the rest are drawn uniformly from what remains.
    """
    ordered = df.sort_values("prompt_id", kind="stable").reset_index(drop=True)
    if n is None or n >= len(ordered):
        return ordered
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if mode == "head":
        return ordered.iloc[:n].reset_index(drop=True)
    if mode != "random":
        raise ValueError(f"unknown mode {mode!r}; use random or head")
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    cats = ordered["category"]
    if stratify and cats.notna().all():
        groups = list(ordered.groupby("category", sort=True).indices.values())
        if n >= len(groups):
            chosen = [int(rng.choice(idx)) for idx in groups]
    rest = np.setdiff1d(np.arange(len(ordered)), chosen)
    chosen += rng.choice(rest, size=n - len(chosen), replace=False).tolist()
    return ordered.iloc[sorted(chosen)].reset_index(drop=True)
