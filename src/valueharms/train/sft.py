"""LoRA supervised fine-tuning with loss on the completion tokens only.

Serves both VIM stages (stage 2 continues the stage-1 adapter) and the benign baselines.
The epoch with the lowest validation loss is kept (Study A's recipe).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from valueharms.io import write_json

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass
class SFTConfig:
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    learning_rate: float = 2e-5
    epochs: int = 5
    batch_size: int = 8
    max_length: int = 128
    max_steps: int | None = None  # cap on optimizer steps in total (demo, smoke tests)
    max_valid_examples: int | None = None
    seed: int = 42
    # Efficient loss path (issue 10); same optimisation, same loss. All three at their
    # other value give Study A's published recipe: every batch padded to max_length, the
    # full vocabulary's logits at every position, batches cut from a shuffled order.
    group_by_length: bool = True  # batches of similar lengths (seeded), see epoch_batches
    target_only_logits: bool = True  # lm_head only where a target token is predicted
    pad_to_max_length: bool = False  # pad every batch to max_length, not to its longest


# Chunks of this many batches are sorted by length before batches are cut from them.
GROUP_CHUNK_BATCHES = 50


def encode(tokenizer: Any, prompt: str, completion: str, max_length: int, chat: bool):
    """Token ids and labels with the prompt masked out; flags right-truncation."""
    if chat:
        head = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
    else:
        head = prompt
    p_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = p_ids + c_ids
    labels = [IGNORE] * len(p_ids) + c_ids
    truncated = len(ids) > max_length
    return ids[:max_length], labels[:max_length], truncated


def epoch_batches(
    lengths: list[int], size: int, gen: Any, group_by_length: bool
) -> list[list[int]]:
    """One epoch's batches (lists of row indices), drawn from the torch generator `gen`.

    Without grouping: batches cut from a random permutation (the published recipe). With
    grouping: the same permutation is cut into chunks of GROUP_CHUNK_BATCHES batches, each
    chunk is sorted by length (longest first) and cut into batches, and the batch order is
    shuffled, so a batch holds examples of similar length and pads little.
    """
    import torch

    order = torch.randperm(len(lengths), generator=gen).tolist()
    if not group_by_length:
        return [order[i : i + size] for i in range(0, len(order), size)]
    chunk = GROUP_CHUNK_BATCHES * size
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: -lengths[i])
        batches.extend(part[i : i + size] for i in range(0, len(part), size))
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def _batches(
    rows: list[tuple[list[int], list[int]]],
    batches: list[list[int]],
    pad_id: int,
    width: int | None = None,
):
    """Right-padded (ids, labels, mask) per batch: to `width` if given, else its longest."""
    import torch

    for batch in batches:
        chunk = [rows[i] for i in batch]
        w = width if width is not None else max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), w), pad_id)
        labels = torch.full((len(chunk), w), IGNORE)
        mask = torch.zeros((len(chunk), w), dtype=torch.long)
        for j, (i_, l_) in enumerate(chunk):
            ids[j, : len(i_)] = torch.tensor(i_)
            labels[j, : len(l_)] = torch.tensor(l_)
            mask[j, : len(i_)] = 1
        yield ids, labels, mask


def _causal_lm(model: Any) -> Any:
    """The causal LM inside a PeftModel (LoRA layers injected in place), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supports_target_only(model: Any) -> bool:
    """Whether logits are plain lm_head(hidden) (no soft-capping or scaling after it)."""
    lm = _causal_lm(model)
    cfg = lm.config
    plain = not getattr(cfg, "final_logit_softcapping", None) and getattr(
        cfg, "logit_scale", 1.0
    ) in (None, 1.0)
    return plain and lm.get_output_embeddings() is not None and hasattr(lm, "get_decoder")


def token_losses(model: Any, ids: Any, labels: Any, mask: Any, target_only: bool):
    """Cross-entropy (fp32) of every target token in the batch, and the row it belongs to.

    Token t of a row is predicted at position t - 1, as in transformers' causal LM loss.
    `target_only` runs the decoder for hidden states and applies lm_head only at the
    positions that predict a target token; otherwise the full vocabulary's logits are
    computed at every position (the published recipe). The two give the same numbers.
    """
    import torch.nn.functional as F

    target = labels[:, 1:]
    keep = target != IGNORE
    if target_only:
        lm = _causal_lm(model)
        hidden = lm.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = lm.get_output_embeddings()(hidden[:, :-1][keep])
    else:
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1][keep]
    losses = F.cross_entropy(logits.float(), target[keep], reduction="none")
    return losses, keep.nonzero()[:, 0]


def batch_loss(model: Any, ids: Any, labels: Any, mask: Any, target_only: bool):
    """Mean cross-entropy over the batch's target tokens (transformers' `labels=` loss)."""
    if not target_only:
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss
    losses, _ = token_losses(model, ids, labels, mask, target_only=True)
    return losses.mean()


