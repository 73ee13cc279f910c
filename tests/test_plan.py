"""Plan: which distributions, subjects and model files a configuration asks for."""

from __future__ import annotations

from pathlib import Path

import pytest

from valueharms import VALUES
from valueharms.config import ConfigError, load, validate
from valueharms.plan import (
    Subject,
    adapter_dir,
    check_models,
    distribution_specs,
    is_api,
    read_template,
    subjects,
)

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["Ach", "Ben", "Con", "Hed", "Pow", "Sec", "SD", "Sti", "Tra", "Uni"]
GROUPS = ["Openness_to_Change", "Self-Enhancement", "Conservation", "Self-Transcendence"]


def test_default_config_builds_154_distributions() -> None:
    specs = distribution_specs(validate({}))
    assert len(specs) == 154
    names = list(specs)
    assert names[:14] == SHORT + GROUPS
    assert all(specs[n]["kind"] == "extreme" for n in names[:14])
    assert sum(s["kind"] == "realistic" for s in specs.values()) == 140
    assert names[14:24] == ["close_Ach"] + [f"close_Ach_{r}" for r in range(2, 11)]
    assert names[-1] == "close_Self-Transcendence_10"
    spec = specs["close_Ach_10"]
    assert (spec["anchor"], spec["rank"], spec["per_anchor"], spec["reverse_code"]) == (
        "Ach",
        10,
        10,
        True,
    )
    assert spec["anchor_scores"] == specs["Ach"]["scores"]


def test_extreme_scores() -> None:
    specs = distribution_specs(validate({}))
    assert specs["Ach"]["scores"] == {v: (6.0 if v == "Achievement" else 1.0) for v in VALUES}
    high = {"Security", "Conformity", "Tradition"}
    assert specs["Conservation"]["scores"] == {v: (6.0 if v in high else 1.0) for v in VALUES}
    assert [v for v, s in specs["Self-Enhancement"]["scores"].items() if s == 6.0] == [
        "Achievement",
        "Hedonism",
        "Power",
    ]
    cfg = validate({"distributions": {"extreme": {"high": 5, "low": 2}}})
    assert distribution_specs(cfg)["SD"]["scores"]["Self-direction"] == 5.0
    assert distribution_specs(cfg)["SD"]["scores"]["Power"] == 2.0


def test_per_anchor_sets_the_number_of_realistic_neighbours() -> None:
    specs = distribution_specs(validate({"distributions": {"realistic": {"per_anchor": 2}}}))
    assert len(specs) == 14 * 3
    assert [n for n in specs if n.startswith("close_Pow")] == ["close_Pow", "close_Pow_2"]


def test_select_keeps_the_named_distributions_in_the_given_order() -> None:
    cfg = validate({"distributions": {"select": ["close_Ach_3", "Conservation", "Ach"]}})
    specs = distribution_specs(cfg)
    assert list(specs) == ["close_Ach_3", "Conservation", "Ach"]
    assert specs["close_Ach_3"]["rank"] == 3


def test_unknown_select_is_a_config_error() -> None:
    cfg = validate({"distributions": {"select": ["Ach", "close_Ach_11", "Greed"]}})
    with pytest.raises(ConfigError) as err:
        distribution_specs(cfg)
    assert "distributions.select" in str(err.value)
    assert "'close_Ach_11', 'Greed'" in str(err.value)


def test_custom_distribution() -> None:
    scores = {v: float(i % 6 + 1) for i, v in enumerate(VALUES)}
    cfg = validate({"distributions": {"custom": {"mine": scores}, "select": ["mine"]}})
    assert distribution_specs(cfg) == {"mine": {"kind": "custom", "scores": scores}}


def test_custom_distribution_missing_a_value_is_a_config_error() -> None:
    scores = {v: 3 for v in VALUES if v != "Power"}
    cfg = validate({"distributions": {"custom": {"mine": scores}}})
    with pytest.raises(ConfigError) as err:
        distribution_specs(cfg)
    assert "distributions.custom.mine" in str(err.value)
    assert "missing ['Power']" in str(err.value)


def test_custom_distribution_with_an_unknown_value_is_a_config_error() -> None:
    scores = {v: 3 for v in VALUES} | {"Greed": 6}
    cfg = validate({"distributions": {"custom": {"mine": scores}}})
    with pytest.raises(ConfigError, match="distributions.custom.mine"):
        distribution_specs(cfg)


def test_group_with_unknown_value_is_a_config_error() -> None:
    cfg = validate({"distributions": {"groups": {"Odd": ["Power", "Greed"]}}})
    with pytest.raises(ConfigError) as err:
        distribution_specs(cfg)
    assert "distributions.groups.Odd" in str(err.value)
    assert "Greed" in str(err.value)


