"""`--config key=value` without `--configfile` runs the demo with the overrides on top
(issue 21): rules/common.smk deep-merges them over config/demo.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_workflow import job_counts, planned_outputs, smk, workflow_copy


@pytest.fixture(scope="module")
def wf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return workflow_copy(tmp_path_factory.mktemp("wf_overrides"))


@pytest.mark.slow
def test_config_overrides_keep_the_demo(wf: Path) -> None:
    plain = smk(wf, "-n")
    assert plain.returncode == 0, plain.stderr + plain.stdout
    # A harmless top-level key (--config gives nested values as strings, which the schema
    # refuses): the demo's datasets, subjects and benchmarks stay, so the plan is the same.
    over = smk(wf, "-n", "--config", "cache_dir=.cache/elsewhere")
    assert over.returncode == 0, over.stderr + over.stdout
    assert job_counts(over.stdout) == job_counts(plain.stdout)
    assert sorted(planned_outputs(over.stdout)) == sorted(planned_outputs(plain.stdout))
    assert "results/report/index.html" in planned_outputs(over.stdout)


@pytest.mark.slow
def test_config_overrides_sit_on_top_of_the_demo(wf: Path) -> None:
    out = smk(wf, "-n", "--config", "base_model=no-such-model")
    assert out.returncode != 0
    assert "valueharms: config key 'base_model'" in out.stderr + out.stdout
    assert "no-such-model" in out.stderr + out.stdout
