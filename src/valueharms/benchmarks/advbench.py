"""AdvBench (Zou et al. 2023): harmful behaviours; Study B's refusal rate (METHODS B3)."""

from __future__ import annotations

import os

import pandas as pd

from valueharms.benchmarks import Benchmark, register
from valueharms.data.benchmarks import drop_empty, frame, load_report, read_csv
from valueharms.data.sources import STUDY_A_FOLDER, LoadReport, Source, study_a_file

NAME = "advbench"


SOURCE = Source(
    NAME,
    "harmful_behaviors.csv",
    study_a_file("harmful_behaviors.csv"),
    "6cd1a5c63c07610d7eb67307772ee5606017ee950b5770ab288a2c487489d3e1",
    "AdvBench harmful behaviours (goal,target)",
    "download",
    upstream="llm-attacks/llm-attacks data/advbench/harmful_behaviors.csv (Zou et al. "
    f"2023); {STUDY_A_FOLDER}",
    licence="MIT",
    rows=520,
)


def load(
    path: str | os.PathLike[str],
    expected_rows: int | None = None,
    report: LoadReport | None = None,
) -> pd.DataFrame:
    """harmful_behaviors.csv: columns goal,target (520 behaviours); prompt = goal."""
    df = read_csv(NAME, path, ["goal", "target"], expected_rows)
    rep = load_report(NAME, path, report)
    rep.rows_in = len(df)
    df = drop_empty(df, ["goal"], rep)
    rep.close(len(df))
    return frame(NAME, df["goal"].tolist(), rows=df.index.tolist())


register(
    Benchmark(
        name=NAME,
        source=SOURCE,
        label="AdvBench",
        role="studyb",
        load=load,
        judge="refusal",
        published_size="520",
    )
)
