"""Train-stage steps: file in, adapter directory out."""

from __future__ import annotations

from typing import Any

import pandas as pd

from valueharms.data.vim import VIM_SCHEMA
from valueharms.io import read_table
from valueharms.models import prepare_base_model
from valueharms.train.sft import SFTConfig, train_lora


def sft_config(cfg: dict[str, Any]) -> SFTConfig:
    keys = set(SFTConfig.__dataclass_fields__)
    return SFTConfig(**{k: v for k, v in cfg.items() if k in keys})


def _cap(df: pd.DataFrame, n: int | None) -> pd.DataFrame:
    return df if n is None else df.head(n)


def prepare_model(spec: dict[str, Any], out_dir: str) -> None:
    prepare_base_model(spec, out_dir)


def train_examples(
    base_dir: str,
    examples: pd.DataFrame,
    cfg: dict[str, Any],
    out_dir: str,
    init_adapter: str | None = None,
    chat: bool = True,
    threads: int = 1,
) -> dict[str, Any]:
    """Train one adapter on prompt/completion rows with a `split` column."""
    train = _cap(examples[examples["split"] == "train"], cfg.get("max_train_examples"))
    valid = examples[examples["split"] == "valid"]
    return train_lora(base_dir, train, valid, out_dir, sft_config(cfg), init_adapter, chat, threads)


def vim_stage(
    base_dir: str,
    examples_path: str,
    stage: int,
    cfg: dict[str, Any],
    out_dir: str,
    init_adapter: str | None = None,
    chat: bool = True,
    threads: int = 1,
) -> dict[str, Any]:
    examples = read_table(examples_path, VIM_SCHEMA)
    return train_examples(
        base_dir, examples[examples["stage"] == stage], cfg, out_dir, init_adapter, chat, threads
    )
