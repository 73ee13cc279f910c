"""The typed plan (valueharms.plan.build) and the judge registries, in-process."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from valueharms import plan
from valueharms.config import load_yaml, validate
from valueharms.judge import select, steps

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo_plan(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)  # template and data paths in the config are repository-relative
    return plan.build(validate(load_yaml(ROOT / "config" / "demo.yaml")))


def test_demo_plan_holds_both_studies(demo_plan) -> None:
    p = demo_plan
    assert list(p.dists) == ["Ach", "close_Ach", "Uni"]
    kinds = {s.model_type for s in p.subjects}
    assert kinds == {"vanilla", "icl", "vim"}
    assert p.sb.enabled and p.sb_items  # the Study B slice
    # One group per (benchmark, base, family) chunk; every item is in exactly one group.
    grouped = [it for bench in p.groups.values() for items in bench.values() for it in items]
    assert sorted(map(repr, grouped)) == sorted(map(repr, dict.fromkeys(p.gen_items)))
    it = p.gen_items[0]
    gid = p.group_of(it.benchmark, it.model_id, it.condition)
    assert it in p.group_items(it.benchmark, gid)


def test_every_benchmark_has_one_judge_decided_once(demo_plan) -> None:
    judges = demo_plan.judges
    assert judges["rtp"].kind == "toxicity" and judges["rtp"].model is None
    assert judges["rtp"].template is None
    assert judges["hexphi"].kind == "llm" and judges["hexphi"].model
    assert "{response}" in judges["hexphi"].template
    assert {judges[b].kind for b in ("issuebench", "advbench", "anthrobench")} == {
        "values",
        "refusal",
        "anthro",
    }
    # Every kind the plan picks has code registered to run it.
    assert {j.kind for j in judges.values()} <= set(steps.RUNNERS)
    assert set(select.KINDS) == set(steps.RUNNERS)


def test_regard_classifier_switch_changes_the_judge_kind(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    cfg = load_yaml(ROOT / "config" / "demo.yaml")
    cfg.setdefault("judges", {})["regard"] = {"kind": "hf_classifier", "path": "x"}
    j = plan.build(validate(cfg)).judges["holisticbiasr"]
    assert (j.kind, j.template, j.model, j.name) == ("regard", None, None, "hf:x")


def test_icl_members_name_their_distribution_file(demo_plan) -> None:
    p = demo_plan
    icl = next(it for it in p.gen_items if it.condition.startswith("icl-"))
    m = p.member_params(icl)
    assert m["icl"] == f"results/data/distributions/{icl.condition[4:]}.parquet"
    assert m["adapter"] is None and not m["pairs"]


def test_an_unregistered_judge_kind_is_an_error(tmp_path) -> None:
    gens = tmp_path / "g.parquet"
    from valueharms.generate import GENERATIONS_SCHEMA
    from valueharms.io import write_table

    write_table(gens, pd.DataFrame(columns=GENERATIONS_SCHEMA.names), GENERATIONS_SCHEMA)
    job = steps.JudgeJob(str(gens), "rtp", "nope", {}, None, "n", str(tmp_path / "o"), "c")
    with pytest.raises(ValueError, match="unknown judge kind 'nope'"):
        steps.run(job)
