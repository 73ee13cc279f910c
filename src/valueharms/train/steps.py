"""Train-stage steps: file in, adapter directory out.

Each Snakemake script calls one of the `*_job` entry points at the end, which read the
rule's job record (valueharms.job.Job) and call the step of that name.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from valueharms.data.vim import VIM_SCHEMA
from valueharms.io import read_table
from valueharms.job import Job
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


# --- the scripts' entry points: a rule's job record -> its step ------------------------


def prepare_model_job(job: Job) -> None:
    prepare_model(dict(job.params["spec"]), job.output[0])


def with_special_tokens(train: dict[str, Any], tokenization: dict[str, Any] | None) -> dict:
    """sft settings plus config tokenization.add_special_tokens (its own param, a
    top-level key: the backends read it too); absent, the schema default."""
    special = (tokenization or {}).get("add_special_tokens", True)
    return {**train, "add_special_tokens": bool(special)}


def _train_cfg(job: Job) -> dict[str, Any]:
    return with_special_tokens(job.params["train"], job.params.get("tokenization"))


def train_benign_job(job: Job) -> None:
    from valueharms.data.benign import BENIGN_SCHEMA

    train_examples(
        job.input["base"],
        read_table(job.input["examples"], BENIGN_SCHEMA),
        _train_cfg(job),
        job.output[0],
        chat=job.params["chat"],
        threads=job.threads,
    )


def vim_stage_job(job: Job) -> None:
    vim_stage(
        job.input["base"],
        job.input["examples"],
        job.params["stage"],
        _train_cfg(job),
        job.output[0],
        init_adapter=job.input.get("init"),
        chat=job.params["chat"],
        threads=job.threads,
    )
