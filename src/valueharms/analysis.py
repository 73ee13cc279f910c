"""Analysis steps (metrics, stats, report): tables in, tables or HTML out.

Each Snakemake script calls one of the `*_job` entry points at the end, which read the
rule's job record (valueharms.job.Job) and call the step of that name; the computations
themselves live in metrics.py, stats.py and report/.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from valueharms import VALUES, __version__, benchmarks, protocol
from valueharms.data.distributions import DISTRIBUTIONS_SCHEMA
from valueharms.failures import reason_counts, reasons_schema
from valueharms.io import read_json, read_table, write_json, write_table
from valueharms.job import Job
from valueharms.judge.schema import JUDGMENTS_SCHEMA
from valueharms.metrics import (
    ALL,
    METRICS_SCHEMA,
    PROMPT_SCORES_SCHEMA,
    compute_metrics,
    prompt_scores,
)
from valueharms.mitigation import MITIGATION_SCHEMA, mitigation_table

if TYPE_CHECKING:
    from valueharms.report.render import FailureData
from valueharms.stats import (
    COMPARISONS_SCHEMA,
    CORRELATIONS_SCHEMA,
    compare_model_types,
    value_risk_correlations,
)

# The per-category rate each risk category contributes to the value-risk correlations.
RISK_RATES = {b.name: b.risk_rate for b in benchmarks.all_benchmarks() if b.risk_rate}
PACKAGES = (
    "valueharms",
    "snakemake",
    "torch",
    "transformers",
    "peft",
    "pandas",
    "pyarrow",
    "scipy",
    "openai",
    "alt-profanity-check",
    "scikit-learn",
)


def metrics(
    judgment_paths: list[str],
    benchmark: str,
    settings: dict[str, Any],
    out_metrics: str,
    out_scores: str,
    out_reasons: str | None = None,
) -> None:
    j = pd.concat([read_table(p, JUDGMENTS_SCHEMA) for p in judgment_paths], ignore_index=True)
    write_table(out_metrics, compute_metrics(j, benchmark, **settings), METRICS_SCHEMA)
    write_table(out_scores, prompt_scores(j, benchmark), PROMPT_SCORES_SCHEMA)
    if out_reasons:  # the report counts failures by reason (issue 21)
        write_table(out_reasons, reason_counts(j), reasons_schema())


def risk_rates(metrics_df: pd.DataFrame, subjects: pd.DataFrame) -> pd.DataFrame:
    """One rate per (value-aligned distribution, risk category)."""
    vim = subjects[subjects["model_type"] == "vim"][["model_id", "condition", "distribution"]]
    parts = []
    for benchmark, metric in RISK_RATES.items():
        m = metrics_df[
            (metrics_df["benchmark"] == benchmark)
            & (metrics_df["metric"] == metric)
            & (metrics_df["category"] != ALL)
        ]
        parts.append(m.merge(vim, on=["model_id", "condition"]))
    rates = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    cols = ["model_id", "distribution", "benchmark", "category", "value"]
    return (
        rates[cols].rename(columns={"value": "rate"})
        if len(rates)
        else pd.DataFrame(columns=[*cols[:-1], "rate"])
    )


def baseline_types(subjects: pd.DataFrame) -> pd.DataFrame:
    """(model_id, condition, model_type) with each benign fine-tune its own baseline
    (benign/alpaca, ...), as the published table compares VIM with each of them."""
    types = subjects[["model_id", "condition", "model_type"]].copy()
    benign = types["model_type"] == "benign"
    names = types.loc[benign, "model_id"].str.split("/").str[-1]
    types.loc[benign, "model_type"] = "benign/" + names
    return types


def stats(
    metric_paths: list[str],
    score_paths: list[str],
    distributions_path: str,
    subjects: list[dict[str, Any]],
    settings: dict[str, Any],
    out_comparisons: str,
    out_correlations: str,
) -> None:
    subj = pd.DataFrame(subjects)
    scores = pd.concat(
        [read_table(p, PROMPT_SCORES_SCHEMA) for p in score_paths], ignore_index=True
    )
    comparisons = compare_model_types(
        scores,
        baseline_types(subj),
        group=settings["group"],
        n_resamples=settings["n_resamples"],
        seed=settings["seed"],
    )
    write_table(out_comparisons, comparisons, COMPARISONS_SCHEMA)
    m = pd.concat([read_table(p, METRICS_SCHEMA) for p in metric_paths], ignore_index=True)
    dists = read_table(distributions_path, DISTRIBUTIONS_SCHEMA)
    corr = value_risk_correlations(risk_rates(m, subj), dists, list(VALUES))
    write_table(out_correlations, corr, CORRELATIONS_SCHEMA)


def _git_sha() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(
    config: dict[str, Any],
    config_hash: str,
    judge_names: dict[str, str],
    base_dirs: dict[str, str],
    metrics_df: pd.DataFrame | None,
    studyb_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What produced the report; Study A's part only when its metrics are given."""
    prov: dict[str, Any] = {
        "config_hash": config_hash,
        "git_sha": _git_sha(),
        "valueharms": __version__,
        "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "packages": _versions(),
    }
    if metrics_df is not None:
        bias = config["metrics"]["bias_score"]
        failures = (
            metrics_df[metrics_df["category"] == ALL]
            .groupby(["benchmark", "model_id", "condition"])[["n_failed", "n_unparsed"]]
            .max()
            .sum()
        )
        prov |= {
            "judges": {b: judge_names[b] for b in config["benchmarks"]["select"]},
            "base_models": {b: read_json(Path(d) / "revision.json") for b, d in base_dirs.items()},
            "bias_score.threshold_unit": bias["threshold_unit"],
            "settings": {
                "bias_score": bias,
                "benchmarks": {b: config["benchmarks"][b] for b in config["benchmarks"]["select"]},
                "generation": config["generation"],
                "stats": config["stats"],
                "risk rates for correlations": RISK_RATES,
            },
            "failures": {
                "n_failed": int(failures.get("n_failed", 0)),
                "n_unparsed": int(failures.get("n_unparsed", 0)),
            },
        }
    elif base_dirs:
        prov["base_models"] = {
            b: read_json(Path(d) / "revision.json") for b, d in base_dirs.items()
        }
    if studyb_info is not None:
        prov["studyb"] = studyb_info
    return prov


