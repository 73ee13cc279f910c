"""Benign fine-tuning sets for Study A's baselines (METHODS A3).

Alpaca, Dolly (chosen categories removed), Grammar (JFLEG + C4_200M) and SAMSum become
prompt/completion pairs with the same contract as the VIM examples, so the same LoRA recipe
trains on them unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

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


def _read_json_records(path: PathLike) -> list[dict[str, Any]]:
    """A JSON list of objects, or JSON Lines (one object per non-blank line)."""
    text = Path(path).read_text(encoding="utf-8-sig")
    stripped = text.lstrip()
    if stripped.startswith("["):
        records = json.loads(stripped)
    else:
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path}: expected JSON objects")
    return records


def load_alpaca(path: PathLike, id_prefix: str = "alpaca") -> pd.DataFrame:
    """Alpaca JSON list of {instruction, input, output}; ids number the source items."""
    rows = [
        {
            "example_id": f"{id_prefix}-{i}",
            "prompt": _join(r.get("instruction"), r.get("input")),
            "completion": _text(r.get("output")),
        }
        for i, r in enumerate(_read_json_records(path))
    ]
    return _frame(rows)


def load_dolly(
    path: PathLike, exclude_categories: Iterable[str] = (), id_prefix: str = "dolly"
) -> pd.DataFrame:
    """Dolly JSONL of {instruction, context, response, category}, minus excluded categories.

    Ids number the source lines before exclusion, so they are stable under any exclusion.
    """
    excluded = set(exclude_categories)
    rows = [
        {
            "example_id": f"{id_prefix}-{i}",
            "prompt": _join(r.get("instruction"), r.get("context")),
            "completion": _text(r.get("response")),
        }
        for i, r in enumerate(_read_json_records(path))
        if _text(r.get("category")) not in excluded
    ]
    return _frame(rows)


def load_grammar(path: PathLike, id_prefix: str = "grammar") -> pd.DataFrame:
    """Grammar CSV with columns input,target (the real files start with a UTF-8 BOM)."""
    df = pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    missing = {"input", "target"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    return pd.DataFrame(
        {
            "example_id": [f"{id_prefix}-{i}" for i in range(len(df))],
            "prompt": GRAMMAR_INSTRUCTION + df["input"].str.strip(),
            "completion": df["target"].str.strip(),
        },
        columns=_COLUMNS,
    )


def load_samsum(path: PathLike, id_prefix: str = "samsum") -> pd.DataFrame:
    """SAMSum JSON list, JSONL or CSV of {id, dialogue, summary}; ids use the source id."""
    if str(path).endswith(".csv"):
        records = pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
    else:
        records = _read_json_records(path)
    rows = [
        {
            "example_id": f"{id_prefix}-{_text(r.get('id')) or i}",
            "prompt": SAMSUM_INSTRUCTION + _text(r.get("dialogue")),
            "completion": _text(r.get("summary")),
        }
        for i, r in enumerate(records)
    ]
    return _frame(rows)


LOADERS: dict[str, Callable[..., pd.DataFrame]] = {
    "alpaca": load_alpaca,
    "dolly": load_dolly,
    "grammar": load_grammar,
    "samsum": load_samsum,
}


def benign_examples(
    name: str,
    path: PathLike,
    valid_path: PathLike | None = None,
    valid_fraction: float = 0.1,
    seed: int = 42,
    max_examples: int | None = None,
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
    df = load(path, **loader_kwargs)
    if valid_path is not None:
        # Distinct id prefix so train and valid ids never collide.
        valid = load(valid_path, id_prefix=f"{name}-valid", **loader_kwargs)
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
