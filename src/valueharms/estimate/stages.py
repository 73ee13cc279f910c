"""The arithmetic of the estimate, one line per stage and item (valueharms.estimate).

FLOP model (per token, P = the model's parameters):
- forward pass: 2P (one multiply-add per weight);
- LoRA training step: 4P. A full fine-tune costs about 6P per token: 2P forward, 2P for
  the gradients of the activations and 2P for those of the weights (Kaplan et al. 2020,
  "Scaling laws", Sec. 2.1). LoRA freezes the base weights, so their weight gradients are
  never formed; the adapters' own parameters are under 0.1% of P and are left out;
- gradient checkpointing (TRL's default on a GPU; studyb.train.gradient_checkpointing)
  runs the forward pass again in the backward pass: +2P;
- a DPO step also runs the reference model (the base with the adapter off) forward on
  both sequences of a pair: +2P; ORPO has no reference model;
- generation and judging: 2P per prompt token and per generated token;
- attention's own FLOPs (about 12 x layers x hidden x context per token, a few percent at
  these context lengths) are left out.
GPU-hours = FLOPs / (the GPU's peak dense bf16 FLOP/s x MFU) / 3600, with MFU the
`estimate.mfu.training` or `.generation` share of the peak a job really reaches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from valueharms.estimate import measure
from valueharms.estimate.measure import Lengths, TokenCounter
from valueharms.estimate.tables import Gpu, ModelSize, lora_params, model_size

FORWARD = 2.0  # FLOPs per parameter per token, forward pass
LORA_TRAIN = 4.0  # forward + backward of a LoRA step (no weight gradients of the base)
RECOMPUTE = 2.0  # gradient checkpointing: one more forward pass
ADAPTER_BYTES = 4  # LoRA weights are kept and saved in fp32 (peft casts adapters up)
BASE_BYTES = 2  # a hub model's weights on disk, bf16 safetensors
PARQUET_RATIO = 3.0  # rough compression of text columns in Parquet (zstd/snappy)
TRAINING = ("VIM stage 1", "VIM stage 2", "benign training", "Study B preference training")
CACHE_ENTRY = 300  # bytes of JSON around each cached LLM answer (key, sampling, status)


@dataclass
class Line:
    """One row of the estimate. `count` is what `unit` says (adapters, subjects, calls,
    runs); `tokens` is training tokens (real, not padding), generated tokens (an upper
    bound) or an LLM judge's input tokens, as `stage` says."""

    stage: str
    name: str
    model: str | None
    where: str  # GPU | API | CPU
    count: int
    unit: str
    examples: int | None = None  # per adapter (training), prompts per subject (generation)
    epochs: float | None = None
    tokens_per_example: float | None = None
    tokens: float = 0.0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    output_tokens_typical: float = 0.0
    requests: float = 0.0  # LLM requests (one cache entry each; a request holds its samples)
    flops: float | None = 0.0
    gpu_hours: float | None = 0.0
    usd: float | None = None
    usd_typical: float | None = None
    disk_bytes: float = 0.0
    lengths: str = ""  # where counts and lengths came from (files, datasets.yaml keys)
    source: str = ""  # the short label of the tables: measured | paper | ASSUMED
    assumed: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class Context:
    """What every stage reads: the plan, the estimate's settings and tables."""

    plan: Any
    settings: dict[str, Any]
    gpu: Gpu
    prices: dict[str, Any]
    defaults: dict[str, Any]
    counter: TokenCounter
    notes: list[str] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)  # benchmark -> calls.Answers
    _cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        return self.plan.config

    def size(self, model: str) -> ModelSize:
        key = ("size", model)
        if key not in self._cache:
            s = model_size(self.config, model)
            if s.params is None:
                self.notes.append(
                    f"model {model}: parameter count unknown (not in the built-in table); "
                    f"its GPU-hours are left out: set estimate.params_b.{model}"
                )
            self._cache[key] = s
        return self._cache[key]

    def hours(self, flops: float | None, kind: str) -> float | None:
        if flops is None:
            return None
        return flops / (self.gpu.peak_flops * self.settings["mfu"][kind]) / 3600.0

    def cached(self, key: Any, make: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def prompts(self, bench: str) -> Lengths:
        return self.cached(
            ("prompts", bench),
            lambda: measure.prompt_lengths(self.plan, bench, self.counter, self.defaults),
        )

    def tokens(self, text: str | None) -> float:
        return float(self.counter([text])[0]) if text else 0.0


def source_label(origins: list[str]) -> str:
    """The weakest of some origins ("measured: <file>", "paper: ...", "assumed: <key>")."""
    kinds = {o.split(":")[0] for o in origins}
    return "ASSUMED" if "assumed" in kinds else "paper" if "paper" in kinds else "measured"


def _flops(size: ModelSize, per_param: float, tokens: float) -> float | None:
    return None if size.params is None else per_param * size.params * tokens


# --- LoRA SFT: VIM stages and benign sets -----------------------------------------------


@dataclass(frozen=True)
class SftRun:
    """adapters trained alike on one dataset: the stage, its config block and data."""

    stage: str
    name: str
    adapters: int
    sft: dict[str, Any]
    data: Lengths


def sft_line(ctx: Context, run: SftRun) -> Line:
    """Training tokens (examples x epochs x tokens per example, each cut at max_length),
    FLOPs of the padded batches, plus a forward pass over the valid split each epoch."""
    cfg, data, base = run.sft, run.data, ctx.config["base_model"]
    size = ctx.size(base)
    n = data.rows if not cfg["max_train_examples"] else min(data.rows, cfg["max_train_examples"])
    n_valid = data.valid_rows
    if cfg["max_valid_examples"]:
        n_valid = min(n_valid, cfg["max_valid_examples"])
    seen = n * cfg["epochs"]  # examples through the model per adapter
    if cfg["max_steps"]:
        seen = min(seen, cfg["max_steps"] * cfg["batch_size"])
    epochs = seen / n if n else 0.0
    per_example = data.mean(cfg["max_length"])
    if cfg["pad_to_max_length"]:
        padded = float(cfg["max_length"])
    elif cfg["group_by_length"]:
        padded = per_example  # batches of similar lengths: little padding
    else:
        padded = data.padded_mean(cfg["micro_batch_size"] or cfg["batch_size"], cfg["max_length"])
    valid_tokens = math.ceil(epochs) * n_valid * data.mean(cfg["max_length"], data.valid_tokens)
    tokens = seen * per_example * run.adapters
    flops = _flops(size, LORA_TRAIN, seen * padded * run.adapters)
    vflops = _flops(size, FORWARD, valid_tokens * run.adapters)
    total = None if flops is None or vflops is None else flops + vflops
    lora = lora_params(size.arch, cfg["lora_r"], list(cfg["target_modules"]))
    line = Line(
        run.stage, run.name, base, "GPU", run.adapters, "adapters", n, epochs, per_example,
        tokens=tokens, flops=total, gpu_hours=ctx.hours(total, "training"),
        disk_bytes=(lora or 0) * ADAPTER_BYTES * run.adapters,
        lengths=data.origin, source=source_label([data.origin]), assumed=data.assumed,
    )  # fmt: skip
    if padded > per_example * 1.01:
        line.notes.append(f"padding: {padded:.0f} tokens per example computed")
    if lora is None:
        line.notes.append("adapter size unknown (model shapes or target modules unknown)")
    return line


def sft_lines(ctx: Context) -> list[Line]:
    plan, cfg = ctx.plan, ctx.config
    extra = 1 + int(cfg["tokenization"]["add_special_tokens"])  # EOS, and BOS on raw text
    runs = []
    if cfg["vim"]["enabled"] and plan.dists:
        s1, s2 = measure.vim_lengths(plan, ctx.counter, ctx.defaults, extra)
        n = len(plan.dists)
        runs.append(SftRun("VIM stage 1", f"{n} distributions", n, cfg["vim"]["stage1"], s1))
        runs.append(SftRun("VIM stage 2", f"{n} distributions", n, cfg["vim"]["stage2"], s2))
    for name in cfg["benign"]["select"]:
        data = measure.benign_lengths(plan, name, ctx.counter, ctx.defaults, extra)
        runs.append(SftRun("benign training", name, 1, cfg["benign"]["train"], data))
    return [sft_line(ctx, r) for r in runs]


# --- Study B: DPO / ORPO -----------------------------------------------------------------


def _pair_lengths(
    pool: dict[str, Lengths], max_length: int, group: int
) -> tuple[float, float, bool]:
    """Mean tokens of one sequence (prompt + one response), real and padded, over the
    pool's sources weighted by their pairs; and whether any source was assumed."""
    rows = np.array([p.rows for p in pool.values()], dtype=float)
    w = rows / rows.sum() if rows.sum() else np.ones(len(rows)) / max(len(rows), 1)
    real = sum(wi * p.mean(max_length) for wi, p in zip(w, pool.values(), strict=True))
    padded = sum(
        wi * p.padded_mean(group, max_length) for wi, p in zip(w, pool.values(), strict=True)
    )
    return float(real), float(padded), any(p.assumed for p in pool.values())


def preference_lines(ctx: Context) -> list[Line]:
    """One line per (model, method): adapters = betas x values, each trained on its
    value's subset for `epochs`; a pair is two sequences (prompt + chosen, + rejected)."""
    sbp, t = ctx.plan.sb, ctx.config["studyb"]["train"]
    if not sbp.runs:
        return []
    pool = ctx.cached(
        "pool", lambda: measure.preference_lengths(ctx.plan, ctx.counter, ctx.defaults)
    )
    sizes = ctx.cached("subsets", lambda: measure.subset_sizes(ctx.plan, pool, ctx.defaults))
    group = 2 * t["batch_size"]  # TRL pads chosen and rejected of a batch together
    real, padded, pool_assumed = _pair_lengths(pool, t["max_length"], group)
    ckpt = t["gradient_checkpointing"] is not False  # null: on, on a GPU
    lines = []
    for model, method in dict.fromkeys((r.model, r.method) for r in sbp.runs):
        runs = [r for r in sbp.runs if (r.model, r.method) == (model, method)]
        per_token = LORA_TRAIN + RECOMPUTE * ckpt + (FORWARD if method == "dpo" else 0.0)
        cap = t["max_steps"] * t["batch_size"] * t["grad_accum"] if t["max_steps"] else None
        pairs = [sizes[r.value][0] for r in runs]
        seen = float(sum(min(n * t["epochs"], cap) if cap else n * t["epochs"] for n in pairs))
        size = ctx.size(model)
        flops = _flops(size, per_token, seen * 2 * padded)
        lora = lora_params(size.arch, t["lora_r"], list(t["target_modules"]))
        origins = sorted({sizes[r.value][1] for r in runs})
        lines.append(Line(
            "Study B preference training", f"{model} {method}", model, "GPU", len(runs),
            "adapters", round(float(np.mean(pairs))), seen / sum(pairs), 2 * real,
            tokens=seen * 2 * real, flops=flops, gpu_hours=ctx.hours(flops, "training"),
            disk_bytes=(lora or 0) * ADAPTER_BYTES * len(runs),
            lengths="; ".join([*origins, *sorted({p.origin for p in pool.values()})]),
            source=f"counts {source_label(origins)}, lengths "
            + source_label([p.origin for p in pool.values()]),
            assumed=pool_assumed or any(not o.startswith("measured") for o in origins),
            notes=[f"{per_token:g} x P FLOPs per token (LoRA {LORA_TRAIN:g}"
                   + (f" + checkpointing {RECOMPUTE:g}" if ckpt else "")
                   + (f" + reference forward {FORWARD:g}" if method == "dpo" else "") + ")"],
        ))  # fmt: skip
    return lines