@dataclass(frozen=True)
class ReportInputs:
    """The report's input files; None (or none given) for an input the run leaves out.

    Study A's: the metrics tables, the stats stage's comparisons and correlations, the
    distributions, the PVQ-40 NMSE table, the mitigation table and the benchmarks' load
    reports (benchmark_prompts' JSONs). Study B's: its tables
    (valueharms.metrics.studyb.TABLES).
    """

    metrics: Sequence[str] = ()
    comparisons: str | None = None
    correlations: str | None = None
    distributions: str | None = None
    nmse: str | None = None
    mitigation: str | None = None
    studyb_tables: Sequence[str] = ()
    load_reports: Sequence[str] = ()
    # Failures: by reason (metrics and mitigation stages), the mitigation runs' counts.
    failure_reasons: Sequence[str] = ()
    mitigation_metrics: str | None = None
    # judges.agreement: one table per benchmark compared (valueharms.judge.agreement).
    agreement: Sequence[str] = ()


def report(
    inputs: ReportInputs,
    subjects: list[dict[str, Any]],
    config: dict[str, Any],
    config_hash: str,
    judge_names: dict[str, str],
    base_dirs: dict[str, str],
    out_html: str,
    studyb_info: dict[str, Any] | None = None,
) -> None:
    """The HTML report: Study A's sections when it has metrics, Study B's section when it
    has tables (`inputs.studyb_tables`) or `studyb_info` (Study B on)."""
    from valueharms.metrics.studyb import read_tables
    from valueharms.report.findings import load_published
    from valueharms.report.render import StudyAData, build_report

    study_b = bool(inputs.studyb_tables) or studyb_info is not None
    sb = read_tables(list(inputs.studyb_tables)) if study_b else None
    study_a = None
    m = None
    if inputs.metrics:
        m = pd.concat([read_table(p, METRICS_SCHEMA) for p in inputs.metrics], ignore_index=True)
        # Absent Study A statistics (an input left out) read as empty tables.
        frames = {
            k: read_table(p, schema) if p else schema.empty_table().to_pandas()
            for k, p, schema in (
                ("comparisons", inputs.comparisons, COMPARISONS_SCHEMA),
                ("correlations", inputs.correlations, CORRELATIONS_SCHEMA),
                ("distributions", inputs.distributions, DISTRIBUTIONS_SCHEMA),
            )
        }
        study_a = StudyAData(
            metrics=m,
            subjects=pd.DataFrame(subjects),
            **frames,
            nmse=_typed_nmse(inputs.nmse, subjects) if inputs.nmse else None,
            mitigation=(
                read_table(inputs.mitigation, MITIGATION_SCHEMA) if inputs.mitigation else None
            ),
            published=load_published(
                config["report"]["published"], config["models"][config["base_model"]]
            ),
            protocol=protocol.rows(config),
            failures=_failures(inputs),
            load_reports=[read_json(p) for p in inputs.load_reports],
            min_scored_share=config["report"]["min_scored_share"],
            agreement=_agreement(inputs, config),
        )
    build_report(
        provenance(config, config_hash, judge_names, base_dirs, m, studyb_info),
        out_html,
        study_a=study_a,
        studyb_tables=sb,
        studyb_info=studyb_info,
    )


