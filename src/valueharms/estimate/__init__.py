"""Cost estimate of a planned run, before launch (issue 20).

    python -m valueharms.estimate --configfile config/study_a.yaml [--gpu h100] [--format json]

From the typed plan of the config (valueharms.plan.build, as rules/common.smk builds it)
it computes per stage (VIM stage 1 and 2, benign training, Study B's preference training,
generation per benchmark, judging per judge, Study B's extraction, verification and
lm-eval runs) and in total: training tokens, generated tokens (an upper bound), LLM calls
and tokens (API apart from local), GPU-hours on a named GPU from a FLOP model
(valueharms.estimate.stages), API dollars from a dated price table, and disk.

As a library:

    from valueharms.estimate import load_config, run
    est = run(load_config(["config/study_b.yaml"]), gpu_name="a100")
    est.totals()["gpu_hours"]  # also est.lines, est.as_dict() (the JSON), est.text()

docs/estimate.md explains the model, its assumptions and the comparison with Study B's
reported training time.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from valueharms.config import deep_merge, load_yaml, validate
from valueharms.estimate import calls, stages
from valueharms.estimate.measure import TokenCounter
from valueharms.estimate.stages import TRAINING, Context, Line
from valueharms.estimate.tables import ROOT, EstimateError, Gpu, gpu, model_size, read_yaml

__all__ = ["Estimate", "EstimateError", "Line", "load_config", "run"]

DEMO = "config/demo.yaml"


def load_config(
    paths: Sequence[str] | None = None, estimate: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The validated config of `paths`, merged like Snakemake's `--configfile a b` (each
    file deep-merged over the ones before it; none: the demo config), with `estimate`
    settings on top; schema defaults fill the rest (valueharms.config). Raises ConfigError."""
    files = list(paths or [])
    if not files:
        files = [DEMO if Path(DEMO).is_file() else str(ROOT / DEMO)]
    merged: dict[str, Any] = {}
    for f in files:
        merged = deep_merge(merged, load_yaml(f))
    merged = deep_merge(merged, {"estimate": dict(estimate or {})})
    return validate(merged)


@dataclass
class Estimate:
    """The lines of one estimate and what they were computed with."""

    config_files: list[str]
    gpu: Gpu
    settings: dict[str, Any]
    prices: dict[str, Any]
    token_method: str
    lines: list[Line]
    notes: list[str] = field(default_factory=list)

    def stage_lines(self, *names: str) -> list[Line]:
        return [x for x in self.lines if x.stage in names]

    def totals(self) -> dict[str, Any]:
        """Sums over the lines; a GPU-hour total with an unknown part is a lower bound."""
        train = self.stage_lines(*TRAINING)
        gpu_lines = [x for x in self.lines if x.where == "GPU"]
        api = [x for x in self.lines if x.where == "API"]
        by_stage: dict[str, float] = {}
        for x in gpu_lines:
            by_stage[x.stage] = by_stage.get(x.stage, 0.0) + (x.gpu_hours or 0.0)
        priced = [x for x in api if x.usd is not None]
        return {
            "training_tokens": sum(x.tokens for x in train),
            "adapters": sum(x.count for x in train),
            "generated_tokens_max": sum(x.tokens for x in self.stage_lines("generation")),
            "gpu_hours": sum(by_stage.values()),
            "gpu_hours_by_stage": by_stage,
            "gpu_hours_complete": all(x.gpu_hours is not None for x in gpu_lines),
            "api_calls": sum(x.count for x in api),
            "api_input_tokens": sum(x.input_tokens for x in api),
            "api_output_tokens_max": sum(x.output_tokens for x in api),
            "usd_max": sum(x.usd or 0.0 for x in priced),
            "usd_typical": sum(x.usd_typical or 0.0 for x in priced),
            "usd_complete": len(priced) == len(api),
            "local_llm_calls": sum(
                x.count for x in self.lines if x.unit == "calls" and x.where != "API"
            ),
            "disk_bytes": sum(x.disk_bytes for x in self.stage_lines("disk")),
        }

    def as_dict(self) -> dict[str, Any]:
        """The estimate as JSON-ready data (the --format json output)."""
        return {
            "config_files": self.config_files,
            "gpu": asdict(self.gpu) | {"peak_flops": self.gpu.peak_flops},
            "mfu": dict(self.settings["mfu"]),
            "token_lengths": self.token_method,
            "prices": {k: str(self.prices.get(k)) for k in ("date", "source", "currency", "unit")},
            "stages": [asdict(x) for x in self.lines],
            "totals": self.totals(),
            "notes": self.notes,
        }

    def text(self) -> str:
        from valueharms.estimate.render import text

        return text(self)


def _local_models(ctx: Context, lines: list[Line]) -> list[str]:
    """Models whose weights some job loads (Study A's base, Study B's, local judges)."""
    plan, cfg = ctx.plan, ctx.config
    used = [cfg["base_model"]] if plan.subjects else []
    used += plan.sb.local_models(cfg) if plan.sb.enabled else []
    used += [x.model for x in lines if x.where == "GPU" and x.unit == "calls" and x.model]
    return [m for m in dict.fromkeys(used) if m in cfg["models"]]