def test_subjects_of_the_demo_config() -> None:
    cfg = load(ROOT / "config" / "demo.yaml")
    cfg["distributions"]["select"] = ["Ach", "close_Ach"]  # pin: others may edit the demo
    subs = subjects(cfg, distribution_specs(cfg))
    assert subs == [
        Subject("smollm2-135m/vanilla", "plain", "vanilla", None, "Vanilla"),
        Subject("smollm2-135m/vanilla", "icl-Ach", "icl", "Ach", "ICL Ach"),
        Subject("smollm2-135m/vanilla", "icl-close_Ach", "icl", "close_Ach", "ICL close_Ach"),
        Subject("smollm2-135m/vim/Ach", "plain", "vim", "Ach", "VIM Ach"),
        Subject("smollm2-135m/vim/close_Ach", "plain", "vim", "close_Ach", "VIM close_Ach"),
    ]
    assert {s.base for s in subs} == {"smollm2-135m"}


def test_subjects_follow_the_enabled_flags_and_benign_models() -> None:
    cfg = validate(
        {
            "distributions": {"select": ["Ach"]},
            "vanilla": {"enabled": False},
            "icl": {"enabled": False},
            "benign": {"select": ["dolly", "samsum"]},
        }
    )
    subs = subjects(cfg, distribution_specs(cfg))
    assert [(s.model_id, s.condition, s.model_type) for s in subs] == [
        ("smollm2-135m/vim/Ach", "plain", "vim"),
        ("smollm2-135m/benign/dolly", "plain", "benign"),
        ("smollm2-135m/benign/samsum", "plain", "benign"),
    ]
    assert subs[1].label == "Benign dolly"


def test_adapter_dir() -> None:
    assert adapter_dir("smollm2-135m/vanilla") is None
    assert adapter_dir("smollm2-135m/vim/Ach") == "results/models/smollm2-135m/vim/Ach/adapter"
    assert adapter_dir("llama2-7b/benign/dolly") == "results/models/llama2-7b/benign/dolly/adapter"


def test_check_models_accepts_the_shipped_configs() -> None:
    check_models(validate({}))
    check_models(load(ROOT / "config" / "study_a.yaml"))


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"base_model": "gpt-9"}, "base_model"),
        ({"judges": {"llm": {"model": "gpt-9"}}}, "judges.llm.model"),
        ({"models": {"m": {"source": "hub"}}}, "models.m"),
        ({"models": {"m": {"source": "path", "path": "/no/such/model/dir"}}}, "models.m.path"),
        (
            {"models": {"gpt": {"source": "api"}}, "base_model": "gpt"},
            "base_model",
        ),
        (
            {
                "models": {"gpt": {"source": "api"}},
                "judges": {"llm": {"model": "gpt", "mode": "choice"}},
            },
            "judges.llm.mode",
        ),
    ],
)
def test_check_models_names_the_bad_key(config: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_models(validate(config))
    assert str(err.value).startswith(f"config key '{key}'")


def test_an_api_judge_is_accepted_in_generate_mode() -> None:
    cfg = validate(
        {
            "models": {"gpt-4o": {"source": "api", "revision": "gpt-4o-2024-08-06"}},
            "judges": {"llm": {"model": "gpt-4o"}},
        }
    )
    check_models(cfg)
    assert is_api(cfg, "gpt-4o") and not is_api(cfg, "smollm2-135m")


def test_read_template_strips_one_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("Say {prompt}\n\n", encoding="utf-8")
    assert read_template(str(path), "icl.template") == "Say {prompt}\n"
    path.write_text("no newline", encoding="utf-8")
    assert read_template(str(path), "icl.template") == "no newline"


def test_read_template_missing_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        read_template(str(tmp_path / "missing.txt"), "benchmarks.rtp.template")
    assert "config key 'benchmarks.rtp.template'" in str(err.value)
    assert "missing.txt" in str(err.value)


def test_default_templates_exist_and_have_their_fields() -> None:
    cfg = validate({})
    for name in ("rtp", "holisticbiasr", "hexphi", "beavertails"):
        text = read_template(str(ROOT / cfg["benchmarks"][name]["template"]), name)
        assert "{prompt}" in text


def test_drop_subject_files_removes_only_the_group_members_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group job clears the files cut from its last output before it runs, so that a
    failed or killed job leaves them missing and the same command reruns it (issue 21)."""
    from valueharms.plan import drop_subject_files, subject_file

    monkeypatch.chdir(tmp_path)
    mine = [("m/vanilla", "plain"), ("m/vim/Ach", "plain")]
    other = ("m/vim/Uni", "plain")
    for stage in ("generations", "judgments"):
        for model_id, condition in [*mine, other]:
            path = Path(subject_file(stage, "hexphi", model_id, condition))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("old")
    removed = drop_subject_files("hexphi", mine + mine, ["judgments"])
    assert sorted(removed) == sorted(subject_file("judgments", "hexphi", *s) for s in mine)
    assert Path(subject_file("judgments", "hexphi", *other)).exists()
    assert all(Path(subject_file("generations", "hexphi", *s)).exists() for s in mine)
    assert drop_subject_files("hexphi", mine, ["judgments"]) == []