def _agreement(inputs: ReportInputs, config: dict[str, Any]) -> pd.DataFrame | None:
    """The judge-agreement tables, one row per benchmark; None when judges.agreement is off
    (the report then says how to turn it on)."""
    from valueharms.judge.agreement import AGREEMENT_SCHEMA

    if not config.get("judges", {}).get("agreement", {}).get("enabled"):
        return None
    frames = [read_table(p, AGREEMENT_SCHEMA) for p in inputs.agreement]
    if not frames:
        return AGREEMENT_SCHEMA.empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True)


def _failures(inputs: ReportInputs) -> FailureData:
    """The failure counts the report shows: the mitigation runs' metrics rows (their counts
    are in no metrics table) and every stage's failures by reason."""
    from valueharms.report.render import FailureData

    reasons = [read_table(p, reasons_schema()) for p in inputs.failure_reasons]
    return FailureData(
        mitigation=(
            read_table(inputs.mitigation_metrics, METRICS_SCHEMA)
            if inputs.mitigation_metrics
            else None
        ),
        reasons=pd.concat(reasons, ignore_index=True) if reasons else None,
    )


def report_job(job: Job) -> None:
    """The report rule's job (scripts/report.py). Study A's inputs are empty lists when
    it is off; Study B's are absent or empty when it is off."""
    inputs = ReportInputs(
        metrics=job.input.list("metrics"),
        comparisons=job.input.get("comparisons"),
        correlations=job.input.get("correlations"),
        distributions=job.input.get("distributions"),
        nmse=job.input.get("nmse"),
        mitigation=job.input.get("mitigation"),
        studyb_tables=job.input.list("studyb_tables"),
        load_reports=job.input.list("load_reports"),
        failure_reasons=job.input.list("failure_reasons"),
        mitigation_metrics=job.input.get("mitigation_metrics"),
        agreement=job.input.list("agreement"),
    )
    p = job.params
    report(
        inputs,
        list(p["subjects"]),
        dict(job.config),
        p["config_hash"],
        dict(p["judge_names"]),
        {path.split("/")[2]: path for path in job.input.list("bases")},
        job.output[0],
        studyb_info=p.get("studyb"),
    )


def alignment(
    generation_paths: list[str],
    distributions_path: str,
    subjects: list[dict[str, Any]],
    out_answers: str,
    out_nmse: str,
) -> None:
    """PVQ-40 check (METHODS A2): parse the answers, then NMSE per subject and target."""
    from valueharms.benchmarks import pvq as alignment
    from valueharms.generate import GENERATIONS_SCHEMA
    from valueharms.plan import Subject

    g = pd.concat([read_table(p, GENERATIONS_SCHEMA) for p in generation_paths], ignore_index=True)
    answers = alignment.judge_pvq(g)
    write_table(out_answers, answers, JUDGMENTS_SCHEMA)
    dists = read_table(distributions_path, DISTRIBUTIONS_SCHEMA)
    subj = [Subject(**s) for s in subjects]
    pairs = alignment.alignment_pairs(subj, dists["name"])
    table = alignment.nmse_table(answers, alignment.targets_from_table(dists), pairs)
    write_table(out_nmse, table, alignment.NMSE_SCHEMA)


