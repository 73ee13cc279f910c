"""What judge agreement compares (docs/llm.md, Judge agreement), decided once with the plan.

From `judges.agreement`: the benchmarks compared, the second judge of each (a settings
block like `judges.llm`, which it falls back on key by key), the verdict scale Cohen's
kappa is computed on, and the sample and interval settings. valueharms.planner builds it;
the agreement rule (rules/agreement.smk) only reads it. The computation lives in
valueharms.judge.agreement, which the plan does not import: editing it reruns the
agreement jobs alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from valueharms import benchmarks
from valueharms import plan as P
from valueharms.config import ConfigError
from valueharms.judge.run import llm_judge_name
from valueharms.judge.select import JudgeSpec, kind_of

KEY = "judges.agreement"


@dataclass(frozen=True)
class Scale:
    """The verdicts two judges are compared on: the judgments column (`score` or
    `label`), its levels in order, and Cohen's kappa's weights: quadratic on an ordinal
    scale of more than two levels (HEx-PHI's 1-5 harm score), None (unweighted) on
    categories (regard labels) and on two levels (BeaverTails' flagged), where weighting
    changes nothing."""

    column: str
    levels: tuple[Any, ...]
    weights: str | None

    def params(self) -> dict[str, Any]:
        return {"column": self.column, "levels": list(self.levels), "weights": self.weights}

    @classmethod
    def of(cls, p: Mapping[str, Any]) -> Scale:
        return cls(p["column"], tuple(p["levels"]), p["weights"])

    @property
    def label(self) -> str:
        """How the report names the kappa: quadratic-weighted or unweighted."""
        return f"{self.weights}-weighted" if self.weights else "unweighted"


@dataclass(frozen=True)
class Settings:
    """judges.agreement's sample size, seed, interval level and bootstrap resamples."""

    n: int
    seed: int
    confidence: float
    n_resamples: int

    def params(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "seed": self.seed,
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
        }

    @classmethod
    def of(cls, p: Mapping[str, Any]) -> Settings:
        return cls(int(p["n"]), int(p["seed"]), float(p["confidence"]), int(p["n_resamples"]))


@dataclass(frozen=True)
class AgreementSpec:
    """One benchmark's comparison: the configured judge's name, the second judge, the
    config key of the second judge's prompt, the scale and the settings; and what the
    agreement job needs of the second judge's model: its `models` entry, the settings of
    the backend that serves it, and its prepared weights (None for an API model)."""

    benchmark: str
    first: str
    second: JudgeSpec
    template_key: str
    scale: Scale
    settings: Settings
    model_spec: dict[str, Any]
    backend_settings: dict[str, Any]
    model_dir: str | None

    def second_params(self) -> dict[str, Any]:
        """The second judge as the agreement rule passes it: kind, settings, prompt, name."""
        s = self.second
        return {"kind": s.kind, "settings": s.settings, "template": s.template, "name": s.name}

    def model_input(self) -> list[str]:
        """The agreement job's model input: the prepared base of a local second judge."""
        return [self.model_dir] if self.model_dir else []


def scale_of(benchmark: str) -> Scale:
    """The scale of a benchmark's LLM verdicts, read off its choices with its own parser
    (valueharms.benchmarks): the column its judge fills (`score_column`), every level."""
    b = benchmarks.get(benchmark)
    if b.verdicts is None or not b.verdicts.choices:
        raise ValueError(f"benchmark {benchmark!r} declares no LLM verdicts to compare")
    read = [b.verdicts.read(c) for c in b.verdicts.choices]
    if b.score_column == "label":
        return Scale("label", tuple(dict.fromkeys(str(label) for _, label in read)), None)
    levels = tuple(sorted({float(score) for score, _ in read if score is not None}))
    return Scale("score", levels, "quadratic" if len(levels) > 2 else None)


def selected(config: dict[str, Any]) -> list[str]:
    """The benchmarks compared: judges.agreement.benchmarks, or (null) every selected
    benchmark the LLM judge scores. A listed one must be selected and have LLM verdicts
    (a regard classifier's HolisticBiasR may be listed: its labels are the LLM's)."""
    listed = config["judges"]["agreement"]["benchmarks"]
    select = config["benchmarks"]["select"]
    if listed is None:
        return [b for b in select if kind_of(b, config) == "llm"]
    for i, b in enumerate(listed):
        where = f"config key '{KEY}.benchmarks[{i}]': {b!r}"
        if b not in select:
            raise ConfigError(f"{where} is not in benchmarks.select {select}")
        if benchmarks.get(b).verdicts is None:
            raise ConfigError(f"{where} has no verdicts an LLM judge gives (e.g. RTP's scores)")
    return list(dict.fromkeys(listed))


def second_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The second judge's settings block: judges.llm's, with every key the second judge
    sets (not null) on top."""
    second = config["judges"]["agreement"]["second"]
    own = {k: v for k, v in second.items() if k != "templates" and v is not None}
    settings = {**config["judges"]["llm"], **own}
    model = settings["model"]
    if model not in config["models"]:
        raise ConfigError(f"config key '{KEY}.second.model': '{model}' is not a key of models")
    if P.is_api(config, model) and settings["mode"] == "choice":
        raise ConfigError(
            f"config key '{KEY}.second.mode': choice mode scores the verdicts' likelihoods, "
            f"which an API model ('{model}') does not expose; use mode: generate"
        )
    return settings


def _template(benchmark: str, config: dict[str, Any]) -> tuple[str, str]:
    """(config key, file) of the second judge's prompt on a benchmark."""
    judges = config["judges"]
    own = judges["agreement"]["second"]["templates"]
    for k in own:
        if k not in judges["templates"]:
            raise ConfigError(
                f"config key '{KEY}.second.templates.{k}': no judge prompt of that name "
                f"(judges.templates has {sorted(judges['templates'])})"
            )
    verdicts = benchmarks.get(benchmark).verdicts
    name = (verdicts.template_key if verdicts else None) or benchmark
    if name in own:
        return f"{KEY}.second.templates.{name}", own[name]
    return f"judges.templates.{name}", judges["templates"][name]


class SameJudgeError(ConfigError):
    """The second judge on a benchmark is the configured one."""


def second_judge(benchmark: str, config: dict[str, Any], first: JudgeSpec) -> AgreementSpec:
    """The comparison on one benchmark; a ConfigError when the second judge is the
    configured one (same settings and prompt: its kappa would be 1 by construction)."""
    settings = second_settings(config)
    key, path = _template(benchmark, config)
    template = P.read_template(path, key)
    name = llm_judge_name(settings["model"], settings["mode"])
    if settings["backend"] != config["judges"]["llm"]["backend"]:
        name += f" [{settings['backend']}]"
    if key.startswith(KEY):
        name += f" [{Path(path).stem}]"
    if first.kind == "llm" and first.template == template:
        same = [k for k in settings if k != "batch_size" and settings[k] != first.settings.get(k)]
        if not same:
            raise SameJudgeError(
                f"config key '{KEY}.second': on {benchmark} it is the configured judge (same "
                "model, mode, settings and prompt), whose kappa is 1 by construction; set "
                "another model, mode or prompt (judges.agreement.second.templates)"
            )
    if name == first.name:
        name += " [second]"
    model = settings["model"]
    return AgreementSpec(
        benchmark=benchmark,
        first=first.name,
        second=JudgeSpec("llm", settings, template, name, model),
        template_key=key,
        scale=scale_of(benchmark),
        settings=Settings.of(config["judges"]["agreement"]),
        model_spec=config["models"][model],
        backend_settings=P.backend_settings(config, model, settings["backend"]),
        model_dir=None if P.is_api(config, model) else P.base_dir(model),
    )


def build(
    config: dict[str, Any], judges: Mapping[str, JudgeSpec], has_subjects: bool
) -> dict[str, AgreementSpec]:
    """The comparisons of a validated config by benchmark; none when judges.agreement is
    off or Study A has no subjects (nothing was judged to compare)."""
    if not config["judges"]["agreement"]["enabled"]:
        return {}
    second_settings(config)  # its errors name the key even with nothing to compare
    if not has_subjects:
        return {}
    listed = config["judges"]["agreement"]["benchmarks"] is not None
    out = {}
    for b in selected(config):
        try:
            out[b] = second_judge(b, config, judges[b])
        except SameJudgeError:
            # By default every LLM-judged benchmark is compared, but one whose second
            # judge differs in nothing (e.g. a new benchmark with no second prompt) has
            # nothing to compare; a listed one is the user's request: an error.
            if listed:
                raise
    return out


def spec_of(specs: Mapping[str, AgreementSpec], benchmark: str) -> AgreementSpec:
    """The comparison on `benchmark`, or an error saying which benchmarks have one."""
    if benchmark not in specs:
        raise ValueError(
            f"valueharms: no judge agreement on {benchmark!r} in this config "
            f"(judges.agreement compares {sorted(specs) or 'none'})"
        )
    return specs[benchmark]
