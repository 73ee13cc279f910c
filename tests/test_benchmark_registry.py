"""The benchmark registry keeps each benchmark in one place (issue 19)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from valueharms import benchmarks

ROOT = Path(__file__).resolve().parents[1]
# The code and the schema. Study configs and docs name the benchmarks they select or
# describe; that is their job, not a benchmark spread over the code.
CODE = [
    *sorted((ROOT / "src" / "valueharms").rglob("*.py")),
    *sorted((ROOT / "rules").glob("*.smk")),
    *sorted((ROOT / "scripts").glob("*.py")),
    ROOT / "Snakefile",
    ROOT / "config" / "schema.yaml",
]


def files_naming(name: str) -> list[str]:
    word = re.compile(rf"\b{re.escape(name)}\b")  # the registered name, as code spells it
    return [str(p.relative_to(ROOT)) for p in CODE if word.search(p.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("name", benchmarks.names())
def test_a_benchmark_is_named_in_at_most_three_files(name: str) -> None:
    where = files_naming(name)
    assert len(where) <= 3, f"{name} appears in {len(where)} files: {where}"


def test_registered_benchmarks_are_complete() -> None:
    for b in benchmarks.all_benchmarks():
        if b.role == "safety":
            assert b.load and b.metrics and b.prompt_scores and b.headline, b.name
            assert set(b.headline) <= set(b.metric_labels), b.name
        if b.judge_kind({"judges": {"regard": {"kind": "llm"}}}) == "llm":
            assert b.verdicts is not None and b.verdicts.choices, b.name
            assert all(b.verdicts.read(c)[0] is not None for c in b.verdicts.choices), b.name


def test_unknown_benchmark_is_an_error_naming_the_registry() -> None:
    with pytest.raises(ValueError, match="unknown benchmark 'nosuch'; registered: "):
        benchmarks.get("nosuch")


def test_study_b_benchmarks_by_judge_kind_in_the_published_order() -> None:
    studyb = benchmarks.names("studyb")
    assert [benchmarks.get(n).label for n in studyb] == ["IssueBench", "AdvBench", "AnthroBench"]
    assert [benchmarks.by_judge(k) for k in ("values", "refusal", "anthro")] == list(studyb)
    assert benchmarks.module(benchmarks.by_judge("refusal")).judge_refusal
    (alignment,) = benchmarks.names("alignment")
    assert benchmarks.module(alignment).nmse_table
    with pytest.raises(ValueError, match="0 studyb benchmarks are judged by 'toxicity'"):
        benchmarks.by_judge("toxicity")
