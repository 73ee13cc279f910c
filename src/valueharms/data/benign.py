"""Benign fine-tuning sets for Study A's baselines (METHODS A3).

Alpaca, Dolly (chosen categories removed), Grammar (JFLEG + C4_200M) and SAMSum become
prompt/completion pairs with the same contract as the VIM examples, so the same LoRA recipe
trains on them unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from valueharms.data.sources import (
    DataError,
    LoadReport,
    check_rows,
    require_columns,
    require_file,
)
from valueharms.io import jsonl_objects

BENIGN_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("split", pa.string(), nullable=False),
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("completion", pa.string(), nullable=False),
    ]
)

GRAMMAR_INSTRUCTION = "Correct the grammar of this sentence:\n"
SAMSUM_INSTRUCTION = "Summarize this dialogue:\n"

_COLUMNS = ["example_id", "prompt", "completion"]

PathLike = str | os.PathLike[str]


def _text(value: Any) -> str:
    """A field as a string; missing (None/NaN) becomes ""."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value)


def _join(instruction: Any, extra: Any) -> str:
    """Instruction, plus a blank line and `extra` when `extra` is non-empty."""
    instruction, extra = _text(instruction), _text(extra)
    return f"{instruction}\n\n{extra}" if extra.strip() else instruction


def _frame(rows: list[dict[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=_COLUMNS)


def _read_json_records(name: str, path: PathLike) -> list[dict[str, Any] | None]:
    """A JSON list of objects, or JSON Lines (one object per non-blank line).

    A JSONL line that does not parse to an object comes back as None (a malformed row for
    the caller to count); a JSON list that does not parse stops with a DataError.
    """
    require_file(name, path)
    text = Path(path).read_text(encoding="utf-8-sig")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(stripped)
        except json.JSONDecodeError as err:
            raise DataError(f"datasets.{name}.path: {path} is not valid JSON: {err}") from err
        return [r if isinstance(r, dict) else None for r in records]
    return jsonl_objects(text.splitlines())


def _records(
    name: str,
    path: PathLike,
    records: list[dict[str, Any] | None],
    needed: list[str],
    nonempty: list[str],
    expected_rows: int | None,
    report: LoadReport | None,
) -> tuple[list[tuple[int, dict[str, Any]]], LoadReport]:
    """(source index, record) of the well-formed records; the rest counted in the report."""
    require_columns(name, path, sorted({k for r in records if r for k in r}), needed)
    check_rows(name, path, len(records), expected_rows)
    rep = report if report is not None else LoadReport(name, str(path))
    rep.rows_in = len(records)
    good: list[tuple[int, dict[str, Any]]] = []
    for i, r in enumerate(records):
        if r is None:
            rep.drop("not a JSON object", 1)
        elif any(f not in r for f in needed):
            rep.drop(f"lacks one of {needed}", 1)
        elif any(not _text(r.get(f)).strip() for f in nonempty):
            rep.drop(f"empty {' or '.join(nonempty)}", 1)
        else:
            good.append((i, r))
    return good, rep


def load_alpaca(
    path: PathLike,
    id_prefix: str = "alpaca",
    expected_rows: int | None = None,
    report: LoadReport | None = None,
) -> pd.DataFrame:
    """Alpaca JSON list of {instruction, input, output}; ids number the source items."""
    records = _read_json_records("alpaca", path)
    good, rep = _records(
        "alpaca",
        path,
        records,
        ["instruction", "output"],
        ["instruction", "output"],
        expected_rows,
        report,
    )
    rows = [
        {
            "example_id": f"{id_prefix}-{i}",
            "prompt": _join(r.get("instruction"), r.get("input")),
            "completion": _text(r.get("output")),
        }
        for i, r in good
    ]
    rep.close(len(rows))
    return _frame(rows)


def load_dolly(
    path: PathLike,
    exclude_categories: Iterable[str] = (),
    id_prefix: str = "dolly",
    expected_rows: int | None = None,
    report: LoadReport | None = None,
) -> pd.DataFrame:
    """Dolly JSONL of {instruction, context, response, category}, minus excluded categories.

    Ids number the source lines before exclusion, so they are stable under any exclusion.
    Excluded rows are counted in the report under their own reason.
    """
    excluded = set(exclude_categories)
    records = _read_json_records("dolly", path)
    good, rep = _records(
        "dolly",
        path,
        records,
        ["instruction", "response", "category"],
        ["instruction", "response"],
        expected_rows,
        report,
    )
    kept = [(i, r) for i, r in good if _text(r.get("category")) not in excluded]
    rep.drop(f"category excluded {sorted(excluded)}", len(good) - len(kept))
    rows = [
        {
            "example_id": f"{id_prefix}-{i}",
            "prompt": _join(r.get("instruction"), r.get("context")),
            "completion": _text(r.get("response")),
        }
        for i, r in kept
    ]
    rep.close(len(rows))
    return _frame(rows)


def load_grammar(
    path: PathLike,
    id_prefix: str = "grammar",
    expected_rows: int | None = None,
    report: LoadReport | None = None,
    name: str = "grammar",
) -> pd.DataFrame:
    """Grammar CSV with columns input,target (the real files start with a UTF-8 BOM)."""
    require_file(name, path)
    df = pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    require_columns(name, path, list(df.columns), ["input", "target"])
    check_rows(name, path, len(df), expected_rows)
    rep = report if report is not None else LoadReport(name, str(path))
    rep.rows_in = len(df)
    empty = df["input"].str.strip().eq("") | df["target"].str.strip().eq("")
    rep.drop("empty input or target", int(empty.sum()))
    df = df[~empty]
    rep.close(len(df))
    return pd.DataFrame(
        {
            "example_id": [f"{id_prefix}-{i}" for i in df.index],
            "prompt": GRAMMAR_INSTRUCTION + df["input"].str.strip(),
            "completion": df["target"].str.strip(),
        },
        columns=_COLUMNS,
    ).reset_index(drop=True)


def load_samsum(
    path: PathLike,
    id_prefix: str = "samsum",
    expected_rows: int | None = None,
    report: LoadReport | None = None,
) -> pd.DataFrame:
    """SAMSum JSON list, JSONL or CSV of {id, dialogue, summary}; ids use the source id.

    The public train split holds one record with an empty dialogue: it is dropped and
    counted, like any record lacking a field.
    """
    if str(path).endswith(".csv"):
        require_file("samsum", path)
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        records: list[dict[str, Any] | None] = df.to_dict("records")
    else:
        records = _read_json_records("samsum", path)
    good, rep = _records(
        "samsum",
        path,
        records,
        ["id", "dialogue", "summary"],
        ["dialogue", "summary"],
        expected_rows,
        report,
    )
    rows = [
        {
            "example_id": f"{id_prefix}-{_text(r.get('id')) or i}",
            "prompt": SAMSUM_INSTRUCTION + _text(r.get("dialogue")),
            "completion": _text(r.get("summary")),
        }
        for i, r in good
    ]
    rep.close(len(rows))
    return _frame(rows)


LOADERS: dict[str, Callable[..., pd.DataFrame]] = {
    "alpaca": load_alpaca,
    "dolly": load_dolly,
    "grammar": load_grammar,
    "samsum": load_samsum,
}


@dataclass(frozen=True)
class ExpectedRows:
    """The data rows a benign set's files should have (None: not checked): the main file
    and the valid split's file (grammar)."""

    data: int | None = None
    valid: int | None = None


def benign_examples(
    name: str,
    path: PathLike,
    valid_path: PathLike | None = None,
    valid_fraction: float = 0.1,
    seed: int = 42,
    max_examples: int | None = None,
    expected_rows: ExpectedRows | None = None,
    **loader_kwargs: Any,
) -> pd.DataFrame:
    """Train/valid examples of one benign set, in BENIGN_SCHEMA.

    With `valid_path` (grammar) that file is the valid split; otherwise `valid_fraction` of
    the rows is held out by a seeded sample. The train split is shuffled with `seed` and then
    capped to its first `max_examples` rows. `loader_kwargs` go to the loader (for example
    `exclude_categories` for dolly).
    """
    if name not in LOADERS:
        raise ValueError(f"unknown benign set {name!r}; expected one of {sorted(LOADERS)}")
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    if max_examples is not None and max_examples < 0:
        raise ValueError(f"max_examples must be >= 0, got {max_examples}")
    load = LOADERS[name]
    rows = expected_rows or ExpectedRows()
    df = load(path, expected_rows=rows.data, **loader_kwargs)
    if valid_path is not None:
        # Distinct id prefix so train and valid ids never collide.
        if name == "grammar":
            loader_kwargs = {**loader_kwargs, "name": "grammar_valid"}
        valid = load(
            valid_path,
            id_prefix=f"{name}-valid",
            expected_rows=rows.valid,
            **loader_kwargs,
        )
        train = df
    else:
        valid = df.sample(frac=valid_fraction, random_state=seed)
        train = df.drop(valid.index)
    train = train.sample(frac=1.0, random_state=seed)
    if max_examples is not None:
        train = train.head(max_examples)
    if train["example_id"].duplicated().any() or valid["example_id"].duplicated().any():
        raise ValueError(f"{name}: duplicate example ids in {path}")
    out = pd.concat([train.assign(split="train"), valid.assign(split="valid")], ignore_index=True)
    return out[BENIGN_SCHEMA.names]
