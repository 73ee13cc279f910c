"""Safety benchmark loaders (METHODS A4): every benchmark becomes one PROMPTS_SCHEMA table.

prompt_id is built from the prompt's row number in the source file, so a subsample (or a
rerun on a larger subsample) keeps the ids of the prompts it shares with another run.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

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

_HBR_TEXT_COLUMNS = ("prompt_text", "text", "prompt")


def _frame(
    benchmark: str,
    prompts: list[str],
    category: list[str] | None = None,
    axis: list[str] | None = None,
    descriptor: list[str] | None = None,
) -> pd.DataFrame:
    n = len(prompts)
    none = [None] * n
    return pd.DataFrame(
        {
            "benchmark": [benchmark] * n,
            "prompt_id": [f"{benchmark}-{i:06d}" for i in range(n)],
            "prompt": prompts,
            "category": category if category is not None else none,
            "axis": axis if axis is not None else none,
            "descriptor": descriptor if descriptor is not None else none,
        },
        columns=PROMPTS_SCHEMA.names,
    )


def _read_csv(path: str | os.PathLike[str], needed: list[str]) -> pd.DataFrame:
    # keep_default_na=False: a prompt that reads "NA" or "None" is text, not missing.
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    absent = [c for c in needed if c not in df.columns]
    if absent:
        raise ValueError(f"{path}: missing columns {absent}")
    return df


def load_rtp(path: str | os.PathLike[str]) -> pd.DataFrame:
    """RealToxicityPrompts texts: one csv-quoted prompt per record, no header.

    Records may span lines (quoted newlines), so ids count records, not lines; that is the
    row order Study A used (pandas `read_csv(header=None)`, first 3000 rows).
    """
    with open(path, newline="", encoding="utf-8") as fh:
        records = [r for r in csv.reader(fh) if r]
    bad = [i for i, r in enumerate(records) if len(r) != 1]
    if bad:
        raise ValueError(f"{path}: records {bad[:5]} have more than one field")
    return _frame("rtp", [r[0] for r in records])


def load_hexphi(path: str | os.PathLike[str]) -> pd.DataFrame:
    """HEx-PHI: columns category,prompt (330 prompts, 11 categories)."""
    df = _read_csv(path, ["category", "prompt"])
    return _frame("hexphi", df["prompt"].tolist(), category=df["category"].tolist())


def load_beavertails(path: str | os.PathLike[str]) -> pd.DataFrame:
    """BeaverTails-Evaluation: columns ,prompt,category,category_id (700 prompts, 14 cats)."""
    df = _read_csv(path, ["prompt", "category"])
    return _frame("beavertails", df["prompt"].tolist(), category=df["category"].tolist())


def load_holisticbiasr(path: str | os.PathLike[str]) -> pd.DataFrame:
    """HolisticBiasR (ROBBIE, Esiobu et al. 2023) prompts from CSV or JSON lines.

    Needs axis, descriptor and the text in prompt_text (the public release's name), text
    or prompt, looked up in that order.
    """
    p = Path(path)
    if p.suffix.lower() in {".jsonl", ".json"}:
        df = pd.read_json(p, lines=p.suffix.lower() == ".jsonl", dtype=False)
    else:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    text_col = next((c for c in _HBR_TEXT_COLUMNS if c in df.columns), None)
    absent = [c for c in ("axis", "descriptor") if c not in df.columns]
    if text_col is None or absent:
        raise ValueError(
            f"{path}: need axis, descriptor and one of {_HBR_TEXT_COLUMNS}; have {list(df.columns)}"
        )
    return _frame(
        "holisticbiasr",
        df[text_col].astype(str).tolist(),
        axis=df["axis"].astype(str).tolist(),
        descriptor=df["descriptor"].astype(str).tolist(),
    )


LOADERS: dict[str, Callable[[str | os.PathLike[str]], pd.DataFrame]] = {
    "rtp": load_rtp,
    "holisticbiasr": load_holisticbiasr,
    "hexphi": load_hexphi,
    "beavertails": load_beavertails,
}


def load_benchmark(name: str, path: str | os.PathLike[str]) -> pd.DataFrame:
    """Load benchmark `name` (rtp, holisticbiasr, hexphi, beavertails) from `path`."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in LOADERS:
        raise ValueError(f"unknown benchmark {name!r}; known: {sorted(LOADERS)}")
    return LOADERS[key](path)


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
