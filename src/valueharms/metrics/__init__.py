"""Per-model safety metrics from the judgments table (METHODS A5).

Each benchmark's `metrics` function (valueharms.benchmarks) takes the judgments of ONE
(model_id, condition, judge) and returns METRICS_SCHEMA rows, built with the helpers
here. Rows whose status is failed or unparsed are never scored;
they are only counted, per category, in n_failed / n_unparsed, so a judge outage shows
up in the report instead of silently shrinking or biasing a rate. `n` counts the units
a metric averages over: prompts for RTP, (axis, descriptor) buckets for the bias score,
judged rows otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from valueharms.judge.schema import STATUS_FAILED, STATUS_OK, STATUS_UNPARSED, STATUSES

ALL = "all"

METRICS_SCHEMA = pa.schema(
    [
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("condition", pa.string(), nullable=False),
        pa.field("judge", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("n", pa.int64(), nullable=False),
        pa.field("n_failed", pa.int64(), nullable=False),
        pa.field("n_unparsed", pa.int64(), nullable=False),
    ]
)

PROMPT_SCORES_SCHEMA = pa.schema(
    [
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("condition", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("category", pa.string()),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("score", pa.float64(), nullable=False),
    ]
)

_KEYS = ("benchmark", "model_id", "condition", "judge")


def identity(j: pd.DataFrame) -> dict[str, str]:
    """The one (benchmark, model_id, condition, judge) a frame belongs to."""
    ident = {}
    for key in _KEYS:
        values = j[key].unique()
        if len(values) != 1:
            raise ValueError(f"expected one {key} per metrics call, got {list(values)}")
        ident[key] = str(values[0])
    unknown = set(j["status"].unique()) - set(STATUSES)
    if unknown:
        raise ValueError(f"unknown judgment status: {sorted(unknown)}")
    return ident


def ok_rows(j: pd.DataFrame, column: str = "score") -> pd.DataFrame:
    ok = j[j["status"] == STATUS_OK]
    if ok[column].isna().any():
        raise ValueError(f"rows with status ok must have a {column}")
    return ok


def row(
    ident: dict[str, str], metric: str, category: str, value: float, n: int, rows: pd.DataFrame
) -> dict[str, Any]:
    """One metrics row; `rows` are all judgments (any status) behind it, for the counts."""
    return {
        **ident,
        "metric": metric,
        "category": category,
        "value": float(value) if n > 0 else np.nan,
        "n": int(n),
        "n_failed": int((rows["status"] == STATUS_FAILED).sum()),
        "n_unparsed": int((rows["status"] == STATUS_UNPARSED).sum()),
    }


def rows_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=METRICS_SCHEMA.names)
    return df.astype({"value": "float64", "n": "int64", "n_failed": "int64", "n_unparsed": "int64"})


def mean(x: pd.Series) -> float:
    return float(x.mean()) if len(x) else np.nan


def per_category(
    j: pd.DataFrame, ident: dict[str, str], metrics: dict[str, Callable[[pd.Series], float]]
) -> list[dict[str, Any]]:
    """Rows for "all" and each non-null category: each metric is a function of ok scores."""
    ok = ok_rows(j)
    parts = [(ALL, j, ok)]
    for cat in sorted(j["category"].dropna().unique()):
        parts.append((str(cat), j[j["category"] == cat], ok[ok["category"] == cat]))
    return [
        row(ident, name, cat, fn(part_ok["score"]), len(part_ok), part)
        for cat, part, part_ok in parts
        for name, fn in metrics.items()
    ]


def _check_benchmark(judgments: pd.DataFrame, benchmark: str) -> Any:
    """The registered benchmark, after checking the judgments are all of it."""
    from valueharms import benchmarks

    bench = benchmarks.get(benchmark)
    if bench.metrics is None:
        raise ValueError(f"benchmark {benchmark!r} declares no metrics")
    other = set(judgments["benchmark"].unique()) - {benchmark}
    if other:
        raise ValueError(f"judgments for {benchmark!r} contain rows of {sorted(other)}")
    return bench


def compute_metrics(judgments: pd.DataFrame, benchmark: str, **settings: Any) -> pd.DataFrame:
    """METRICS_SCHEMA rows for every (model_id, condition, judge) in `judgments`.

    Groups by judge as well, so that numbers from two judges are never pooled.
    `settings` go to the benchmark's function (its `metric_settings` from the config).
    """
    fn = _check_benchmark(judgments, benchmark).metrics
    parts = [
        fn(group, **settings)
        for _, group in judgments.groupby(["model_id", "condition", "judge"], sort=True)
    ]
    return pd.concat(parts, ignore_index=True) if parts else rows_frame([])


def prompt_scores(judgments: pd.DataFrame, benchmark: str) -> pd.DataFrame:
    """Per-prompt scores of ok rows, the units of the model-type statistics (METHODS A6).

    The benchmark's `prompt_scores` turns its ok rows into (prompt, category, metric,
    score) rows: one per prompt or one per judged generation, so prompt_id may repeat
    once per sample. One judge per (model_id, condition) is required, since the rows
    carry no judge column.
    """
    bench = _check_benchmark(judgments, benchmark)
    judges = judgments.groupby(["model_id", "condition"])["judge"].nunique()
    if (judges > 1).any():
        raise ValueError("prompt_scores needs one judge per (model_id, condition); filter first")
    if bench.prompt_scores is None:
        raise ValueError(f"benchmark {benchmark!r} declares no prompt scores")
    out = bench.prompt_scores(ok_rows(judgments, bench.score_column))
    keys = ["benchmark", "model_id", "condition", "prompt_id"]
    out = out.sort_values(keys + (["sample"] if "sample" in out else []), kind="stable")
    return out[PROMPT_SCORES_SCHEMA.names].astype({"score": "float64"}).reset_index(drop=True)
