"""Preference training (Study B, B2) through TRL on the tiny random Llama."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from valueharms.io import read_json
from valueharms.train.preference import (
    ADAPTER_FILES,
    LOG_FILE,
    PreferenceConfig,
    train_preference,
)

pytest.importorskip("trl")

PAIRS = pd.DataFrame(
    {
        "prompt": [
            "How was your day?",
            "I failed my exam.",
            "My dog is sick.",
            "I lost my keys again.",
        ],
        "chosen": [
            "I hope it was kind to you; tell me more.",
            "I am so sorry, that must hurt.",
            "That sounds worrying, I hope he feels better.",
            "How frustrating, I understand the feeling.",
        ],
        "rejected": ["Fine.", "Study more.", "Go to a vet.", "Look for them."],
    }
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _cfg(method: str = "dpo", **kw: Any) -> PreferenceConfig:
    # A large lr and few steps so the tiny model moves clearly within seconds.
    base = dict(method=method, learning_rate=1e-3, batch_size=2, max_steps=6, logging_steps=1)
    return PreferenceConfig(**(base | kw))


def _completion_logps(model: Any, tok: Any, pairs: pd.DataFrame) -> Any:
    """Summed log-prob of each chosen and rejected reply after its chat-formatted prompt.

    Written from scratch (no TRL code): the reply tokens are those that the full chat
    conversation adds after the prompt rendered with its generation prompt.
    """
    import torch

    out = []
    for prompt, *replies in zip(pairs.prompt, pairs.chosen, pairs.rejected, strict=True):
        user = [{"role": "user", "content": prompt}]
        head = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
        head_ids = tok(head, add_special_tokens=False)["input_ids"]
        row = []
        for reply in replies:
            full = tok.apply_chat_template(
                [*user, {"role": "assistant", "content": reply}], tokenize=False
            )
            ids = tok(full, add_special_tokens=False)["input_ids"]
            assert ids[: len(head_ids)] == head_ids
            x = torch.tensor([ids])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=x).logits[0, :-1].float(), -1)
            targets = x[0, 1:]
            per_token = logp.gather(1, targets[:, None])[:, 0]
            row.append(float(per_token[len(head_ids) - 1 :].sum()))
        out.append(row)
    return torch.tensor(out)  # (pairs, [chosen, rejected])


def test_dpo_raises_the_chosen_over_rejected_margin(tiny_model_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "adapters" / "empathy"
    summary = train_preference(tiny_model_dir, PAIRS, out, _cfg(), chat=True, threads=2)

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, str(out)).eval()
    policy = _completion_logps(model, tok, PAIRS)
    with model.disable_adapter():
        reference = _completion_logps(model, tok, PAIRS)
    # DPO's implicit reward margin: (policy - reference) on chosen minus on rejected.
    diff = policy - reference
    margins = diff[:, 0] - diff[:, 1]
    assert reference.abs().min() > 0 and diff.abs().max() > 1e-3  # the adapter does act
    assert float(margins.mean()) > 0.5, margins
    assert bool((margins > 0).all()), margins

    assert summary["method"] == "dpo" and summary["beta"] == 0.1
    assert summary["steps"] == 6 and summary["chat_template"] is True
    steps = [h for h in summary["history"] if "rewards/margins" in h]
    assert [h["step"] for h in steps] == [1, 2, 3, 4, 5, 6]
    assert steps[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)  # adapter starts at 0
    assert steps[-1]["rewards/margins"] > 0 and "rewards/accuracies" in steps[-1]
    assert read_json(out / LOG_FILE) == summary


def test_saved_dir_holds_only_the_adapter_and_log(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "models" / "orpo"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("from an older run")  # replaced as a whole
    summary = train_preference(tiny_model_dir, PAIRS, out, _cfg("orpo", max_steps=2), chat=True)
    assert sorted(os.listdir(out)) == sorted([*ADAPTER_FILES, LOG_FILE])
    assert sorted(os.listdir(out.parent)) == ["orpo"]  # no temp dirs, no TRL checkpoints
    assert summary["method"] == "orpo" and summary["steps"] == 2
    assert all("loss" in h and "nll_loss" in h for h in summary["history"])
    cfg = read_json(out / "adapter_config.json")
    assert (cfg["r"], cfg["lora_alpha"]) == (4, 16)
    assert sorted(cfg["target_modules"]) == ["q_proj", "v_proj"]


def test_same_seed_same_run_and_raw_text_without_chat(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(max_steps=2)
    a = train_preference(tiny_model_dir, PAIRS, tmp_path / "a", cfg, chat=False)
    b = train_preference(tiny_model_dir, PAIRS, tmp_path / "b", cfg, chat=False)
    assert a["chat_template"] is False
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert (tmp_path / "a" / ADAPTER_FILES[1]).read_bytes() == (
        tmp_path / "b" / ADAPTER_FILES[1]
    ).read_bytes()


def test_config_checks() -> None:
    cfg = PreferenceConfig()
    assert (cfg.lora_r, cfg.lora_alpha, cfg.learning_rate, cfg.epochs, cfg.beta) == (
        4,
        16,
        5e-6,
        5,
        0.1,
    )
    with pytest.raises(ValueError, match="method"):
        PreferenceConfig(method="ppo")
    with pytest.raises(ValueError, match="disable_dropout"):
        PreferenceConfig(lora_dropout=0.1)
    with pytest.raises(ValueError, match="rejected"):
        train_preference("unused", PAIRS.drop(columns="rejected"), "unused", PreferenceConfig())
