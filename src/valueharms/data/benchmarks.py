"""Benchmark loading (METHODS A4): every benchmark becomes one PROMPTS_SCHEMA table.

The loaders themselves are registered per benchmark (valueharms.benchmarks); here are
the pieces they share, the dispatch and the subsampling.

prompt_id is built from the prompt's row number in the source file, so a subsample (or a
rerun on a larger subsample) keeps the ids of the prompts it shares with another run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from valueharms.data.sources import LoadReport, check_rows, require_columns, require_file

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


def read_csv(
    name: str, path: str | os.PathLike[str], needed: list[str], expected_rows: int | None
) -> pd.DataFrame:
    require_file(name, path)
    # keep_default_na=False: a prompt that reads "NA" or "None" is text, not missing.
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    require_columns(name, path, list(df.columns), needed)
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


def categorised_loader(name: str) -> Callable[..., pd.DataFrame]:
    """The loader of a CSV of prompts with a category column (columns prompt, category):
    empty prompts or categories are dropped and counted."""

    def load(
        path: str | os.PathLike[str],
        expected_rows: int | None = None,
        report: LoadReport | None = None,
    ) -> pd.DataFrame:
        df = read_csv(name, path, ["prompt", "category"], expected_rows)
        rep = load_report(name, path, report)
        rep.rows_in = len(df)
        df = drop_empty(df, ["prompt", "category"], rep)
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
) -> pd.DataFrame:
    """Load benchmark `name` with its registered loader (valueharms.benchmarks)."""
    from valueharms import benchmarks

    bench = benchmarks.get(name)
    if bench.load is None:
        raise ValueError(f"benchmark {name!r} has no loader: its prompts are built elsewhere")
    return bench.load(path, expected_rows=expected_rows, report=report)


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
