"""Which judge scores a benchmark, decided once (METHODS A5, B3).

Each judge kind registers how its settings, prompt text and report name are read from
the config (`@judge_kind`); the plan asks `judge_spec` once per benchmark and the judge
rule and the report only read the result. The code that runs a kind is registered the
same way in valueharms.judge.steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from valueharms.judge.run import judge_name

_SB_KEYS = ("backend", "mode", "max_new_tokens", "temperature", "batch_size")


@dataclass(frozen=True)
class JudgeSpec:
    """The judge of one benchmark: its kind, settings block (a param of the judge jobs:
    changing it reruns them), prompt text, report name and the LLM behind it (None for a
    scorer or classifier, so LLM settings do not rerun it)."""

    kind: str
    settings: dict[str, Any]
    template: str | None
    name: str
    model: str | None


@dataclass(frozen=True)
class _Ctx:
    benchmark: str
    config: dict[str, Any]
    templates: dict[str, str]
    sb_templates: dict[str, str]
    sbp: Any


@dataclass(frozen=True)
class _Kind:
    settings: Callable[[_Ctx], dict[str, Any]]
    template: Callable[[_Ctx, dict[str, Any]], str | None]
    llm: bool


KINDS: dict[str, _Kind] = {}


def judge_kind(
    name: str, llm: bool, template: Callable[[_Ctx, dict[str, Any]], str | None]
) -> Callable[[Callable[[_Ctx], dict[str, Any]]], Callable[[_Ctx], dict[str, Any]]]:
    """Register a judge kind: the decorated function reads its settings block."""

    def register(settings: Callable[[_Ctx], dict[str, Any]]) -> Callable[[_Ctx], dict[str, Any]]:
        KINDS[name] = _Kind(settings, template, llm)
        return settings

    return register


def _no_template(ctx: _Ctx, settings: dict[str, Any]) -> None:
    return None


@judge_kind("toxicity", llm=False, template=_no_template)
def _toxicity(ctx: _Ctx) -> dict[str, Any]:
    return ctx.config["judges"]["toxicity"]


@judge_kind("regard", llm=False, template=_no_template)
def _regard(ctx: _Ctx) -> dict[str, Any]:
    return ctx.config["judges"]["regard"]


def _study_a_template(ctx: _Ctx, settings: dict[str, Any]) -> str:
    from valueharms import benchmarks

    verdicts = benchmarks.get(ctx.benchmark).verdicts
    key = (verdicts.template_key if verdicts else None) or ctx.benchmark
    return ctx.templates[f"judges.templates.{key}"]


@judge_kind("llm", llm=True, template=_study_a_template)
def _llm(ctx: _Ctx) -> dict[str, Any]:
    return ctx.config["judges"]["llm"]


@judge_kind("values", llm=True, template=lambda ctx, s: ctx.sb_templates["extract"])
def _values(ctx: _Ctx) -> dict[str, Any]:
    sb = ctx.config["studyb"]
    return {
        **{k: sb["extract"][k] for k in _SB_KEYS},
        "model": ctx.sbp.extract_model,
        "values": list(ctx.sbp.values.values()),
        "synonyms": sb["extract"]["synonyms"],
        "seed": sb["seed"],
    }


def _studyb_judge(ctx: _Ctx) -> dict[str, Any]:
    sb = ctx.config["studyb"]
    return {
        **{k: sb["judge"][k] for k in _SB_KEYS},
        "model": ctx.sbp.judge_model,
        "seed": sb["seed"],
    }


def _anthro_template(ctx: _Ctx, settings: dict[str, Any]) -> str:
    choice = settings["mode"] == "choice"
    return ctx.sb_templates["judge.anthro_behaviour" if choice else "judge.anthro"]


judge_kind("refusal", llm=True, template=lambda ctx, s: ctx.sb_templates["judge.refusal"])(
    _studyb_judge
)
judge_kind("anthro", llm=True, template=_anthro_template)(_studyb_judge)


def kind_of(benchmark: str, config: dict[str, Any]) -> str:
    """Which judge kind scores a benchmark, as the benchmark declares it."""
    from valueharms import benchmarks

    return benchmarks.get(benchmark).judge_kind(config)


def judge_spec(
    benchmark: str,
    config: dict[str, Any],
    templates: dict[str, str],
    sb_templates: dict[str, str],
    sbp: Any,
) -> JudgeSpec:
    kind = kind_of(benchmark, config)
    ctx = _Ctx(benchmark, config, templates, sb_templates, sbp)
    entry = KINDS[kind]
    settings = entry.settings(ctx)
    from valueharms import benchmarks

    extra = benchmarks.get(benchmark).judge_settings  # what the benchmark adds (rtp: scored_text)
    if extra is not None:
        settings = {**settings, **extra(config)}
    return JudgeSpec(
        kind=kind,
        settings=settings,
        template=entry.template(ctx, settings),
        name=judge_name(kind, settings),
        model=settings["model"] if entry.llm else None,
    )