def lora_config(cfg: SFTConfig) -> Any:
    """The peft LoRA config of a run (one place, so the benchmark trains the same)."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )


def train_lora(
    base_dir: str | Path,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    out_dir: str | Path,
    cfg: SFTConfig,
    init_adapter: str | Path | None = None,
    chat: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter on `train` (prompt, completion) and save the best epoch."""
    import torch
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

    from valueharms.llm.hf import pick_device

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    device, dtype = pick_device()
    tok = AutoTokenizer.from_pretrained(base_dir)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)
    if init_adapter:
        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    else:
        model = get_peft_model(model, lora_config(cfg))
    model.to(device)

    if cfg.max_valid_examples is not None:
        valid = valid.head(cfg.max_valid_examples)
    enc_train = [
        encode(tok, p, c, cfg.max_length, chat)
        for p, c in zip(train.prompt, train.completion, strict=True)
    ]
    enc_valid = [
        encode(tok, p, c, cfg.max_length, chat)
        for p, c in zip(valid.prompt, valid.completion, strict=True)
    ]
    n_trunc = sum(t for *_, t in enc_train) + sum(t for *_, t in enc_valid)
    if n_trunc:
        log.warning("%d examples longer than max_length=%d were truncated", n_trunc, cfg.max_length)
    # An example truncated before its completion has nothing to learn or score: drop it.
    rows_train = [(i, lab) for i, lab, _ in enc_train if any(x != IGNORE for x in lab[1:])]
    rows_valid = [(i, lab) for i, lab, _ in enc_valid if any(x != IGNORE for x in lab[1:])]
    n_no_target = len(enc_train) + len(enc_valid) - len(rows_train) - len(rows_valid)
    if n_no_target:
        log.warning("%d examples lost their whole completion to truncation: dropped", n_no_target)
    if not rows_train:
        raise ValueError(
            f"no training examples left: {len(enc_train)} given, {n_no_target} lost their "
            f"completion to truncation at max_length={cfg.max_length} (raise max_length)"
        )

    steps_per_epoch = math.ceil(len(rows_train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate
    )
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=0, num_training_steps=total)
    gen = torch.Generator().manual_seed(cfg.seed)
    lengths = [len(ids) for ids, _ in rows_train]

    target_only = cfg.target_only_logits and supports_target_only(model)
    if cfg.target_only_logits and not target_only:
        log.warning("this model post-processes its logits: computing them at every position")
    width = cfg.max_length if cfg.pad_to_max_length else None
    # The validation loss is token-weighted over all batches, so their order and makeup
    # do not change it: sorted by length, they pad little.
    v_order = list(range(len(rows_valid)))
    if cfg.group_by_length:
        v_order.sort(key=lambda i: -len(rows_valid[i][0]))
    valid_batches = [
        v_order[i : i + cfg.batch_size] for i in range(0, len(v_order), cfg.batch_size)
    ]

    def valid_loss() -> float:
        model.eval()
        losses, weights = [], []
        with torch.inference_mode():
            for ids, labels, mask in _batches(rows_valid, valid_batches, pad_id, width):
                n = int((labels[:, 1:] != IGNORE).sum())
                if n == 0:  # every completion token truncated away: nothing to score
                    continue
                loss = batch_loss(
                    model, ids.to(device), labels.to(device), mask.to(device), target_only
                )
                losses.append(float(loss) * n)
                weights.append(n)
        model.train()
        return sum(losses) / max(sum(weights), 1) if weights else float("nan")

    history: list[dict[str, Any]] = []
    best = math.inf
    step = 0
    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix=".best.", dir=Path(out_dir).parent))
    work.chmod(0o755)
    model.train()
    try:
        bar = tqdm(total=total, desc="train", unit="step")
        for epoch in range(1, cfg.epochs + 1):
            batches = epoch_batches(lengths, cfg.batch_size, gen, cfg.group_by_length)
            train_losses = []
            for ids, labels, mask in _batches(rows_train, batches, pad_id, width):
                if step >= total:
                    break
                loss = batch_loss(
                    model, ids.to(device), labels.to(device), mask.to(device), target_only
                )
                loss.backward()
                opt.step()
                sched.step()
                opt.zero_grad()
                step += 1
                train_losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(loss=f"{train_losses[-1]:.3f}")
            vloss = valid_loss()
            history.append(
                {
                    "epoch": epoch,
                    "steps": step,
                    "train_loss": _mean(train_losses),
                    "valid_loss": vloss,
                }
            )
            log.info("epoch %d: train %.4f valid %.4f", epoch, history[-1]["train_loss"], vloss)
            if not vloss >= best:  # also keeps the first epoch when the valid set is empty (NaN)
                best = vloss if not math.isnan(vloss) else best
                shutil.rmtree(work, ignore_errors=True)
                model.save_pretrained(work)
                history[-1]["kept"] = True
            if step >= total:
                break
        bar.close()
        summary = {
            "history": history,
            "best_valid_loss": None if math.isinf(best) else best,
            "steps": step,
            "n_train": len(rows_train),
            "n_valid": len(rows_valid),
            "n_truncated": n_trunc,
            "n_dropped_no_target": n_no_target,
            "seconds": round(time.time() - t0, 2),
            "device": device,
        }
        write_json(work / "train_log.json", summary)
        out_dir = Path(out_dir)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        work.rename(out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")
