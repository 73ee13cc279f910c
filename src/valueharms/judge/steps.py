"""Judge-stage step: a group's generations for one benchmark in, its judgments out.

The code behind each judge kind is registered here with `@runs(kind)`; which kind scores
a benchmark is decided once, in valueharms.judge.select.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import pandas as pd

from valueharms.failures import check_share
from valueharms.generate import GENERATIONS_SCHEMA
from valueharms.io import read_table, write_table
from valueharms.job import Job
from valueharms.judge.run import LLMJudge, judge_regard, judge_toxicity, judge_with_llm
from valueharms.judge.schema import JUDGMENTS_SCHEMA, STATUS_FAILED
from valueharms.llm.cache import LLMCache


@dataclass(frozen=True)
class JudgeJob:
    """One judge job: the group's generations, the judge that scores them, the output."""

    generations: str  # the group's generations table
    benchmark: str
    kind: str  # a registered judge kind (valueharms.judge.select)
    settings: dict[str, Any]  # the judge's settings block
    template: str | None
    name: str  # the judge's name in the report
    out: str
    cache_dir: str
    model_dir: str | None = None  # prepared base of a local LLM judge
    model_spec: dict[str, Any] | None = None  # config models.<id> of the LLM judge
    backend_settings: dict[str, Any] | None = None
    threads: int = 1
    max_failure_share: float = 1.0  # judges.max_failure_share

    @classmethod
    def of(cls, job: Job) -> JudgeJob:
        """From the judge rule's job record (its input, output and param names)."""
        p = job.params
        return cls(
            generations=job.input["generations"],
            benchmark=job.wildcards["benchmark"],
            kind=p["kind"],
            settings=dict(p["judge"]),
            template=p["template"],
            name=p["judge_name"],
            out=job.output[0],
            cache_dir=str(job.cache_dir),
            model_dir=job.input.get("judge_model"),
            model_spec=p["judge_spec"],
            backend_settings=p["backend_settings"],
            threads=job.threads,
            max_failure_share=p.get("max_failure_share", 1.0),
        )


Runner = Callable[[pd.DataFrame, JudgeJob], pd.DataFrame]
RUNNERS: dict[str, Runner] = {}


def runs(kind: str) -> Callable[[Runner], Runner]:
    """Register the code that runs judge kind `kind`."""

    def register(fn: Runner) -> Runner:
        RUNNERS[kind] = fn
        return fn

    return register


def run_job(job: Job) -> None:
    """The judge rule's entry point (scripts/judge.py)."""
    from valueharms.plan import drop_subject_files

    j = JudgeJob.of(job)
    gens = pd.read_parquet(j.generations, columns=["model_id", "condition"])
    subjects = zip(gens["model_id"], gens["condition"], strict=True)
    drop_subject_files(j.benchmark, subjects, ["judgments"])
    run(j)


def run(job: JudgeJob) -> None:
    gens = read_table(job.generations, GENERATIONS_SCHEMA)
    if job.kind not in RUNNERS:
        raise ValueError(f"unknown judge kind {job.kind!r}; registered: {sorted(RUNNERS)}")
    table = RUNNERS[job.kind](gens, job)
    # Failed generations are the generate job's to count; the bound is on the judge's calls.
    gen_ok = int((gens["status"] == "ok").sum())
    judge_failed = table["status"] == STATUS_FAILED
    n_failed = int(judge_failed.sum()) - (len(gens) - gen_ok)
    if len(table) == len(gens):  # rows in generation order: leave generation failures out
        judge_failed &= (gens["status"] == "ok").to_numpy()
    errors = table.loc[judge_failed, "error"].tolist()
    check_share(n_failed, gen_ok, job.max_failure_share, "judges.max_failure_share", errors)
    write_table(job.out, table, JUDGMENTS_SCHEMA)


@runs("toxicity")
def _toxicity(gens: pd.DataFrame, job: JudgeJob) -> pd.DataFrame:
    from valueharms.judge.toxicity import make_scorer, scored_generations

    # scored_text: the benchmark's (RTP's judge_settings); sentence where none is set.
    scored = scored_generations(gens, job.settings.get("scored_text", "sentence"))
    return judge_toxicity(scored, make_scorer(job.settings, LLMCache(job.cache_dir)))


