"""Study B steps: files in, files out. Each scripts/studyb_*.py calls exactly one of the
`*_job` entry points at the end, which read the rule's job record (valueharms.job.Job)
and call the step of that name.

A rule's `code` param hashes its script's import closure, which holds this whole module:
editing one step reruns every Study B step (valueharms.hashing.code_hash).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from valueharms.data.sources import LoadReport
from valueharms.io import read_table, write_json, write_table
from valueharms.job import Job
from valueharms.llm.backends import BackendSetup
from valueharms.llm.cache import LLMCache
from valueharms.llm.interface import Sampling
from valueharms.studyb import extract, preferences, subsets, verify

log = logging.getLogger(__name__)


def _sampling(fields: Mapping[str, Any]) -> Sampling:
    """A Sampling from a rule param (lists, as YAML/JSON give them, become tuples)."""
    return Sampling(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def triplets(
    source: str,
    path: str,
    n: int | None,
    seed: int,
    options: Mapping[str, Any],
    out: str,
    report_out: str,
) -> None:
    """One preference source as triplets (seeded subsample of n pairs), plus its load report."""
    report = LoadReport(source, str(path))
    df = preferences.load_preferences(source, path, n, seed, report, **dict(options))
    write_table(out, df, preferences.TRIPLETS_SCHEMA)
    write_json(report_out, {**report.as_dict(), "n_requested": n, "seed": seed, "pairs": len(df)})
    log.info("%s: %d pairs from %s", source, len(df), path)


def extract_values(
    triplets_path: str,
    extractor: BackendSetup,
    template: str,
    sampling: Mapping[str, Any],
    batch_size: int,
    out: str,
) -> None:
    """The values of every response of one source's triplets (raw output kept; no synonyms:
    the subsets step reparses with them, so a new synonym map costs no call)."""
    df = read_table(triplets_path, preferences.TRIPLETS_SCHEMA)
    table = extract.run_extraction(
        df,
        extractor.make(),
        LLMCache(extractor.cache_dir),
        template=template,
        sampling=_sampling(sampling),
        batch_size=batch_size,
    )
    log.info("statuses: %s", table["status"].value_counts().to_dict())
    write_table(out, table, extract.EXTRACTIONS_SCHEMA)


def read_extracted(
    triplet_paths: Sequence[str],
    extraction_paths: Sequence[str],
    synonyms: Mapping[str, str] | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All sources' triplets, and their extractions parsed again with `synonyms`."""
    trip = pd.concat(
        [read_table(p, preferences.TRIPLETS_SCHEMA) for p in triplet_paths], ignore_index=True
    )
    ext = pd.concat(
        [read_table(p, extract.EXTRACTIONS_SCHEMA) for p in extraction_paths], ignore_index=True
    )
    return trip, extract.reparse(ext, synonyms)


def value_subsets(
    triplet_paths: Sequence[str],
    extraction_paths: Sequence[str],
    values: Sequence[str],
    synonyms: Mapping[str, str] | None,
    subsets_out: str,
    sizes_out: str,
    counts_out: str,
) -> None:
    """Every value's subset in one table, the Table 1 sizes, and the value counts."""
    trip, ext = read_extracted(triplet_paths, extraction_paths, synonyms)
    write_table(subsets_out, subsets.build_subsets(trip, ext, values), subsets.SUBSETS_SCHEMA)
    write_table(sizes_out, subsets.subset_sizes(ext, values), subsets.SUBSET_SIZES_SCHEMA)
    write_table(counts_out, extract.value_counts(ext), extract.VALUE_COUNTS_SCHEMA)


def value_subset(
    triplet_paths: Sequence[str],
    extraction_paths: Sequence[str],
    value: str,
    synonyms: Mapping[str, str] | None,
    out: str,
) -> None:
    """One value's subset: the training input of its adapters (same code as value_subsets,
    but a file of its own, so adding a value retrains no other value's adapters)."""
    trip, ext = read_extracted(triplet_paths, extraction_paths, synonyms)
    df = subsets.build_subsets(trip, ext, [value])
    log.info("%s: %d pairs (%d flipped)", value, len(df), int(df["flipped"].sum()))
    write_table(out, df, subsets.SUBSETS_SCHEMA)


