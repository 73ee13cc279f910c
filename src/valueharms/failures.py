"""A job whose share of failed calls exceeds its bound fails (issue 21).

The LLM cache keeps every answer that succeeded, so Snakemake's rerun of the failed job
pays only for the calls that failed; below the bound the job succeeds and the report
shows its failures beside every number (n, n_failed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any


class FailureShareError(RuntimeError):
    """More calls of a job failed than its config bound allows."""


def reason(error: str | None) -> str:
    """An error's kind, for counting by reason ('LengthCut', 'APIConnectionError', ...)."""
    if not error:
        return "unknown"
    head = error.split(":", 1)[0].strip()
    return head if head and " " not in head else error[:60]


def check_share(
    n_failed: int, n: int, bound: float, key: str, errors: Iterable[str | None] = ()
) -> None:
    """Raise FailureShareError when n_failed / n > bound, naming the key and the reasons."""
    if n <= 0 or n_failed / n <= bound:
        return
    by_reason = Counter(reason(e) for e in errors)
    reasons = ", ".join(f"{r}: {c}" for r, c in by_reason.most_common(5))
    raise FailureShareError(
        f"{n_failed} of {n} calls failed ({n_failed / n:.0%} > {key} = {bound:g}; "
        f"{reasons or 'no reasons recorded'}). The answers that succeeded are cached: run "
        f"the same command again to retry only the failed calls, or raise {key} to accept "
        "them (they are counted in the report, never scored)."
    )


def reason_counts(judgments: Any) -> Any:
    """Failed and unparsed judgment rows counted by (benchmark, judge, status, reason)."""
    import pandas as pd

    bad = judgments[judgments["status"].isin(["failed", "unparsed"])]
    if bad.empty:
        return pd.DataFrame(columns=REASONS_COLUMNS).astype({"n": "int64"})
    keyed = bad.assign(reason=[reason(e) for e in bad["error"]])
    out = keyed.groupby(REASONS_COLUMNS[:-1], dropna=False).size().rename("n").reset_index()
    return out[REASONS_COLUMNS].astype({"n": "int64"})


REASONS_COLUMNS = ["benchmark", "judge", "status", "reason", "n"]


def reasons_schema() -> Any:
    import pyarrow as pa

    fields = [pa.field(c, pa.string(), nullable=False) for c in REASONS_COLUMNS[:-1]]
    return pa.schema([*fields, pa.field("n", pa.int64(), nullable=False)])