@runs("regard")
def _regard(gens: pd.DataFrame, job: JudgeJob) -> pd.DataFrame:
    from valueharms import benchmarks
    from valueharms.judge.classifier import classifier_source
    from valueharms.judge.regard import RegardClassifier, classifier_generations

    source, revision = classifier_source(job.settings, "judges.regard")
    classifier = RegardClassifier(source, batch_size=job.settings["batch_size"], revision=revision)
    build = benchmarks.module(job.benchmark).classifier_text  # what the classifier reads
    texts = classifier_generations(gens, partial(build, mode=job.settings["input"]))
    return judge_regard(texts, classifier)


def llm_judge(job: JudgeJob) -> LLMJudge:
    """The LLM behind an LLM judge kind, with the job's cache, name, prompt and settings."""
    from valueharms.llm.backends import make_backend

    assert job.template and job.model_spec is not None and job.backend_settings is not None
    server = make_backend(
        job.settings["model"],
        job.model_spec,
        job.settings["backend"],
        job.backend_settings,
        job.model_dir,
        threads=job.threads,
        cache_dir=job.cache_dir,
    )
    return LLMJudge(server, LLMCache(job.cache_dir), job.name, job.template, job.settings)


@runs("llm")
def _llm(gens: pd.DataFrame, job: JudgeJob) -> pd.DataFrame:
    return judge_with_llm(gens, job.benchmark, llm_judge(job))


def _studyb(kind: str) -> Runner:
    return lambda gens, job: STUDYB_JUDGES[kind](gens, llm_judge(job))


def _sampling(judge: LLMJudge) -> Any:
    from valueharms.llm.interface import Sampling

    s = judge.settings
    return Sampling(
        max_new_tokens=s["max_new_tokens"], temperature=float(s["temperature"]), seed=s["seed"]
    )


def _values(gens: pd.DataFrame, judge: LLMJudge) -> pd.DataFrame:
    """IssueBench: the values a response expresses, by the extractor (METHODS B3)."""
    from valueharms.studyb import extract

    s, sampling = judge.settings, _sampling(judge)
    if s["mode"] == "choice":
        sampling = replace(sampling, choices=extract.answer_choices(s["values"]))
    return extract.judge_values(
        gens, judge.backend, judge.cache, judge.name, judge.template, sampling, s["synonyms"],
        s["batch_size"],
    )  # fmt: skip


def _refusal(gens: pd.DataFrame, judge: LLMJudge) -> pd.DataFrame:
    """AdvBench: refusal or compliance."""
    from valueharms import benchmarks

    refusal = benchmarks.module(benchmarks.by_judge("refusal"))
    sampling = _sampling(judge)
    if judge.settings["mode"] == "choice":
        sampling = replace(sampling, choices=refusal.CHOICES)
    return refusal.judge_refusal(
        gens, judge.backend, judge.cache, judge.name, judge.template, sampling,
        judge.settings["batch_size"],
    )  # fmt: skip


def _anthro(gens: pd.DataFrame, judge: LLMJudge) -> pd.DataFrame:
    """AnthroBench's behaviours, judged on each probe's whole dialogue (the generations'
    `prompt` holds it before the final reply); choice mode asks one yes/no question per
    behaviour."""
    from valueharms import benchmarks

    anthro = benchmarks.module(benchmarks.by_judge("anthro"))
    fn = anthro.judge_anthro_choice if judge.settings["mode"] == "choice" else anthro.judge_anthro
    return fn(
        gens, judge.backend, judge.cache, judge.name, judge.template, _sampling(judge),
        judge.settings["batch_size"],
    )  # fmt: skip


STUDYB_JUDGES: dict[str, Callable[[pd.DataFrame, LLMJudge], pd.DataFrame]] = {
    "values": _values,
    "refusal": _refusal,
    "anthro": _anthro,
}
for _kind in STUDYB_JUDGES:
    runs(_kind)(_studyb(_kind))


def judge_studyb(
    kind: str,
    gens: pd.DataFrame,
    server: Any,
    cache: LLMCache,
    judge_name: str,
    judge: dict[str, Any],
    template: str,
) -> pd.DataFrame:
    """Study B's judges (METHODS B3) on a backend: the values a response expresses
    (IssueBench), refusal or compliance (AdvBench) and anthropomorphic behaviours
    (AnthroBench). Choice mode makes a small local judge pick the likeliest answer."""
    if kind not in STUDYB_JUDGES:
        raise ValueError(f"unknown judge kind {kind!r}")
    return STUDYB_JUDGES[kind](gens, LLMJudge(server, cache, judge_name, template, judge))
