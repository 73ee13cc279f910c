"""LoRA SFT: completion-only labels, truncation, loss goes down, best epoch kept, stage 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from valueharms.io import read_json
from valueharms.models import model_revision
from valueharms.train.sft import (
    IGNORE,
    SFTConfig,
    _batches,
    batch_loss,
    encode,
    epoch_batches,
    token_losses,
    train_lora,
)

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


# Issue 10: the efficient loss path (own-length padding, length-grouped batches, lm_head only
# where a target token is predicted) gives the published recipe's loss.
VARIED = [
    ("Say yes.", " yes"),  # the shortest: 5 tokens
    ("Tell me what you think about public transport being free for everyone.", " I agree."),
    ("Why?", " Because fewer cars would mean cleaner air and much quieter streets."),
    ("Name a colour.", " Blue, the colour of the sea."),
    ("Should we ban fast food? " * 6, " No"),
]


def per_example_losses(model, ids, labels, mask, target_only: bool):
    import torch

    losses, row = token_losses(model, ids, labels, mask, target_only)
    n = len(ids)
    total = torch.zeros(n, dtype=losses.dtype).index_add_(0, row, losses)
    return total / torch.bincount(row, minlength=n)


@pytest.fixture
def random_lora(tiny_model_dir):
    """The tiny model with a LoRA adapter whose A and B are random and non-zero."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    cfg = LoraConfig(r=8, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    cfg.init_lora_weights = False
    return get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)


def test_target_only_loss_equals_the_padded_full_logits_loss(random_lora, tok) -> None:
    import torch

    model = random_lora.eval()
    rows = [encode(tok, p, c, 128, chat=False)[:2] for p, c in VARIED]
    assert len({len(i) for i, _ in rows}) == len(rows)  # all lengths differ
    everything = [list(range(len(rows)))]
    full = next(_batches(rows, everything, tok.pad_token_id, width=128))
    own = next(_batches(rows, everything, tok.pad_token_id))
    assert full[0].shape[1] == 128 and own[0].shape[1] == max(len(i) for i, _ in rows)
    with torch.no_grad():
        published = per_example_losses(model, *full, target_only=False)
        ours = per_example_losses(model, *own, target_only=True)
        torch.testing.assert_close(ours, published, rtol=0, atol=1e-5)
        # The batch loss is the mean over target tokens, as transformers' `labels=` loss.
        torch.testing.assert_close(
            batch_loss(model, *own, target_only=True),
            batch_loss(model, *full, target_only=False),
            rtol=0,
            atol=1e-5,
        )
        with model.disable_adapter():  # the adapter matters: it is in both paths
            plain = per_example_losses(model, *own, target_only=True)
    assert (plain - ours).abs().min() > 1e-3
    # Same gradients on the LoRA weights, so the optimisation is unchanged.
    grads = []
    for batch, target_only in ((full, False), (own, True)):
        model.zero_grad()
        batch_loss(model, *batch, target_only=target_only).backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_length_grouped_batches_cover_every_example_once_and_pad_less() -> None:
    import random

    import torch

    rng = random.Random(0)
    lengths = [rng.randint(20, 128) for _ in range(203)]

    def pad_share(batches):
        padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
        return 1 - sum(lengths) / padded

    grouped = epoch_batches(lengths, 8, torch.Generator().manual_seed(42), True)
    again = epoch_batches(lengths, 8, torch.Generator().manual_seed(42), True)
    plain = epoch_batches(lengths, 8, torch.Generator().manual_seed(42), False)
    assert grouped == again  # seeded
    assert sorted(i for b in grouped for i in b) == list(range(203))
    assert sorted(i for b in plain for i in b) == list(range(203))
    assert len(grouped) == len(plain) == 26
    assert pad_share(grouped) < 0.1 < 0.3 < pad_share(plain)
    # Without grouping, the batches are cut from the permutation train_lora always drew.
    order = torch.randperm(203, generator=torch.Generator().manual_seed(42)).tolist()
    assert [i for b in plain for i in b] == order


def test_the_published_recipe_is_still_selectable(tiny_model_dir, base_loss, tmp_path) -> None:
    kw = dict(learning_rate=1e-2, epochs=1, batch_size=8, max_steps=1, lora_dropout=0.0)
    published = SFTConfig(
        **kw, group_by_length=False, target_only_logits=False, pad_to_max_length=True
    )
    a = train_lora(tiny_model_dir, EXAMPLES, EXAMPLES, tmp_path / "a", published, threads=2)
    b = train_lora(tiny_model_dir, EXAMPLES, EXAMPLES, tmp_path / "b", SFTConfig(**kw), threads=2)
    assert a["history"][0]["train_loss"] == pytest.approx(base_loss, abs=1e-4)
    assert b["history"][0]["train_loss"] == pytest.approx(base_loss, abs=1e-4)
    assert a["best_valid_loss"] == pytest.approx(b["best_valid_loss"], abs=1e-4)
