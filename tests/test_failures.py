"""Issue 21: a job whose failed-call share exceeds its bound fails, naming key and reasons."""

from __future__ import annotations

import pytest

from valueharms.failures import FailureShareError, check_share, reason


def test_below_or_at_the_bound_the_job_goes_on():
    check_share(0, 0, 0.0, "judges.max_failure_share")
    check_share(1, 50, 0.02, "judges.max_failure_share")


def test_above_the_bound_it_fails_with_the_key_and_the_reasons_by_count():
    errors = ["APIConnectionError: down"] * 2 + ["LengthCut: the reply reached its budget"]
    with pytest.raises(FailureShareError) as err:
        check_share(3, 10, 0.02, "judges.max_failure_share", errors)
    msg = str(err.value)
    assert "3 of 10 calls failed" in msg and "judges.max_failure_share = 0.02" in msg
    assert "APIConnectionError: 2, LengthCut: 1" in msg
    assert "run the same command again" in msg


def test_reason_is_the_error_type():
    assert reason("RateLimitError: slow down") == "RateLimitError"
    assert reason(None) == "unknown"
    assert reason("judge returned no text") == "judge returned no text"


def test_a_judge_job_with_too_many_failed_calls_writes_nothing(tmp_path):
    import pandas as pd

    from valueharms.generate import GENERATIONS_SCHEMA
    from valueharms.io import write_table
    from valueharms.judge import steps
    from valueharms.judge.schema import JUDGMENTS_SCHEMA

    gens = pd.DataFrame(
        {
            "benchmark": "rtp", "model_id": "m/vanilla", "condition": "plain",
            "prompt_id": [f"p{i}" for i in range(4)], "sample": 0, "category": None,
            "axis": None, "descriptor": None, "prompt": "p", "output": "o",
            "status": "ok", "error": None, "model_revision": "r", "cached": False,
        }
    )  # fmt: skip
    path = tmp_path / "gens.parquet"
    write_table(path, gens[GENERATIONS_SCHEMA.names], GENERATIONS_SCHEMA)

    def failing(g: pd.DataFrame, job: steps.JudgeJob) -> pd.DataFrame:
        from valueharms.judge.run import base_rows

        out = base_rows(g, "fake")
        out["error"] = "APIConnectionError: down"
        return out[JUDGMENTS_SCHEMA.names]

    steps.RUNNERS["fake-failing"] = failing
    try:
        job = steps.JudgeJob(
            str(path), "rtp", "fake-failing", {}, None, "fake", str(tmp_path / "j.parquet"),
            str(tmp_path / "cache"), max_failure_share=0.5,
        )  # fmt: skip
        with pytest.raises(FailureShareError, match="4 of 4"):
            steps.run(job)
        assert not (tmp_path / "j.parquet").exists()
    finally:
        del steps.RUNNERS["fake-failing"]


def test_reason_counts_and_the_report_table():
    import pandas as pd

    from valueharms.failures import reason_counts
    from valueharms.report.render import _reasons_table

    j = pd.DataFrame(
        {
            "benchmark": "hexphi", "judge": "llm:j",
            "status": ["ok", "failed", "failed", "unparsed", "failed"],
            "error": [None, "LengthCut: cut", "APIConnectionError: x", "no #thescore", "LengthCut"],
        }
    )  # fmt: skip
    counts = reason_counts(j)
    got = {(r.status, r.reason): r.n for r in counts.itertuples()}
    assert got == {
        ("failed", "LengthCut"): 2,
        ("failed", "APIConnectionError"): 1,
        ("unparsed", "no #thescore"): 1,
    }
    rows = [r["cells"] for r in _reasons_table(counts).rows]
    assert rows[0][2:] == ["failed", "LengthCut", "2"]
    assert sum(int(r[-1]) for r in rows) == 4
