"""Issue 21: what a run needs is checked before its first job; a dry run shows the plan
and the same lines; planning needs no keys and no user files (issue 17)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from paths import ROOT

from valueharms import plan, preflight
from valueharms.config import deep_merge, load_yaml, validate


def _plan(extra: dict) -> plan.Plan:
    return plan.build(validate(deep_merge(load_yaml(ROOT / "config/demo.yaml"), extra)))


API_JUDGE = {
    "models": {"gpt-judge": {"source": "api", "api_key_env": "VH_TEST_UNSET_KEY"}},
    "judges": {"llm": {"model": "gpt-judge", "mode": "generate"}},
    "studyb": {"judge": {"model": "smollm2-135m"}, "extract": {"model": "smollm2-135m"}},
}


def test_an_unset_key_variable_is_named_with_its_config_key():
    p = _plan(API_JUDGE)
    problems = preflight.problems(p, env={})
    assert problems == [
        "judges.llm.model: gpt-judge (models.gpt-judge.api_key_env): environment variable "
        "VH_TEST_UNSET_KEY is not set"
    ]
    assert preflight.problems(p, env={"VH_TEST_UNSET_KEY": "sk-x"}) == []


def test_perspective_without_its_key_and_a_classifier_without_its_directory(tmp_path):
    p = _plan(
        {
            "judges": {
                "toxicity": {"kind": "perspective", "api_key_env": "VH_NO_PERSPECTIVE"},
                "regard": {"kind": "hf_classifier", "path": str(tmp_path / "nowhere")},
            }
        }
    )
    problems = preflight.problems(p, env={})
    assert "judges.toxicity.api_key_env: environment variable VH_NO_PERSPECTIVE is not set" in (
        problems
    )
    assert f"judges.regard.path: no model directory at {tmp_path / 'nowhere'}" in problems


def test_a_template_with_a_field_its_step_does_not_fill(tmp_path):
    bad = tmp_path / "judge.txt"
    bad.write_text("Rate {response} for {severity}\n")
    p = _plan({"judges": {"templates": {"hexphi": str(bad)}}})
    (problem,) = preflight.problems(p, env={})
    assert problem.startswith("judges.templates.hexphi: the template uses {severity}")
    assert "{instruction}" in problem and "{response}" in problem


def test_the_demo_has_no_problems():
    assert preflight.problems(_plan({}), env={}) == []
    assert preflight.summary(_plan({}), env={}) == ""


@pytest.mark.parametrize("path", ["config/study_a.yaml", "config/study_b.yaml"])
def test_study_configs_plan_without_user_files_and_name_them(path):
    p = plan.build(validate(load_yaml(ROOT / path)))
    missing = preflight.missing_data(p)
    want = {"config/study_a.yaml": ["pvq"], "config/study_b.yaml": ["anthrobench", "issuebench"]}
    for name in want[path]:
        assert any(f"dataset '{name}'" in m and f"datasets.{name}.path" in m for m in missing)


def test_a_missing_user_file_is_a_fetch_job_that_fails_with_the_message(tmp_path):
    from valueharms.data.sources import DataError, download, source

    with pytest.raises(DataError, match=r"datasets\.pvq\.path"):
        download(source("pvq"), tmp_path / "pvq.csv")


@pytest.mark.slow
def test_a_run_stops_before_its_first_job_and_a_dry_run_prints_the_same_line(tmp_path):
    from test_workflow import smk, workflow_copy

    wf = workflow_copy(tmp_path / "wf")
    (wf / "config/api.yaml").write_text(yaml.safe_dump(API_JUDGE))
    args = ["--configfile", "config/demo.yaml", "config/api.yaml", "--cores", "1"]
    line = "environment variable VH_TEST_UNSET_KEY is not set"

    dry = smk(wf, "-n", *args)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "Job stats:" in dry.stdout and line in dry.stderr
    assert dry.stderr.index(line) > dry.stderr.find("This was a dry-run")

    real = smk(wf, *args)
    assert real.returncode != 0
    assert "judges.llm.model: gpt-judge" in real.stderr and line in real.stderr
    assert not (wf / "results").exists(), "a job ran before the preflight stopped the run"
    assert not (Path(wf) / ".snakemake/locks").exists() or not any(
        (wf / ".snakemake/locks").iterdir()
    ), "the stopped run left its lock behind"


def test_the_demo_without_its_pvq_file_still_plans_and_names_the_key():
    p = _plan({"datasets": {"pvq": {"path": None}}})
    (missing,) = preflight.missing_data(p)
    assert "datasets.pvq.path" in missing


def test_a_run_that_reaches_no_judge_job_needs_no_judge_key():
    p = _plan(API_JUDGE)
    assert preflight.problems(p, env={}, rules={"benchmark_prompts", "distribution"}) == []
    assert len(preflight.problems(p, env={}, rules={"judge"})) == 1


def test_a_local_endpoint_needs_no_key():
    """The openai backend sends a dummy key to a server on this machine (a vLLM server)."""
    local = deep_merge(
        API_JUDGE, {"models": {"gpt-judge": {"base_url": "http://127.0.0.1:8000/v1"}}}
    )
    assert preflight.problems(_plan(local), env={}) == []
