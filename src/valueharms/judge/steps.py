"""Judge-stage step: a group's generations for one benchmark in, its judgments out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from valueharms.generate import GENERATIONS_SCHEMA
from valueharms.io import read_table, write_table
from valueharms.judge.run import judge_regard, judge_toxicity, judge_with_llm
from valueharms.judge.schema import JUDGMENTS_SCHEMA
from valueharms.judge.toxicity import make_scorer
from valueharms.llm.cache import LLMCache


def run(
    generations_path: str,
    benchmark: str,
    kind: str,
    judge: dict[str, Any],
    template: str | None,
    judge_name: str,
    judge_base_dir: str | None,
    judge_spec: dict[str, Any] | None,
    backend_settings: dict[str, Any] | None,
    cache_dir: str,
    out: str,
    threads: int = 1,
) -> None:
    gens = read_table(generations_path, GENERATIONS_SCHEMA)
    if kind == "toxicity":
        df = judge_toxicity(gens, make_scorer(judge, LLMCache(cache_dir)))
    elif kind == "regard":
        from valueharms.judge.regard import RegardClassifier

        if not judge.get("path"):
            raise ValueError("judges.regard.path must name a regard classifier directory")
        df = judge_regard(gens, RegardClassifier(judge["path"], batch_size=judge["batch_size"]))
    else:
        from valueharms.llm.backends import make_backend

        assert template and judge_spec is not None and backend_settings is not None
        server = make_backend(
            judge["model"],
            judge_spec,
            judge["backend"],
            backend_settings,
            judge_base_dir,
            threads=threads,
            cache_dir=cache_dir,
        )
        if kind == "llm":
            df = judge_with_llm(
                gens,
                benchmark,
                template,
                server,
                LLMCache(cache_dir),
                judge_name,
                max_new_tokens=judge["max_new_tokens"],
                batch_size=judge["batch_size"],
                mode=judge["mode"],
            )
        else:
            df = judge_studyb(kind, gens, server, LLMCache(cache_dir), judge_name, judge, template)
    write_table(out, df, JUDGMENTS_SCHEMA)


def judge_studyb(
    kind: str,
    gens: Any,
    server: Any,
    cache: LLMCache,
    judge_name: str,
    judge: dict[str, Any],
    template: str,
) -> Any:
    """Study B's judges (METHODS B3): the values a response expresses (the extractor,
    IssueBench), refusal or compliance (AdvBench) and anthropomorphic behaviours
    (AnthroBench). Choice mode makes a small local judge pick the likeliest answer."""
    from valueharms.llm.interface import Sampling
    from valueharms.studyb import anthrobench, extract, refusal

    choice = judge["mode"] == "choice"
    sampling = Sampling(
        max_new_tokens=judge["max_new_tokens"],
        temperature=float(judge["temperature"]),
        seed=judge["seed"],
    )
    batch = judge["batch_size"]
    if kind == "values":
        if choice:
            sampling = replace(sampling, choices=extract.answer_choices(judge["values"]))
        return extract.judge_values(
            gens, server, cache, judge_name, template, sampling, judge["synonyms"], batch
        )
    if kind == "refusal":
        if choice:
            sampling = replace(sampling, choices=refusal.CHOICES)
        return refusal.judge_refusal(gens, server, cache, judge_name, template, sampling, batch)
    if kind == "anthro":
        if choice:
            return anthrobench.judge_anthro_choice(
                gens, server, cache, judge_name, template, sampling, batch
            )
        return anthrobench.judge_anthro(gens, server, cache, judge_name, template, sampling, batch)
    raise ValueError(f"unknown judge kind {kind!r}")
