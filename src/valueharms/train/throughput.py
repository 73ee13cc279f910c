"""LoRA SFT training throughput: Study A's published recipe against our loss path (issue 10).

Every recipe trains the same model, with the same LoRA settings, seed and examples, for the
same number of optimizer steps through `valueharms.train.sft`'s own batching and loss code:

- published: every batch padded to max_length (128), full-vocabulary logits everywhere,
  batches cut from a shuffled order (Study A's code);
- grouped: length-grouped batches, each padded to its own longest example;
- ours: grouped + lm_head only at the positions that predict a target token.

Each recipe runs in a fresh child process, so its peak resident memory (CPU) or peak
allocated GPU memory is its own. Throughput counts the timed steps (all but the first,
a warm-up); target tokens are the completion tokens the loss is taken on, real tokens the
non-padding tokens of the batch.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from valueharms import VALUES
from valueharms.train.sft import (
    IGNORE,
    SFTConfig,
    _batches,
    batch_loss,
    encode,
    epoch_batches,
    lora_config,
    supports_target_only,
)

RECIPES: dict[str, dict[str, bool]] = {
    "published": dict(group_by_length=False, target_only_logits=False, pad_to_max_length=True),
    "grouped": dict(group_by_length=True, target_only_logits=False, pad_to_max_length=False),
    "ours": dict(group_by_length=True, target_only_logits=True, pad_to_max_length=False),
}
LABELS = {
    "published": "published (pad to 128, full logits)",
    "grouped": "own-length padding, length-grouped",
    "ours": "+ target-only lm_head (ours)",
}


@dataclass
class Job:
    base_dir: str
    prompts: list[str]
    completions: list[str]
    recipe: str
    steps: int
    threads: int
    device: str
    dtype: str  # "fp32" or "bf16" (autocast; GPU only)
    chat: bool = False  # Study A's Llama-2-7B is a base model: no chat template
    seed: int = 42
    batch_size: int = 8
    max_length: int = 128


def vim_examples(touche: str | Path, n: int, seed: int = 42) -> pd.DataFrame:
    """`n` stage-1 VIM examples (prompt, completion) built from a Touché argument file.

    The target alternates low and high value scores, so both positive and negative
    examples occur. Cycles through the examples when the file gives fewer than `n`.
    """
    from valueharms.data import vim

    root = Path(__file__).resolve().parents[3]
    templates = vim.load_templates(vim.default_template_paths(root / "resources" / "prompts"))
    target = {v: (2.0 if i % 2 else 5.0) for i, v in enumerate(VALUES)}
    ex = vim.stage1_examples(vim.read_touche(touche), target, templates, seed=seed)
    if ex.empty:
        raise ValueError(f"{touche}: no stage-1 examples")
    ex = ex.sample(frac=1.0, random_state=seed)
    reps = -(-n // len(ex))
    return pd.concat([ex] * reps, ignore_index=True).head(n)[["prompt", "completion"]]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_recipe(job: Job) -> dict[str, Any]:
    """Train `job.steps` steps under one recipe; throughput, memory and losses."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

    flags = RECIPES[job.recipe]
    cfg = SFTConfig(batch_size=job.batch_size, max_length=job.max_length, seed=job.seed, **flags)
    torch.set_num_threads(job.threads)
    torch.manual_seed(cfg.seed)
    cuda = job.device.startswith("cuda")
    tok = AutoTokenizer.from_pretrained(job.base_dir)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(job.base_dir, dtype=torch.float32)
    n_params = sum(p.numel() for p in model.parameters())
    model = get_peft_model(model, lora_config(cfg)).to(job.device)
    target_only = cfg.target_only_logits and supports_target_only(model)
    rows = []
    for p, c in zip(job.prompts, job.completions, strict=True):
        ids, labels, _ = encode(tok, p, c, cfg.max_length, chat=job.chat)
        if any(x != IGNORE for x in labels[1:]):
            rows.append((ids, labels))
    lengths = [len(i) for i, _ in rows]
    width = cfg.max_length if cfg.pad_to_max_length else None
    gen = torch.Generator().manual_seed(cfg.seed)
    batches: list[list[int]] = []
    while len(batches) < job.steps:
        batches += epoch_batches(lengths, cfg.batch_size, gen, cfg.group_by_length)
    batches = batches[: job.steps]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5)
    sched = get_linear_schedule_with_warmup(opt, 0, job.steps)

    def autocast():
        on = cuda and job.dtype == "bf16"
        return torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=on)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    model.train()
    rss0 = _peak_rss_mib()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        mem0 = torch.cuda.memory_allocated() / 2**20
    losses: list[float] = []
    counts = {"target": 0, "real": 0, "padded": 0}
    elapsed = 0.0
    for step, (ids, labels, mask) in enumerate(_batches(rows, batches, pad_id, width)):
        sync()
        t0 = time.perf_counter()
        ids, labels, mask = ids.to(job.device), labels.to(job.device), mask.to(job.device)
        with autocast():
            loss = batch_loss(model, ids, labels, mask, target_only)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
        sync()
        if step == 0:
            continue  # warm-up
        elapsed += time.perf_counter() - t0
        counts["target"] += int((labels[:, 1:] != IGNORE).sum())
        counts["real"] += int(mask.sum())
        counts["padded"] += mask.numel()
    peak = torch.cuda.max_memory_allocated() / 2**20 - mem0 if cuda else _peak_rss_mib() - rss0

    # Same measures for every recipe, in eval mode: the loss on all examples after
    # training, and one fixed batch (the first 8 examples) through both loss paths.
    model.eval()
    every = [list(range(i, min(i + 8, len(rows)))) for i in range(0, len(rows), 8)]
    tot, n = 0.0, 0
    with torch.inference_mode(), autocast():
        for ids, labels, mask in _batches(rows, every, pad_id):
            k = int((labels[:, 1:] != IGNORE).sum())
            b = [t.to(job.device) for t in (ids, labels, mask)]
            tot += float(batch_loss(model, *b, target_only=target_only)) * k
            n += k
        full = [t.to(job.device) for t in next(_batches(rows, every[:1], pad_id, 128))]
        own = [t.to(job.device) for t in next(_batches(rows, every[:1], pad_id))]
        fixed_published = float(batch_loss(model, *full, target_only=False))
        fixed_ours = float(batch_loss(model, *own, target_only=True))
    timed = max(len(batches) - 1, 1)
    out = {
        "recipe": job.recipe,
        "device": job.device,
        "dtype": job.dtype,
        "threads": job.threads,
        "steps": len(batches),
        "timed_steps": timed,
        "examples": len(rows),
        "chat": job.chat,
        "s_per_step": elapsed / timed,
        "target_tokens_per_s": counts["target"] / elapsed,
        "real_tokens_per_s": counts["real"] / elapsed,
        "pad_fraction": 1 - counts["real"] / counts["padded"],
        "peak_mem_mib": peak,
        "mem_kind": "cuda max allocated" if cuda else "max RSS",
        "mean_train_loss": sum(losses) / len(losses),
        "final_loss": tot / n,
        "fixed_batch_loss_published": fixed_published,
        "fixed_batch_loss_ours": fixed_ours,
        "params": n_params,
    }
    return out


