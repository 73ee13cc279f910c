"""Lists a run cannot work with empty fail at validation, naming the key (issue 21)."""

from __future__ import annotations

from typing import Any

import pytest
from paths import ROOT

from valueharms.config import ConfigError, deep_merge, load_yaml, validate

STUDY_A_OFF = {
    "vim": {"enabled": False},
    "vanilla": {"enabled": False},
    "icl": {"enabled": False},
}


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"benchmarks": {"select": []}}, "benchmarks.select"),
        ({"distributions": {"select": []}}, "distributions.select"),
        ({"vim": {"stage1": {"target_modules": []}}}, "vim.stage1.target_modules"),
        ({"vim": {"stage2": {"target_modules": []}}}, "vim.stage2.target_modules"),
        ({"benign": {"train": {"target_modules": []}}}, "benign.train.target_modules"),
        ({"studyb": {"train": {"betas": []}}}, "studyb.train.betas"),
        ({"studyb": {"train": {"target_modules": []}}}, "studyb.train.target_modules"),
        ({"studyb": {"sources": []}}, "studyb.sources"),
        ({"studyb": {"values": []}}, "studyb.values"),
        ({"studyb": {"qa": {"tasks": []}}}, "studyb.qa.tasks"),
    ],
)
def test_an_empty_list_names_its_key(override: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^config key '{key}': \[\] should be non-empty"):
        validate(override)


def test_the_demo_with_an_empty_selection_fails(tmp_path) -> None:
    demo = load_yaml(ROOT / "config" / "demo.yaml")
    for key in ("benchmarks", "distributions"):
        with pytest.raises(ConfigError, match=rf"config key '{key}\.select'"):
            validate(deep_merge(demo, {key: {"select": []}}))


def test_the_message_says_why_the_list_is_needed() -> None:
    with pytest.raises(ConfigError, match=r"vim, vanilla or icl enabled"):
        validate({"benchmarks": {"select": []}})
    with pytest.raises(ConfigError, match=r"vim or icl is enabled"):
        validate({"distributions": {"select": []}})


def test_study_a_off_may_select_nothing() -> None:
    """Study B's config turns Study A off with empty selections."""
    out = validate({**STUDY_A_OFF, "benchmarks": {"select": []}, "distributions": {"select": []}})
    assert out["benchmarks"]["select"] == [] and out["distributions"]["select"] == []
    validate(load_yaml(ROOT / "config" / "study_b.yaml"))


def test_what_each_selection_needs() -> None:
    # Vanilla alone has no per-distribution subjects, but is judged on the benchmarks.
    vanilla_only = {**STUDY_A_OFF, "vanilla": {"enabled": True}}
    validate({**vanilla_only, "distributions": {"select": []}})
    with pytest.raises(ConfigError, match="'benchmarks.select'"):
        validate({**vanilla_only, "benchmarks": {"select": []}})
    # Benign subjects are judged on the benchmarks too.
    benign_only = {**STUDY_A_OFF, "benign": {"select": ["alpaca"]}}
    with pytest.raises(ConfigError, match="'benchmarks.select'"):
        validate({**benign_only, "benchmarks": {"select": []}})
    # ICL subjects are one per distribution.
    icl_only = {**STUDY_A_OFF, "icl": {"enabled": True}}
    with pytest.raises(ConfigError, match="'distributions.select'"):
        validate({**icl_only, "distributions": {"select": []}})


def test_null_still_selects_every_distribution() -> None:
    assert validate({"distributions": {"select": None}})["distributions"]["select"] is None


@pytest.mark.parametrize("name", ["demo.yaml", "study_a.yaml", "study_b.yaml", "slurm_ci.yaml"])
def test_the_shipped_configs_still_validate(name: str) -> None:
    validate(load_yaml(ROOT / "config" / name))