@dataclass(frozen=True)
class VerifyJob:
    """One verification job (Table 2): the verifier asked with `template` to pick the
    values of each subset's chosen response from `labels`; precision per value, the exact
    random baselines for `baseline_ks` picks among `values` (`include_none`: the none
    label too), and the four files it writes."""

    subsets_path: str
    verifier: BackendSetup
    template: str
    labels: Sequence[str]
    values: Sequence[str]
    sampling: Mapping[str, Any]
    synonyms: Mapping[str, str] | None
    batch_size: int
    baseline_ks: Sequence[int]
    include_none: bool
    verifications_out: str
    precision_out: str
    baselines_out: str
    summary_out: str


def verify_subsets(job: VerifyJob) -> None:
    """Closed-set verification of the subsets' chosen responses; precision per value and
    averaged (Table 2), with the exact random baselines."""
    df = read_table(job.subsets_path, subsets.SUBSETS_SCHEMA)
    table = verify.run_verification(
        df,
        job.verifier.make(),
        LLMCache(job.verifier.cache_dir),
        template=job.template,
        labels=list(job.labels),
        sampling=_sampling(job.sampling),
        synonyms=job.synonyms,
        batch_size=job.batch_size,
    )
    precision = verify.precision_table(table)
    baselines = verify.random_baselines(job.baseline_ks, job.values, job.labels, job.include_none)
    write_table(job.verifications_out, table, verify.VERIFICATIONS_SCHEMA)
    write_table(job.precision_out, precision, verify.PRECISION_SCHEMA)
    write_table(job.baselines_out, baselines, verify.BASELINES_SCHEMA)
    write_json(
        job.summary_out,
        {
            "verifier": job.verifier.model_id,
            "averaged_precision": verify.averaged_precision(precision),
            "random_baselines": baselines.to_dict("records"),
            "n_pairs": len(table),
        },
    )


def train_adapter(
    base_dir: str,
    subset_path: str,
    value: str,
    settings: Mapping[str, Any],
    out_dir: str,
    chat: bool,
    threads: int = 1,
) -> dict[str, Any]:
    """One value's adapter: DPO (or ORPO) LoRA on its subset, flipped pairs included."""
    from valueharms.train.preference import PreferenceConfig, train_preference

    pairs = read_table(subset_path, subsets.SUBSETS_SCHEMA)
    other = sorted(set(pairs["value"]) - {value})
    if other:
        raise ValueError(f"{subset_path} holds pairs of other values {other}, not only {value!r}")
    if pairs.empty:  # fail here, naming the file, before a model is loaded
        raise ValueError(
            f"{subset_path}: the subset of {value!r} has no pairs (see subset_sizes.parquet); "
            "drop the value from studyb.values or use more data"
        )
    cfg = PreferenceConfig(**dict(settings))
    return train_preference(base_dir, pairs, out_dir, cfg, chat=chat, threads=threads)


def eval_prompts(
    name: str,
    path: str,
    templates_path: str | None,
    n_templates: int | None,
    n: int | None,
    seed: int,
    out: str,
) -> None:
    """An evaluation benchmark's prompt table: IssueBench (issues x framings x a seeded
    draw of templates, then n stratified by issue) or AnthroBench (n, seeded)."""
    from valueharms.benchmarks import anthrobench, issuebench
    from valueharms.data.benchmarks import PROMPTS_SCHEMA, subsample

    report = LoadReport(name, str(path))
    if name == issuebench.NAME:
        df = issuebench.load_issuebench(path, templates_path, report=report)
        df = issuebench.sample_issuebench(df, n_templates=n_templates, n=n, seed=seed)
    elif name == anthrobench.NAME:
        df = anthrobench.load_anthrobench(path, report=report)
        df = subsample(df, n, seed=seed, stratify=True)
    else:
        raise ValueError(f"unknown evaluation benchmark {name!r}")
    log.info("%s: %d prompts (%s)", name, len(df), report.as_dict())
    write_table(out, df, PROMPTS_SCHEMA)


def qa(
    base_dir: str,
    adapter_dir: str | None,
    model: str,
    model_id: str,
    settings: Mapping[str, Any],
    out: str,
) -> None:
    """One lm-eval run (Table 8): the base model, with the adapter when given."""
    from valueharms.studyb.qa_eval import VANILLA, LMEvalSettings, run_lm_eval

    lm_eval_settings = LMEvalSettings(
        tasks=list(settings["tasks"]),
        limit=settings["limit"],
        batch_size=settings["batch_size"],
        include_path=settings["include_path"],
        include_defaults=settings["include_defaults"],
    )
    run_lm_eval(
        base_dir,
        adapter_dir,
        lm_eval_settings,
        out,
        model_name=model,
        adapter_name=model_id if adapter_dir else VANILLA,
    )