def _typed_nmse(path: str, subjects: list[dict[str, Any]]) -> pd.DataFrame:
    from valueharms.benchmarks.pvq import NMSE_SCHEMA

    types = pd.DataFrame(subjects)[["model_id", "condition", "model_type"]]
    return read_table(path, NMSE_SCHEMA).merge(types, on=["model_id", "condition"])


def mitigation(
    metrics_path: str,
    judgment_paths: list[str],
    pairs_path: str | None,
    pairs: list[list[str]] | None,
    models: dict[str, Any],
    out: str,
    out_failures: tuple[str, str] | None = None,
) -> None:
    """The mitigation table (METHODS A7): input only is each model's plain score on the
    mitigation benchmark (its metrics stage, `metrics_path`); the prompt settings are
    scored here from their own judgments. `out_failures`: where the mitigation runs'
    metrics rows and failure reasons go, for the report's failure counts."""
    from valueharms import mitigation as mit

    chosen = mit.read_pairs(pairs_path) if pairs_path else [(v, c) for v, c in pairs or []]
    runs = mit.runs_from(chosen, models)
    plain = read_table(metrics_path, METRICS_SCHEMA)
    frames = [plain[plain["condition"] == "plain"]]
    j = JUDGMENTS_SCHEMA.empty_table().to_pandas()
    if judgment_paths:
        j = pd.concat([read_table(p, JUDGMENTS_SCHEMA) for p in judgment_paths], ignore_index=True)
        frames.append(compute_metrics(j, mit.BENCHMARK))
    m = pd.concat(frames, ignore_index=True)
    write_table(out, mitigation_table(m, runs), MITIGATION_SCHEMA)
    if out_failures:
        run_metrics = METRICS_SCHEMA.empty_table().to_pandas()
        if len(frames) > 1:
            run_metrics = pd.concat(frames[1:], ignore_index=True)
        write_table(out_failures[0], run_metrics, METRICS_SCHEMA)
        write_table(out_failures[1], reason_counts(j), reasons_schema())


def mitigation_pairs(correlations_path: str, q_max: float, out: str) -> None:
    """Pairs for the mitigation study from the correlation stage (significant rho > 0)."""
    from valueharms.mitigation import pairs_from_correlations

    corr = read_table(correlations_path, CORRELATIONS_SCHEMA)
    pairs = pairs_from_correlations(corr, q_max)
    write_json(out, [{"value": v, "category": c} for v, c in pairs])


# --- the scripts' entry points: a rule's job record -> its step ------------------------


def metrics_job(job: Job) -> None:
    metrics(
        list(job.input),
        job.wildcards["benchmark"],
        dict(job.params["settings"]),
        job.output["metrics"],
        job.output["scores"],
        job.output.get("reasons"),
    )


def stats_job(job: Job) -> None:
    stats(
        job.input.list("metrics"),
        job.input.list("scores"),
        job.input["distributions"],
        list(job.params["subjects"]),
        dict(job.params["settings"]),
        job.output["comparisons"],
        job.output["correlations"],
    )


def alignment_job(job: Job) -> None:
    alignment(
        job.input.list("generations"),
        job.input["distributions"],
        list(job.params["subjects"]),
        job.output["answers"],
        job.output["nmse"],
    )


def mitigation_job(job: Job) -> None:
    mitigation(
        job.input["metrics"],
        job.input.list("judgments"),
        job.input.get("pairs"),
        job.params["pairs"],
        dict(job.params["models"]),
        job.output["table"],
        (job.output["metrics"], job.output["reasons"]),
    )


def mitigation_pairs_job(job: Job) -> None:
    mitigation_pairs(job.input[0], job.params["q_max"], job.output[0])
