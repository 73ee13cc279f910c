"""Configuration: schema defaults, merging a user's file over them, errors naming the key."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from valueharms.config import ConfigError, deep_merge, load, load_yaml, validate
from valueharms.data.sources import DataError

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
    assert (rtp["samples"], rtp["max_new_tokens"], rtp["scored_text"]) == (10, 64, "sentence")
    assert rtp["stop"] == dict.fromkeys(("vanilla", "icl", "vim", "benign"), "sentence")
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
        ({"judges": {"toxicity": {"kind": "detoxify"}}}, "judges.toxicity.kind", "detoxify"),
    ],
)
def test_enum_violation_names_the_key(config: dict, key: str, bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert f"config key '{key}'" in str(err.value)
    assert f"'{bad}' is not one of" in str(err.value)


# Benchmark and dataset names are checked against the registries when the plan is built
# (a new benchmark module needs no schema edit).
@pytest.mark.parametrize(
    ("override", "key", "needle"),
    [
        ({"benchmarks": {"select": ["rtp", "toxigen"]}}, "benchmarks.select[1]", "'toxigen'"),
        ({"benchmarks": {"toxigen": {"n_prompts": 3}}}, "benchmarks.toxigen", "registered"),
        ({"datasets": {"imdb": {"path": "x.csv"}}}, "datasets.imdb", "no such dataset"),
    ],
)
def test_unregistered_benchmark_or_dataset_names_the_key(
    override: dict, key: str, needle: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_time_checks(deep_merge(load_yaml(ROOT / "config" / "demo.yaml"), override))
    assert f"config key '{key}'" in str(err.value) and needle in str(err.value)


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
    assert rtp["stop"]["vim"] == "sentence"  # rtp's own default survives the override
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
    assert cfg["judges"]["llm"]["model"] == "gpt-4o"


# --- parse-time errors, as the workflow reports them --------------------------------------
# The checks rules/common.smk runs before snakemake plans a job, run in-process: each bad
# config stops with one `valueharms: <key> ...` line. tests/test_workflow.py keeps one case
# through snakemake itself (test_bad_config_reaches_the_user_through_snakemake).


def parse_time_checks(config: dict) -> None:
    """What rules/common.smk checks at parse time; raises its ConfigError or DataError."""
    from valueharms import plan

    plan.build(validate(config))


def parse_time_message(config: dict, workdir: Path) -> str:
    """The `valueharms: ...` line the workflow stops with, checked from `workdir` (which
    holds the checkout's resources/, as the workflow's own directory does)."""
    (workdir / "resources").symlink_to(ROOT / "resources")
    cwd = Path.cwd()
    os.chdir(workdir)
    try:
        with pytest.raises((ConfigError, DataError)) as err:
            parse_time_checks(config)
    finally:
        os.chdir(cwd)
    assert not (workdir / "results").exists()  # nothing was written
    return f"valueharms: {err.value}"


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"vim": {"threshhold": 3}}, "vim.threshhold"),
        ({"benchmarks": {"rtp": {"samples": "ten"}}}, "benchmarks.rtp.samples"),
        ({"datasets": {"hexphi": {"path": "nowhere/hex-phi.csv"}}}, "datasets.hexphi.path"),
        ({"distributions": {"select": ["Ach", "Bogus"]}}, "distributions.select"),
        (
            {"mitigation": {"pairs": [{"value": "Power", "category": "hate_speech"}]}},
            "mitigation.pairs[0].category",
        ),
        (
            {"mitigation": {"pairs": [{"value": "Greed", "category": "malware"}]}},
            "mitigation.pairs[0].value",
        ),
        # Study B's user-supplied files (the demo's slice reads fixtures we wrote)
        ({"datasets": {"issuebench": {"path": "nowhere/issues.csv"}}}, "datasets.issuebench.path"),
        ({"datasets": {"anthrobench": {"path": "nowhere/a.csv"}}}, "datasets.anthrobench.path"),
        ({"datasets": {"pku_saferlhf": {"path": "nowhere/p.jsonl"}}}, "datasets.pku_saferlhf.path"),
        ({"studyb": {"eval": {"main_beta": 0.3}}}, "studyb.eval.main_beta"),
    ],
)
def test_bad_demo_config_stops_with_one_message(override: dict, needle: str, tmp_path) -> None:
    base = load_yaml(ROOT / "config" / "demo.yaml")
    merged = {**base, **{k: {**base.get(k, {}), **v} for k, v in override.items()}}
    msg = parse_time_message(merged, tmp_path)
    assert needle in msg.splitlines()[0], msg


def test_missing_preference_file_stops_with_one_message(tmp_path) -> None:
    from test_studyb_workflow import fixture_datasets

    data = fixture_datasets()
    data["pku_saferlhf_standard"] = {"path": "nowhere/train.parquet"}
    config = deep_merge(load_yaml(ROOT / "config" / "study_b.yaml"), {"datasets": data})
    msg = parse_time_message(config, tmp_path).splitlines()[0]
    assert "datasets.pku_saferlhf_standard.path" in msg and "nowhere/train.parquet" in msg
    # ... and where to get it: the upstream dataset and its pinned download address
    assert "RLHFlow/PKU-SafeRLHF-30K-standard" in msg and "https://huggingface.co/" in msg