def tables(
    judgment_paths: Sequence[str],
    qa_paths: Sequence[str],
    subjects: Sequence[Mapping[str, Any]],
    qa_subjects: Sequence[Mapping[str, Any]],
    main_beta: float,
    values: Sequence[str],
    default_temperature: float,
    out_dir: str,
) -> None:
    """Study B's tables (Tables 5-8, 10, 11, Figures 3-5) from every subject's judgments
    and lm-eval results (valueharms.metrics.studyb)."""
    from valueharms.judge.schema import JUDGMENTS_SCHEMA
    from valueharms.metrics import studyb as results
    from valueharms.studyb.qa_eval import QA_SCHEMA

    frames = [read_table(p, JUDGMENTS_SCHEMA) for p in judgment_paths]
    judged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    by_bench = (
        {b: g.reset_index(drop=True) for b, g in judged.groupby("benchmark")} if frames else {}
    )
    qa_frames = [read_table(p, QA_SCHEMA) for p in qa_paths]
    qa = pd.concat(qa_frames, ignore_index=True) if qa_frames else None
    out = results.build_tables(
        list(subjects), by_bench, qa, list(qa_subjects), main_beta, values, default_temperature
    )
    for name, df in out.items():
        log.info("%s: %d rows", name, len(df))
    results.write_tables(out, out_dir)


# --- the scripts' entry points: a rule's job record -> its step ------------------------


def _backend_setup(job: Job) -> BackendSetup:
    """The model an extraction or verification job queries."""
    p = job.params
    return BackendSetup(
        p["model"],
        dict(p["spec"]),
        p["backend"],
        dict(p["backend_settings"]),
        job.input.get("model"),
        job.cache_dir,
        job.threads,
    )


def triplets_job(job: Job) -> None:
    p = job.params
    triplets(
        job.wildcards["source"],
        job.input["data"],
        p["n"],
        p["seed"],
        dict(p["options"]),
        job.output["triplets"],
        job.output["report"],
    )


def extract_values_job(job: Job) -> None:
    p = job.params
    extract_values(
        job.input["triplets"],
        _backend_setup(job),
        p["template"],
        dict(p["sampling"]),
        p["batch_size"],
        job.output[0],
    )


def value_subsets_job(job: Job) -> None:
    value_subsets(
        job.input.list("triplets"),
        job.input.list("extractions"),
        list(job.params["values"]),
        dict(job.params["synonyms"]),
        job.output["subsets"],
        job.output["sizes"],
        job.output["counts"],
    )


def value_subset_job(job: Job) -> None:
    value_subset(
        job.input.list("triplets"),
        job.input.list("extractions"),
        job.params["value"],
        dict(job.params["synonyms"]),
        job.output[0],
    )


def verify_subsets_job(job: Job) -> None:
    p, out = job.params, job.output
    verify_subsets(
        VerifyJob(
            subsets_path=job.input["subsets"],
            verifier=_backend_setup(job),
            template=p["template"],
            labels=list(p["labels"]),
            values=list(p["values"]),
            sampling=dict(p["sampling"]),
            synonyms=dict(p["synonyms"]),
            batch_size=p["batch_size"],
            baseline_ks=list(p["baseline_ks"]),
            include_none=p["include_none"],
            verifications_out=out["verifications"],
            precision_out=out["precision"],
            baselines_out=out["baselines"],
            summary_out=out["summary"],
        )
    )


def train_adapter_job(job: Job) -> None:
    train_adapter(
        job.input["base"],
        job.input["pairs"],
        job.params["value"],
        dict(job.params["settings"]),
        job.output[0],
        chat=job.params["chat"],
        threads=job.threads,
    )


def eval_prompts_job(job: Job) -> None:
    p = job.params
    eval_prompts(
        job.wildcards["sbbench"],
        job.input["data"],
        job.input.get("templates"),
        p["n_templates"],
        p["n"],
        p["seed"],
        job.output[0],
    )


def qa_job(job: Job) -> None:
    adapters = job.input.list("adapter")
    qa(
        job.input["base"],
        adapters[0] if adapters else None,
        job.params["model"],
        job.wildcards["qa_model"],
        dict(job.params["settings"]),
        job.output["table"],
    )


def tables_job(job: Job) -> None:
    p = job.params
    tables(
        job.input.list("judgments"),
        job.input.list("qa"),
        list(p["subjects"]),
        list(p["qa_subjects"]),
        p["main_beta"],
        list(p["values"]),
        p["default_temperature"],
        os.path.dirname(job.output[0]),  # results/studyb/metrics
    )
