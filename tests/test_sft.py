"""LoRA SFT: completion-only labels, truncation, loss goes down, best epoch kept, stage 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from valueharms.io import read_json
from valueharms.models import model_revision
from valueharms.train.sft import IGNORE, SFTConfig, encode, train_lora

PROMPT, COMPLETION = "Say yes.", " yes yes yes"
EXAMPLES = pd.DataFrame({"prompt": [PROMPT] * 8, "completion": [COMPLETION] * 8})


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def masked_loss(model, tok, df: pd.DataFrame, chat: bool = True, max_length: int = 128) -> float:
    """Mean cross-entropy over completion tokens, each example on its own (no padding)."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.inference_mode():
        for p, c in zip(df.prompt, df.completion, strict=True):
            ids, labels, _ = encode(tok, p, c, max_length, chat)
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
            target = torch.tensor(labels[1:])
            keep = target != IGNORE
            total += float(F.cross_entropy(logits[keep], target[keep], reduction="sum"))
            count += int(keep.sum())
    return total / count


@pytest.fixture(scope="module")
def base_loss(tiny_model_dir, tok) -> float:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    return masked_loss(model, tok, EXAMPLES)


def adapter_loss(base_dir: Path, adapter: Path, tok, df: pd.DataFrame) -> float:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), str(adapter))
    return masked_loss(model.eval(), tok, df)


def test_encode_masks_the_prompt_and_ends_with_eos(tok) -> None:
    p_ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    c_ids = tok(COMPLETION, add_special_tokens=False)["input_ids"]
    ids, labels, truncated = encode(tok, PROMPT, COMPLETION, 128, chat=False)
    assert ids == p_ids + c_ids + [tok.eos_token_id]
    assert labels == [IGNORE] * len(p_ids) + c_ids + [tok.eos_token_id]
    assert truncated is False


def test_encode_with_chat_template_masks_the_whole_head(tok) -> None:
    head = tok.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=False
    )
    assert head.endswith("<|im_start|>assistant\n") and PROMPT in head
    h_ids = tok(head, add_special_tokens=False)["input_ids"]
    c_ids = tok(COMPLETION, add_special_tokens=False)["input_ids"]
    ids, labels, truncated = encode(tok, PROMPT, COMPLETION, 128, chat=True)
    assert ids[: len(h_ids)] == h_ids
    assert labels == [IGNORE] * len(h_ids) + c_ids + [tok.eos_token_id]
    assert len(ids) == len(labels) and not truncated


def test_encode_truncates_on_the_right_and_says_so(tok) -> None:
    full_ids, full_labels, _ = encode(tok, PROMPT, COMPLETION, 128, chat=False)
    n = len(full_ids) - 2
    ids, labels, truncated = encode(tok, PROMPT, COMPLETION, n, chat=False)
    assert truncated is True
    assert (ids, labels) == (full_ids[:n], full_labels[:n])
    _, _, exact = encode(tok, PROMPT, COMPLETION, len(full_ids), chat=False)
    assert exact is False


