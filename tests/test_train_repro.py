"""Issue 10: same inputs and seed give bit-identical adapter files on CPU; a changed seed or
hyper-parameter gives another adapter revision. Gradient accumulation keeps the update."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from valueharms.models import adapter_hash, model_revision
from valueharms.train.sft import SFTConfig, train_lora

DATA = pd.DataFrame(
    {
        "prompt": [f"Question {i}: what about {i}?" for i in range(12)],
        "completion": [" Yes." if i % 3 else f" It is {i}, and that is that." for i in range(12)],
    }
)
KW = dict(epochs=2, batch_size=4, learning_rate=1e-2, lora_dropout=0.1)


def run(base: Path, out: Path, **cfg) -> Path:
    train_lora(base, DATA, DATA.head(6), out, SFTConfig(**{**KW, **cfg}), chat=False, threads=2)
    return out


@pytest.fixture(scope="module")
def first(tiny_model_dir, tmp_path_factory) -> Path:
    return run(tiny_model_dir, tmp_path_factory.mktemp("repro") / "a")


def test_same_seed_gives_bit_identical_adapter_files(first, tiny_model_dir, tmp_path) -> None:
    again = run(tiny_model_dir, tmp_path / "b")
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (again / name).read_bytes() == (first / name).read_bytes(), name
    assert adapter_hash(again) == adapter_hash(first)
    assert model_revision(tiny_model_dir, again) == model_revision(tiny_model_dir, first)


@pytest.mark.parametrize("change", [{"seed": 43}, {"learning_rate": 2e-2}, {"lora_r": 4}])
def test_a_changed_seed_or_setting_gives_another_revision(
    change, first, tiny_model_dir, tmp_path
) -> None:
    other = run(tiny_model_dir, tmp_path / "c", **change)
    assert adapter_hash(other) != adapter_hash(first)
    assert model_revision(tiny_model_dir, other) != model_revision(tiny_model_dir, first)


def test_gradient_accumulation_gives_the_same_update(tiny_model_dir, tmp_path) -> None:
    """Micro-batches of 1 and 3 against the whole batch of 4: same losses, same adapter."""
    from safetensors.torch import load_file

    one = dict(epochs=1, max_steps=2, lora_dropout=0.0)
    whole = run(tiny_model_dir, tmp_path / "whole", **one)
    ref = load_file(whole / "adapter_model.safetensors")
    ref_log = (whole / "train_log.json").read_text()
    for micro in (1, 3):
        acc = run(tiny_model_dir, tmp_path / f"micro{micro}", micro_batch_size=micro, **one)
        got = load_file(acc / "adapter_model.safetensors")
        assert got.keys() == ref.keys()
        for k in ref:
            assert (got[k] - ref[k]).abs().max() < 1e-6, k
        assert any((ref[k] != 0).any() for k in ref if "lora_B" in k)  # it did train
        a, b = json.loads((acc / "train_log.json").read_text()), json.loads(ref_log)
        for ha, hb in zip(a["history"], b["history"], strict=True):
            # fp32 sums in another order: equal to float precision (the losses are ~12)
            assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-6)
            assert ha["valid_loss"] == pytest.approx(hb["valid_loss"], rel=1e-6)