def run_isolated(job: Job) -> dict[str, Any]:
    """`run_recipe` in a fresh child process (its own peak memory, its own torch state)."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_recipe, (job,))


def compare(jobs: list[Job], peak_tflops: float | None = None) -> list[dict[str, Any]]:
    results = []
    for job in jobs:
        print(f"running {job.recipe} ({job.dtype}, {job.device}) ...", file=sys.stderr)
        r = run_isolated(job)
        if peak_tflops:
            r["mfu"] = 6 * r["params"] * r["real_tokens_per_s"] / (peak_tflops * 1e12)
        results.append(r)
    for r in results:
        base = next(
            (b for b in results if b["recipe"] == "published" and b["dtype"] == r["dtype"]), None
        )
        if base:
            r["speedup"] = r["target_tokens_per_s"] / base["target_tokens_per_s"]
    return results


def markdown(results: list[dict[str, Any]]) -> str:
    mfu = any("mfu" in r for r in results)
    head = [
        "recipe",
        "dtype",
        "s/step",
        "target tok/s",
        "real tok/s",
        "pad fraction",
        f"peak mem (MiB, {results[0]['mem_kind']} delta)",
        "mean train loss",
        "final loss (all examples)",
        "speed-up (target tok/s)",
    ] + (["MFU"] if mfu else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [
            LABELS.get(r["recipe"], r["recipe"]),
            r["dtype"],
            f"{r['s_per_step']:.2f}",
            f"{r['target_tokens_per_s']:.1f}",
            f"{r['real_tokens_per_s']:.1f}",
            f"{r['pad_fraction']:.1%}",
            f"{r['peak_mem_mib']:.0f}",
            f"{r['mean_train_loss']:.6f}",
            f"{r['final_loss']:.6f}",
            f"{r['speedup']:.2f}x" if "speedup" in r else "",
        ] + ([f"{r['mfu']:.1%}" if "mfu" in r else ""] if mfu else [])
        lines.append("| " + " | ".join(cells) + " |")
    diffs = [abs(r["fixed_batch_loss_published"] - r["fixed_batch_loss_ours"]) for r in results]
    r0 = results[0]
    lines.append("")
    lines.append(
        f"{r0['examples']} examples, {'chat template' if r0['chat'] else 'raw prompts'}, "
        f"{r0['steps']} steps per recipe (the first untimed), {r0['threads']} threads, "
        f"{r0['device']}."
    )
    lines.append(
        f"Fixed batch (first 8 examples, after the {r0['recipe']} run): published path "
        f"{r0['fixed_batch_loss_published']:.6f}, our path {r0['fixed_batch_loss_ours']:.6f}; "
        f"largest difference over all runs {max(diffs):.2e}."
    )
    return "\n".join(lines)


def jobs_for(
    base_dir: str | Path,
    examples: pd.DataFrame,
    recipes: list[str],
    dtypes: list[str],
    steps: int,
    threads: int,
    device: str,
    chat: bool = False,
) -> list[Job]:
    return [
        Job(
            str(base_dir),
            list(examples.prompt),
            list(examples.completion),
            recipe,
            steps,
            threads,
            device,
            dtype,
            chat,
        )
        for dtype in dtypes
        for recipe in recipes
    ]


__all__ = ["RECIPES", "Job", "compare", "jobs_for", "markdown", "run_recipe", "vim_examples"]
