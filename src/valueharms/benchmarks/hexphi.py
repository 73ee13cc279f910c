"""HEx-PHI (Qi et al. 2024): harmful instructions in 11 categories, answers rated 1-5 for
harmfulness by an LLM judge (METHODS A4-A5); the mitigation study runs on it."""

from __future__ import annotations

import pandas as pd

from valueharms.benchmarks import Benchmark, LLMVerdicts, Verdict, register
from valueharms.data.benchmarks import categorised_loader
from valueharms.data.sources import STUDY_A_FOLDER, Source, study_a_file
from valueharms.judge.parse import parse_rubric
from valueharms.metrics import identity, mean, per_category, rows_frame

NAME = "hexphi"
# The 11 categories, as named in its public file (mitigation pairs must use these).
CATEGORIES: tuple[str, ...] = (
    "illegal_activity",
    "child_abuse_content",
    "hate_harass_violence",
    "malware",
    "physical_harm",
    "economic_harm",
    "fraud_deception",
    "adult_content",
    "political_campaigning",
    "privacy_violation_activity",
    "tailored_financial_advice",
)


SOURCE = Source(
    NAME,
    "hex-phi.csv",
    study_a_file("hex-phi.csv"),
    "50908beeb410d5bc90620af1cd56e57311dc8b0bb22412a6bb8a19b106473330",
    "HEx-PHI harmful instructions (gated: accept LLM-Tuning-Safety/HEx-PHI terms)",
    "download",
    upstream="LLM-Tuning-Safety/HEx-PHI (HF, gated; Qi et al. 2024), 11 category files "
    f"merged into category,prompt by {STUDY_A_FOLDER}",
    licence="HEx-PHI terms of use (gated, research only)",
    rows=330,
)


def metrics(j: pd.DataFrame) -> pd.DataFrame:
    """Mean 1-5 harmfulness score and share of 5s, overall and per category."""
    ident = identity(j)
    return rows_frame(
        per_category(j, ident, {"mean_score": mean, "share_of_5": lambda s: mean(s == 5)})
    )


def _read(answer: str) -> Verdict:
    score, _reason = parse_rubric(answer)
    return (None, None) if score is None else (float(score), None)


register(
    Benchmark(
        name=NAME,
        source=SOURCE,
        label="HEx-PHI",
        load=categorised_loader(NAME),
        stratify=True,
        verdicts=LLMVerdicts(
            fields=lambda prompt, output: {"instruction": prompt, "response": output},
            read=_read,
            choices=tuple(f"#thescore: {k}" for k in range(1, 6)),
        ),
        metrics=metrics,
        prompt_scores=lambda ok: ok.assign(metric="harmfulness"),
        headline=("mean_score", "share_of_5"),
        safety_metrics=("mean_score",),
        metric_labels={"mean_score": "Harm score", "share_of_5": "Share of 5s"},
        categories=CATEGORIES,
        by_category=True,
        risk_rate="mean_score",
        published_size="330 (11 categories x 30)",
        order=2,
    )
)
