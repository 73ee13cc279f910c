"""Configuration: schema defaults, merging a user's file over them, errors naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from valueharms.config import ConfigError, deep_merge, load, load_yaml, validate

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_fill_an_empty_config() -> None:
    cfg = validate({})
    assert cfg["base_model"] == "smollm2-135m"
    assert cfg["models"] == {
        "smollm2-135m": {"source": "embedded", "chat": True, "revision": None, "path": None}
    }
    assert cfg["vim"]["stage1"]["learning_rate"] == 2e-5
    assert cfg["vim"]["stage2"]["lora_r"] == 8
    assert cfg["vim"]["stage1"]["target_modules"] == ["q_proj", "v_proj"]
    assert cfg["vim"]["threshold"] == 3
    assert cfg["distributions"]["realistic"]["per_anchor"] == 10
    assert cfg["distributions"]["extreme"] == {"high": 6, "low": 1}
    # Per-benchmark defaults differ, and the shared benchmark definition fills the rest.
    rtp = cfg["benchmarks"]["rtp"]
    assert (rtp["samples"], rtp["stop_at_sentence"], rtp["max_new_tokens"]) == (10, True, 64)
    assert (rtp["temperature"], rtp["top_p"], rtp["n_prompts"]) == (0.1, 0.75, None)
    assert cfg["benchmarks"]["holisticbiasr"]["max_new_tokens"] == 128
    assert cfg["benchmarks"]["hexphi"]["samples"] == 1
    assert cfg["benchmarks"]["hexphi"]["template"] == "resources/prompts/bench_instruction.txt"
    assert cfg["resources"]["train"] == {"mem_mb": 32000, "runtime": 720, "gpu": 1, "threads": 4}


def test_user_values_merge_over_per_entry_defaults() -> None:
    user = {"benchmarks": {"rtp": {"n_prompts": 5}}, "vim": {"stage1": {"epochs": 2}}}
    before = copy.deepcopy(user)
    cfg = validate(user)
    assert user == before  # the caller's dict is not modified
    rtp = cfg["benchmarks"]["rtp"]
    assert rtp["n_prompts"] == 5
    assert rtp["samples"] == 10  # the rtp-specific default survives the merge
    assert rtp["template"] == "resources/prompts/bench_continuation.txt"
    assert cfg["benchmarks"]["hexphi"]["n_prompts"] is None
    assert cfg["vim"]["stage1"]["epochs"] == 2
    assert cfg["vim"]["stage1"]["learning_rate"] == 2e-5
    assert cfg["vim"]["stage2"]["epochs"] == 5


def test_deep_merge_merges_dicts_and_replaces_everything_else() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    over = {"a": {"y": [3]}, "c": {"z": 1}}
    assert deep_merge(base, over) == {"a": {"x": 1, "y": [3]}, "b": 1, "c": {"z": 1}}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"vim": {"threshhold": 3}}, "vim.threshhold"),
        ({"bogus": 1}, "bogus"),
        ({"benchmarks": {"rtp": {"sample": 3}}}, "benchmarks.rtp.sample"),
        ({"models": {"m": {"source": "hub", "hf_id": "x", "bogus": 1}}}, "models.m.bogus"),
        ({"vim": {"stage2": {"lr": 0.1}}}, "vim.stage2.lr"),
    ],
)
def test_unknown_key_is_named(config: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert f"config key '{key}'" in str(err.value)
    assert "unexpected" in str(err.value)


@pytest.mark.parametrize(
    ("config", "key", "word"),
    [
        ({"vim": {"threshold": "high"}}, "vim.threshold", "number"),
        ({"benchmarks": {"rtp": {"samples": "ten"}}}, "benchmarks.rtp.samples", "integer"),
        ({"vim": {"stage1": {"epochs": 1.5}}}, "vim.stage1.epochs", "integer"),
        ({"generation": {"batch_size": 0}}, "generation.batch_size", "minimum"),
        ({"benchmarks": {"hexphi": {"top_p": 0}}}, "benchmarks.hexphi.top_p", "minimum"),
    ],
)
def test_wrong_type_or_range_names_the_key(config: dict, key: str, word: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert f"config key '{key}'" in str(err.value)
    assert word in str(err.value)


@pytest.mark.parametrize(
    ("config", "key", "bad"),
    [
        ({"vim": {"strategy": "median"}}, "vim.strategy", "median"),
        ({"benchmarks": {"select": ["rtp", "toxigen"]}}, "benchmarks.select.1", "toxigen"),
        ({"judges": {"toxicity": {"kind": "detoxify"}}}, "judges.toxicity.kind", "detoxify"),
        ({"datasets": {"imdb": {"path": "x.csv"}}}, "datasets", "imdb"),
    ],
)
def test_enum_violation_names_the_key(config: dict, key: str, bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert f"config key '{key}'" in str(err.value)
    assert f"'{bad}' is not one of" in str(err.value)


def test_demo_config_validates_with_its_overrides() -> None:
    # Others tune the demo's numbers: compare with the file's own values, not copies.
    path = ROOT / "config" / "demo.yaml"
    raw = load_yaml(path)
    cfg = load(path)
    assert cfg["distributions"]["select"] == raw["distributions"]["select"]
    assert cfg["distributions"]["realistic"]["per_anchor"] == 10
    for stage in ("stage1", "stage2"):
        merged = cfg["vim"][stage]
        for key, value in raw["vim"][stage].items():
            assert merged[key] == value
        assert merged["lora_alpha"] == raw["vim"][stage].get("lora_alpha", 32)
        assert merged["target_modules"] == raw["vim"][stage].get(
            "target_modules", ["q_proj", "v_proj"]
        )
    rtp = cfg["benchmarks"]["rtp"]
    for key, value in raw["benchmarks"]["rtp"].items():
        assert rtp[key] == value
    assert rtp["stop_at_sentence"] is True  # rtp's own default survives the override
    assert rtp["template"] == "resources/prompts/bench_continuation.txt"
    for name, spec in raw["datasets"].items():
        assert cfg["datasets"][name]["path"] == spec["path"]


def test_study_a_config_validates_with_its_overrides() -> None:
    cfg = load(ROOT / "config" / "study_a.yaml")
    assert cfg["base_model"] == "llama2-7b"
    assert cfg["models"]["llama2-7b"] == {
        "source": "hub",
        "hf_id": "meta-llama/Llama-2-7b-hf",
        "chat": False,
        "revision": None,
        "path": None,
    }
    assert cfg["benign"]["select"] == ["alpaca", "dolly", "grammar", "samsum"]
    assert cfg["benchmarks"]["rtp"]["template"] == "resources/prompts/bench_raw.txt"
    assert cfg["benchmarks"]["rtp"]["samples"] == 10
    assert cfg["benchmarks"]["holisticbiasr"]["max_new_tokens"] == 128
    assert cfg["vim"]["stage1"]["learning_rate"] == 2e-5
    assert cfg["judges"]["llm"]["model"] == "llama2-7b"
