"""The benchmark registry: one module per benchmark declares what the pipeline needs.

A module in this package calls `register(Benchmark(...))` with its loader, how its
prompts are subsampled, which judge scores it and how an LLM judge's answer is read, its
metrics and per-prompt scores, and how the report names it. Every stage asks the
registry instead of naming benchmarks, so a new benchmark is one new module here plus
its config block (`benchmarks.<name>`; see tests/test_toy_benchmark.py). Modules are
found by listing the package, so nothing else is edited to add one.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pandas as pd

Verdict = tuple[float | None, str | None]  # score (None: unparsed), label


@dataclass(frozen=True)
class LLMVerdicts:
    """How Study A's LLM judge (judges.llm) asks about and reads one answer."""

    # The judge prompt's fields for (prompt, response); "text" or "response" is the
    # judged text the judgments table keeps.
    fields: Callable[[str, str], dict[str, str]]
    read: Callable[[str], Verdict]  # strict: (None, None) when the answer is unparsed
    choices: tuple[str, ...] = ()  # the verdicts a judge in choice mode picks from
    template_key: str | None = None  # judges.templates.<key> (default: the benchmark name)


@dataclass(frozen=True)
class Benchmark:
    name: str
    label: str  # the report's name for it
    # safety: Study A's benchmarks (tables, statistics); alignment: the PVQ-40 check
    # (parsed, not judged); studyb: Study B's evaluation (its own tables).
    role: str = "safety"
    load: Callable[..., pd.DataFrame] | None = None  # (path, expected_rows, report)
    stratify: bool = False  # subsample within categories, so none vanishes
    # The judge kind that scores it (valueharms.judge.select), or a function of the config.
    judge: str | Callable[[dict[str, Any]], str] = "llm"
    verdicts: LLMVerdicts | None = None
    metrics: Callable[..., pd.DataFrame] | None = None  # one subject's METRICS_SCHEMA rows
    metric_settings: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # Settings its judge reads from the benchmark's own config block, added to the judge's
    # settings block (a judge-job param), e.g. RTP's scored_text.
    judge_settings: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    prompt_scores: Callable[[pd.DataFrame], pd.DataFrame] | None = None  # the test units
    headline: tuple[str, ...] = ()  # metrics the report shows, in order
    safety_metrics: tuple[str, ...] | None = None  # the findings' safety table (headline)
    categories: tuple[str, ...] = ()  # its category names, where config may name one
    metric_labels: dict[str, str] = field(default_factory=dict)
    by_category: bool = False  # the report's per-category table
    risk_rate: str | None = None  # per-category rate of the value-risk correlations
    published_size: str | None = None  # the data summary's "published" column
    score_column: str = "score"  # the judgments column an ok row must fill
    source: Any = None  # its dataset's declaration (valueharms.data.sources.Source)
    # Checks of its datasets.<name> block beyond the path (Study B's, at parse time).
    check_dataset: Callable[[dict[str, Any]], None] | None = None
    order: int = 100  # place in the report's tables (the published column order first)

    @property
    def safety(self) -> tuple[str, ...]:
        return self.headline if self.safety_metrics is None else self.safety_metrics

    def judge_kind(self, config: dict[str, Any]) -> str:
        return self.judge(config) if callable(self.judge) else self.judge


_REGISTRY: dict[str, Benchmark] = {}
_STATE = {"loading": False, "loaded": False}


def register(bench: Benchmark) -> Benchmark:
    if bench.name in _REGISTRY and _REGISTRY[bench.name] != bench:
        raise ValueError(f"benchmark {bench.name!r} is registered twice")
    _REGISTRY[bench.name] = bench
    return bench


def _discover() -> None:
    """Import every module of the package once (each registers its benchmark)."""
    if _STATE["loaded"] or _STATE["loading"]:
        return
    _STATE["loading"] = True
    try:
        for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            importlib.import_module(f"{__name__}.{mod.name}")
        _STATE["loaded"] = True
    finally:
        _STATE["loading"] = False


def get(name: str) -> Benchmark:
    _discover()
    if name not in _REGISTRY:
        raise ValueError(f"unknown benchmark {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def all_benchmarks() -> list[Benchmark]:
    """Every registered benchmark, in report order (then by name)."""
    _discover()
    return sorted(_REGISTRY.values(), key=lambda b: (b.order, b.name))


def names(role: str | None = None) -> tuple[str, ...]:
    return tuple(b.name for b in all_benchmarks() if role is None or b.role == role)


def by_judge(kind: str, role: str = "studyb") -> str:
    """The one benchmark of `role` that judge kind `kind` scores (Study B's tables are
    defined per judge kind: values, refusal, anthro)."""
    found = [b.name for b in all_benchmarks() if b.role == role and b.judge == kind]
    if len(found) != 1:
        raise ValueError(f"{len(found)} {role} benchmarks are judged by {kind!r}: {found}")
    return found[0]


def module(name: str) -> ModuleType:
    """The module that registers benchmark `name` (its prompts, judge and measures)."""
    return importlib.import_module(f"{__name__}.{get(name).name}")
