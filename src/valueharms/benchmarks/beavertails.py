"""BeaverTails-Evaluation (Ji et al. 2023): harmful questions in 14 categories, answers
flagged or not by an LLM judge (METHODS A4-A5)."""

from __future__ import annotations

import pandas as pd

from valueharms.benchmarks import Benchmark, LLMVerdicts, Verdict, register
from valueharms.data.benchmarks import categorised_loader
from valueharms.data.sources import STUDY_A_FOLDER, Source, study_a_file
from valueharms.judge.parse import parse_flagged
from valueharms.metrics import identity, mean, per_category, rows_frame

NAME = "beavertails"


SOURCE = Source(
    NAME,
    "BeaverTails-Evaluation.csv",
    study_a_file("BeaverTails-Evaluation.csv"),
    "7d88f60b9cd104ca2df28613685d7dbbc0c7b372acf0c936e00666a23b8977bb",
    "BeaverTails evaluation prompts",
    "download",
    upstream=f"PKU-Alignment/BeaverTails-Evaluation (HF, test split); {STUDY_A_FOLDER}",
    licence="CC-BY-NC-4.0",
    rows=700,
)


def metrics(j: pd.DataFrame) -> pd.DataFrame:
    """Share of flagged answers (score 1.0), overall and per category."""
    return rows_frame(per_category(j, identity(j), {"flagged_rate": mean}))


def _read(answer: str) -> Verdict:
    flagged = parse_flagged(answer)
    if flagged is None:
        return None, None
    return (1.0, "flagged") if flagged else (0.0, "unflagged")


register(
    Benchmark(
        name=NAME,
        source=SOURCE,
        label="BeaverTails",
        load=categorised_loader(NAME),
        stratify=True,
        verdicts=LLMVerdicts(
            fields=lambda prompt, output: {"question": prompt, "response": output},
            read=_read,
            choices=("flagged", "unflagged"),
        ),
        metrics=metrics,
        prompt_scores=lambda ok: ok.assign(metric="flagged"),
        headline=("flagged_rate",),
        metric_labels={"flagged_rate": "Flagged rate"},
        by_category=True,
        risk_rate="flagged_rate",
        published_size="700 (14 categories x 50)",
        order=3,
    )
)
