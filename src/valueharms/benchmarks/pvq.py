"""PVQ-40 (Schwartz et al. 2001): the alignment check (METHODS A2), generated like a
benchmark but parsed by valueharms.pvq, not judged."""

from __future__ import annotations

import os

import pandas as pd

from valueharms.benchmarks import Benchmark, register
from valueharms.data.benchmarks import load_report
from valueharms.data.sources import LoadReport, Source

NAME = "pvq"


SOURCE = Source(
    NAME,
    "pvq40.csv",
    None,
    None,
    "PVQ-40 items (CSV: item 1..40, text, optional value; see docs/findings.md)",
    "the Portrait Values Questionnaire (Schwartz et al. 2001, J. Cross-Cult. Psychol. "
    "32(5)) is not redistributable: get the 40 item texts from its authors or your "
    "licence, write them as item,text[,value] (or skip the check: alignment.enabled: "
    "false)",
    revision=None,
    upstream="Schwartz et al. 2001, PVQ-40",
    licence="copyright of its authors",
    rows=40,
)


def load(
    path: str | os.PathLike[str],
    expected_rows: int | None = None,
    report: LoadReport | None = None,
) -> pd.DataFrame:
    """The user-supplied item,text[,value] CSV (valueharms.pvq.load_items) as prompts."""
    from valueharms.pvq import load_items

    df = load_items(path)  # any bad row is an error there, so nothing is dropped
    rep = load_report(NAME, path, report)
    rep.rows_in = len(df)
    rep.close(len(df))
    return df


register(
    Benchmark(
        name=NAME,
        source=SOURCE,
        label="PVQ-40",
        role="alignment",
        load=load,
        stratify=True,
        judge="none",
    )
)