def disk_lines(ctx: Context, lines: list[Line]) -> list[Line]:
    """Adapters (exact from LoRA shapes), base models and results (rough)."""
    cpt = ctx.counter.chars_per_token
    n_adapters = sum(x.count for x in lines if x.stage in TRAINING)
    out = [Line("disk", "adapters", None, "disk", n_adapters, "adapters")]
    out[0].disk_bytes = sum(x.disk_bytes for x in lines if x.stage in TRAINING)
    out[0].notes.append(
        f"LoRA rank x (in + out) per targeted layer, {stages.ADAPTER_BYTES} bytes each (fp32)"
    )
    bases = Line("disk", "base models", None, "disk", 0, "models")
    for m in _local_models(ctx, lines):
        size = model_size(ctx.config, m)
        embedded = ctx.config["models"][m].get("source") == "embedded"  # saved in fp32
        if size.params is not None:
            bases.count += 1
            bases.disk_bytes += size.params * (4 if embedded else stages.BASE_BYTES)
    bases.notes.append(
        "one prepared copy per model, bf16 (results/models/<id>/base); hub caches add as much"
    )
    gen = [x for x in lines if x.stage == "generation"]
    judged = [x for x in lines if x.unit == "calls"]
    gen_chars = sum(x.input_tokens + x.tokens for x in gen) * cpt
    judge_chars = sum(x.input_tokens + x.output_tokens_typical for x in judged) * cpt
    rows = sum(a.calls for a in ctx.answers.values()) + sum(x.count for x in judged)
    tables = Line("disk", "results tables (rough)", None, "disk", round(rows), "rows")
    tables.disk_bytes = 2 * (gen_chars + judge_chars) / stages.PARQUET_RATIO
    tables.notes.append(
        f"generations and judgments, written twice (group table + per-subject cut), text "
        f"compressed {stages.PARQUET_RATIO:g}x; replies at their token bound"
    )
    entries = sum(x.requests for x in lines)
    cache = Line("disk", "LLM cache (rough)", None, "disk", round(entries), "entries")
    reply_chars = (
        sum(x.tokens for x in gen) * cpt + sum(x.output_tokens_typical for x in judged) * cpt
    )
    per_entry = reply_chars / entries + stages.CACHE_ENTRY if entries else 0.0
    cache.disk_bytes = entries * max(per_entry, 4096)
    cache.notes.append("one JSON file per request (replies only); at least one 4 KiB block each")
    return out + [bases, tables, cache]


def run(
    config: dict[str, Any],
    config_files: Sequence[str] = (),
    gpu_name: str | None = None,
    tokenizer: str | None = None,
) -> Estimate:
    """The estimate of a validated config (load_config); `gpu_name` overrides
    estimate.gpu. Raises EstimateError (an unknown GPU names the known ones), ConfigError
    or DataError (from the plan)."""
    from valueharms import plan as vplan

    config = copy.deepcopy(config)
    settings = config.get("estimate") or validate({"estimate": {}})["estimate"]
    table = read_yaml(settings["gpus"], "estimate.gpus")
    chosen = gpu(gpu_name or settings["gpu"], table)
    ctx = Context(
        plan=vplan.build(config),
        settings=settings,
        gpu=chosen,
        prices=read_yaml(settings["prices"], "estimate.prices"),
        defaults=read_yaml(settings["datasets"], "estimate.datasets"),
        counter=TokenCounter(settings["chars_per_token"], tokenizer),
    )
    lines = stages.sft_lines(ctx) + stages.preference_lines(ctx)
    lines += calls.generation_lines(ctx)
    lines += calls.judge_lines(ctx) + calls.studyb_data_lines(ctx) + calls.qa_lines(ctx)
    _memory_notes(ctx, lines)
    lines += disk_lines(ctx, lines)
    if ctx.plan.mit_from_correlations and ctx.plan.mit_enabled:
        ctx.notes.append("mitigation runs chosen from the correlations are known only after "
                         "the stats stage: not counted")  # fmt: skip
    return Estimate(
        list(config_files), chosen, settings, ctx.prices, ctx.counter.method, lines, ctx.notes
    )


def _memory_notes(ctx: Context, lines: list[Line]) -> None:
    """A model whose bf16 weights alone fill 90% of one GPU needs more than one."""
    for m in dict.fromkeys(x.model for x in lines if x.where == "GPU" and x.model):
        size = ctx.size(m)
        if size.params and 2 * size.params > 0.9 * ctx.gpu.memory_gb * 1e9:
            ctx.notes.append(
                f"{m}: {2 * size.params / 1e9:.0f} GB of bf16 weights do not fit one "
                f"{ctx.gpu.label} with room to run: shard it (tensor parallel) or pick a larger GPU"
            )