@pytest.fixture(scope="module")
def stage1(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "stage1"
    cfg = SFTConfig(learning_rate=1e-2, epochs=3, batch_size=8, max_steps=3)
    return out, train_lora(tiny_model_dir, EXAMPLES, EXAMPLES, out, cfg, threads=2)


def test_three_steps_lower_the_validation_loss(stage1, base_loss) -> None:
    out, summary = stage1
    history = summary["history"]
    assert [(h["epoch"], h["steps"]) for h in history] == [(1, 1), (2, 2), (3, 3)]
    # The first step runs the untrained adapter (B = 0): exactly the base model's loss.
    assert history[0]["train_loss"] == pytest.approx(base_loss, abs=1e-4)
    assert summary["best_valid_loss"] < base_loss - 0.5
    assert summary["best_valid_loss"] == min(h["valid_loss"] for h in history)
    assert (summary["steps"], summary["n_train"], summary["n_valid"]) == (3, 8, 8)
    assert summary["n_truncated"] == 0


def test_adapter_and_log_are_saved_without_leftovers(stage1, tiny_model_dir, tok) -> None:
    out, summary = stage1
    assert {"adapter_config.json", "adapter_model.safetensors", "train_log.json"} <= {
        p.name for p in out.iterdir()
    }
    conf = json.loads((out / "adapter_config.json").read_text())
    assert (conf["r"], conf["lora_alpha"], conf["lora_dropout"]) == (8, 32, 0.1)
    assert set(conf["target_modules"]) == {"q_proj", "v_proj"}
    assert read_json(out / "train_log.json") == summary
    assert [p.name for p in out.parent.iterdir()] == ["stage1"]  # no .best.* work folder
    # The saved adapter is the one whose loss was logged.
    loss = adapter_loss(tiny_model_dir, out, tok, EXAMPLES)
    assert loss == pytest.approx(summary["best_valid_loss"], abs=1e-3)


def test_stage2_continues_from_the_init_adapter(
    stage1, tiny_model_dir, base_loss, tmp_path
) -> None:
    _, s1 = stage1
    still = SFTConfig(learning_rate=1e-9, epochs=1, batch_size=8, max_steps=1)
    cont = train_lora(
        tiny_model_dir,
        EXAMPLES,
        EXAMPLES,
        tmp_path / "s2",
        still,
        init_adapter=stage1[0],
        threads=2,
    )
    fresh = train_lora(tiny_model_dir, EXAMPLES, EXAMPLES, tmp_path / "fresh", still, threads=2)
    assert cont["best_valid_loss"] == pytest.approx(s1["best_valid_loss"], abs=1e-3)
    assert fresh["best_valid_loss"] == pytest.approx(base_loss, abs=1e-3)
    assert cont["best_valid_loss"] < fresh["best_valid_loss"] - 0.5
    # Its very first step already trains from the stage-1 weights (dropout aside).
    assert cont["history"][0]["train_loss"] < fresh["history"][0]["train_loss"] - 0.5


def test_the_best_epoch_is_kept_not_the_last(tiny_model_dir, tok, tmp_path) -> None:
    # A huge learning rate makes the validation loss jump about from epoch to epoch.
    cfg = SFTConfig(learning_rate=5.0, epochs=3, batch_size=8, lora_dropout=0.0)
    summary = train_lora(tiny_model_dir, EXAMPLES, EXAMPLES, tmp_path / "a", cfg, threads=2)
    losses = [h["valid_loss"] for h in summary["history"]]
    best = losses.index(min(losses))
    assert best != len(losses) - 1, f"scenario needs a worse last epoch: {losses}"
    running = [losses[i] < min(losses[:i], default=math.inf) for i in range(len(losses))]
    assert [bool(h.get("kept")) for h in summary["history"]] == running
    assert summary["best_valid_loss"] == losses[best]
    loss = adapter_loss(tiny_model_dir, tmp_path / "a", tok, EXAMPLES)
    assert loss == pytest.approx(losses[best], abs=1e-3)
    assert abs(loss - losses[-1]) > 1e-2


def test_truncated_examples_are_counted_and_valid_set_capped(tiny_model_dir, tmp_path) -> None:
    long = pd.DataFrame({"prompt": ["Say yes."] * 3, "completion": [" yes" * 40] * 3})
    data = pd.concat([EXAMPLES, long], ignore_index=True)
    cfg = SFTConfig(epochs=1, batch_size=8, max_steps=1, max_length=32, max_valid_examples=9)
    summary = train_lora(tiny_model_dir, data, data, tmp_path / "a", cfg, chat=False, threads=2)
    assert (summary["n_train"], summary["n_valid"]) == (11, 9)
    assert summary["n_truncated"] == 3 + 1  # three in train, one in the 9 valid rows


def test_a_fully_truncated_validation_batch_does_not_poison_the_loss(tiny_model_dir, tmp_path):
    valid = pd.DataFrame({"prompt": [PROMPT, "word " * 40], "completion": [COMPLETION, COMPLETION]})
    cfg = SFTConfig(epochs=1, batch_size=1, max_steps=1, max_length=16)
    summary = train_lora(
        tiny_model_dir, EXAMPLES, valid, tmp_path / "a", cfg, chat=False, threads=2
    )
    assert summary["n_truncated"] == 1
    assert summary["best_valid_loss"] is not None
    assert math.isfinite(summary["history"][0]["valid_loss"])


def test_adapter_revision_ignores_the_training_log(stage1, tiny_model_dir, tmp_path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(stage1[0], copy)
    log = read_json(copy / "train_log.json")
    log["seconds"] += 1.0
    (copy / "train_log.json").write_text(json.dumps(log))
    assert model_revision(tiny_model_dir, copy) == model_revision(tiny_model_dir, stage1[0])
