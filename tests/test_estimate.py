"""The cost estimate before launch (issue 20, acceptance 3): valueharms.estimate.

The arithmetic is checked on a small hand-made config whose numbers are written out here
from the formulas (docs/estimate.md), not by calling the code under test; the study
configs run with no data file reachable, so every length is a declared default.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from valueharms.config import ConfigError, validate
from valueharms.estimate import EstimateError, load_config, run
from valueharms.estimate.__main__ import main
from valueharms.estimate.measure import Lengths
from valueharms.estimate.tables import lora_params, model_size

ROOT = Path(__file__).resolve().parents[1]
KNOWN_GPUS = "a100, a100-40gb, h100, h100-pcie, h200, l40s"
TEMPLATE = "Q: {instruction}\nA: {response}\nScore 1-5"  # 40 characters = 10 tokens


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with the repository's resources/ but no data and no results:
    every dataset the plan resolves is missing, as on a fresh machine."""
    (tmp_path / "resources").symlink_to(ROOT / "resources")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _write(path: Path, data: object) -> str:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


@pytest.fixture
def toy(bare: Path) -> dict:
    """Two VIM adapters of a 1e9-parameter model (SmolLM2's shapes), one benchmark of 4
    prompts judged by an API model, a toy GPU of 100 TFLOP/s and round prices."""
    assert len(TEMPLATE) == 40
    (bare / "judge.txt").write_text(TEMPLATE + "\n", encoding="utf-8")
    datasets = {
        "training": {
            "vim_stage1": {"rows": 10, "valid_rows": 2, "tokens": 20},
            "vim_stage2": {"rows": 6, "valid_rows": 1, "tokens": 30},
        },
        "prompts": {"hexphi": {"rows": 4, "tokens": 5}},
        "typical_output_tokens": {"default": 30, "llm": 30, "reasoning": 0},
        "classifier_params_b": 0.1,
    }
    gpus = {"toy": {"label": "Toy", "bf16_tflops": 100, "memory_gb": 80, "source": "test"}}
    prices = {"date": "2000-01-01", "models": {"gpt-4o": {"input": 2.0, "output": 8.0}}}
    sft = {"batch_size": 2, "max_length": 128, "group_by_length": True}
    return {
        "models": {"gpt-4o": {"source": "api", "name": "gpt-4o"}},
        "distributions": {"select": ["Ach", "Pow"]},
        "vanilla": {"enabled": False},
        "icl": {"enabled": False},
        "alignment": {"enabled": False},
        "mitigation": {"enabled": False},
        "vim": {"stage1": {**sft, "epochs": 3}, "stage2": {**sft, "epochs": 2}},
        "benchmarks": {"select": ["hexphi"], "hexphi": {"samples": 2, "max_new_tokens": 10}},
        "judges": {
            "llm": {"model": "gpt-4o", "max_new_tokens": 50},
            "templates": {"hexphi": "judge.txt"},
        },
        "data_search_paths": [],
        "estimate": {
            "gpu": "toy",
            "gpus": _write(bare / "gpus.yaml", gpus),
            "prices": _write(bare / "prices.yaml", prices),
            "datasets": _write(bare / "datasets.yaml", datasets),
            "mfu": {"training": 0.5, "generation": 0.25},
            "chars_per_token": 4,
            "params_b": {"smollm2-135m": 1.0},
        },
    }


def _line(est, stage: str, name: str | None = None):
    (line,) = [x for x in est.lines if x.stage == stage and (name is None or x.name == name)]
    return line


def test_the_arithmetic_of_a_small_config_by_hand(toy: dict) -> None:
    est = run(validate(toy))
    P, peak = 1e9, 100e12  # parameters; the toy GPU's FLOP/s
    # VIM stage 1: 2 adapters x 10 examples x 3 epochs x 20 tokens; valid 2 x 20 per epoch.
    s1 = _line(est, "VIM stage 1")
    assert (s1.count, s1.examples, s1.epochs, s1.tokens_per_example) == (2, 10, 3, 20)
    assert s1.tokens == 2 * 10 * 3 * 20 == 1200
    flops1 = 4 * P * 1200 + 2 * P * (2 * 3 * 2 * 20)  # LoRA step 4P, valid forward 2P
    assert s1.flops == pytest.approx(flops1)
    assert s1.gpu_hours == pytest.approx(flops1 / (peak * 0.5) / 3600)
    # LoRA r=8 on q_proj (576 -> 576) and v_proj (576 -> 192) of SmolLM2's 30 layers, fp32.
    per_adapter = 30 * (8 * (576 + 576) + 8 * (576 + 192))
    assert per_adapter == 460_800
    assert s1.disk_bytes == 2 * per_adapter * 4
    # VIM stage 2: 2 adapters x 6 examples x 2 epochs x 30 tokens; valid 1 x 30 per epoch.
    s2 = _line(est, "VIM stage 2")
    assert s2.tokens == 2 * 6 * 2 * 30 == 720
    flops2 = 4 * P * 720 + 2 * P * (2 * 2 * 1 * 30)
    assert s2.flops == pytest.approx(flops2)
    # Generation: 2 subjects x 4 prompts x 2 samples x 10 new tokens (upper bound);
    # prompt tokens 2 x 4 x 2 x 5; FLOPs 2P per token.
    gen = _line(est, "generation")
    assert (gen.count, gen.examples) == (2, 4)
    assert gen.tokens == 2 * 4 * 2 * 10 == 160
    assert gen.input_tokens == 2 * 4 * 2 * 5 == 80
    assert gen.flops == pytest.approx(2 * P * (80 + 160))
    assert gen.gpu_hours == pytest.approx(2 * P * 240 / (peak * 0.25) / 3600)
    # Judging: 16 calls; input = template 10 + prompt 5 + reply bound 10 = 25 tokens;
    # output bound 50, typical 30; $2 / $8 per 1M input / output tokens.
    judge = _line(est, "judging")
    assert (judge.where, judge.count) == ("API", 16)
    assert judge.input_tokens == 16 * 25 == 400
    assert judge.output_tokens == 16 * 50 == 800
    assert judge.output_tokens_typical == 16 * 30 == 480
    assert judge.usd == pytest.approx((400 * 2.0 + 800 * 8.0) / 1e6)
    assert judge.usd_typical == pytest.approx((400 * 2.0 + 480 * 8.0) / 1e6)
    assert judge.gpu_hours is None
    t = est.totals()
    assert t["training_tokens"] == 1200 + 720
    assert t["adapters"] == 4
    assert t["generated_tokens_max"] == 160
    assert t["api_calls"] == 16
    assert t["gpu_hours"] == pytest.approx(
        (flops1 + flops2) / (peak * 0.5) / 3600 + 2 * P * 240 / (peak * 0.25) / 3600
    )
    assert t["usd_max"] == pytest.approx(0.0072)
    assert _line(est, "disk", "adapters").disk_bytes == 4 * per_adapter * 4


def test_max_steps_caps_the_examples_a_run_sees(toy: dict) -> None:
    toy["vim"]["stage1"]["max_steps"] = 4  # 4 steps x batch 2 = 8 of the 30 examples
    s1 = _line(run(validate(toy)), "VIM stage 1")
    assert s1.tokens == 2 * 8 * 20
    assert s1.epochs == pytest.approx(8 / 10)


def test_a_greedy_benchmark_decodes_one_sample_per_prompt(toy: dict) -> None:
    toy["benchmarks"]["hexphi"]["temperature"] = 0  # the backends repeat the one draw
    est = run(validate(toy))
    assert _line(est, "generation").tokens == 2 * 4 * 1 * 10
    assert _line(est, "judging").count == 2 * 4 * 2  # every sample is still judged


def test_padding_is_the_expected_longest_of_a_batch() -> None:
    # Lengths 1 and 3 drawn twice: the longest is 3 unless both draws are 1 (1/4).
    lengths = Lengths(2, np.array([1.0, 3.0]), "measured: x")
    assert lengths.padded_mean(2) == pytest.approx(1 * 0.25 + 3 * 0.75)
    assert lengths.padded_mean(2, max_length=2) == pytest.approx(1 * 0.25 + 2 * 0.75)
    assert lengths.padded_mean(1) == lengths.mean() == 2.0


def test_model_sizes_and_adapter_shapes() -> None:
    cfg = validate({"models": {"m": {"source": "hub", "hf_id": "meta-llama/Llama-2-7b-hf"}}})
    size = model_size(cfg, "m")
    assert (size.params_b, size.origin) == (6.74, "table: Llama-2-7B")
    # Llama-2-7B, r=8 on q_proj and v_proj (4096 -> 4096 each), 32 layers.
    assert lora_params(size.arch, 8, ["q_proj", "v_proj"]) == 32 * 2 * 8 * (4096 + 4096)
    assert lora_params(size.arch, 8, ["nonesuch"]) is None
    over = validate({**cfg, "estimate": {"params_b": {"m": 3}}})
    assert model_size(over, "m").params_b == 3.0
    assert model_size(cfg, "unknown-model").params_b is None


def test_json_output_shape(toy: dict, bare: Path, capsys: pytest.CaptureFixture) -> None:
    path = _write(bare / "toy.yaml", toy)
    assert main(["--configfile", path, "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {
        "config_files", "gpu", "mfu", "token_lengths", "prices", "stages", "totals", "notes",
    }  # fmt: skip
    assert out["config_files"] == [path]
    assert out["gpu"]["name"] == "toy" and out["gpu"]["peak_flops"] == 100e12
    assert out["mfu"] == {"training": 0.5, "generation": 0.25}
    assert out["prices"]["date"] == "2000-01-01"
    stages = {(s["stage"], s["name"]) for s in out["stages"]}
    assert {("VIM stage 1", "2 distributions"), ("generation", "hexphi")} <= stages
    for s in out["stages"]:
        assert {"stage", "name", "where", "count", "unit", "tokens", "gpu_hours", "usd",
                "disk_bytes", "lengths", "source", "assumed", "notes"} <= set(s)  # fmt: skip
        assert s["where"] in ("GPU", "API", "CPU", "disk")
    totals = out["totals"]
    assert totals["training_tokens"] == 1920 and totals["api_calls"] == 16
    assert isinstance(totals["gpu_hours_by_stage"], dict)


def test_text_output_marks_assumed_lengths(toy: dict, bare: Path, capsys) -> None:
    path = _write(bare / "toy.yaml", toy)
    assert main(["--configfile", path, "--mfu-training", "0.25"]) == 0
    text = capsys.readouterr().out
    assert "Training (LoRA)" in text and "Totals" in text
    assert "ASSUMED" in text and "assumed: training.vim_stage1" in text
    assert "MFU 0.25 training, 0.25 generation" in text
    assert "prices as of 2000-01-01" in text


@pytest.mark.parametrize("study", ["study_a", "study_b"])
def test_study_configs_run_without_data_files(study: str, bare: Path) -> None:
    est = run(load_config([str(ROOT / "config" / f"{study}.yaml")]))
    counted = [x for x in est.lines if x.stage not in ("disk", "judging", "Study B data")]
    assert counted
    for line in counted:  # no file here: every count and length is declared
        assert line.assumed, (line.stage, line.name)
        assert "measured" not in line.lengths, (line.stage, line.name)
        assert "ASSUMED" in line.source or "paper" in line.source
    t = est.totals()
    assert t["gpu_hours"] > 0 and t["gpu_hours_complete"]
    assert t["usd_max"] > t["usd_typical"] > 0
    text = est.text()
    tables = text.split("\n\n", 1)[1].split("Notes")[0]  # below the header, above the notes
    assert "ASSUMED" in tables and "measured" not in tables


def test_study_b_counts_come_from_the_paper_and_the_declared_pool(bare: Path) -> None:
    est = run(load_config([str(ROOT / "config" / "study_b.yaml")]))
    # Extraction: both responses of every pair of the six sources (hub pair counts).
    pairs = 26_900 + 3 * 113_400 + 10_000 + 42_300
    assert _line(est, "Study B data", "value extraction").count == 2 * pairs == 838_800
    # Verification: the chosen response of every pair of the 15 subsets (Table 1 totals).
    table1 = [66509, 30779, 31483, 15758, 12418, 11598, 8543, 8899, 6425, 5826, 5211, 3590,
              2628, 1780, 637]  # fmt: skip
    assert _line(est, "Study B data", "verification").count == sum(table1) == 212_084
    # DPO on Llama-3.1-8B: 4 betas x 15 values, each subset for 5 epochs, a pair being two
    # sequences of prompt + response (weighted over the declared sources), 8 x P FLOPs
    # per token (LoRA 4, gradient checkpointing 2, the reference model's forward 2).
    dpo = _line(est, "Study B preference training", "llama-3.1-8b dpo")
    seq = (26_900 * 115 + 3 * 113_400 * 480 + 10_000 * 750 + 42_300 * 140) / pairs
    assert dpo.count == 60
    assert dpo.tokens == pytest.approx(4 * sum(table1) * 5 * 2 * seq)
    assert dpo.flops == pytest.approx(8 * 8.03e9 * dpo.tokens)
    assert dpo.gpu_hours == pytest.approx(dpo.flops / (989.4e12 * 0.35) / 3600)
    orpo = _line(est, "Study B preference training", "mistral-nemo-instruct orpo")
    assert orpo.count == 15 and orpo.flops == pytest.approx(6 * 12.2e9 * orpo.tokens)


def test_a_bad_gpu_name_lists_the_known_ones(bare: Path, capsys) -> None:
    cfg = load_config([str(ROOT / "config" / "study_a.yaml")])
    with pytest.raises(EstimateError) as err:
        run(cfg, gpu_name="v100")
    assert str(err.value) == f"unknown GPU 'v100'; known: {KNOWN_GPUS}"
    assert main(["--configfile", str(ROOT / "config" / "study_a.yaml"), "--gpu", "V100"]) == 2
    assert f"unknown GPU 'V100'; known: {KNOWN_GPUS}" in capsys.readouterr().err
    assert main(["--configfile", str(ROOT / "config" / "study_a.yaml"), "--gpu", "A100"]) == 0


def test_config_files_merge_in_order_like_snakemake(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", {"vim": {"stage1": {"epochs": 2}}, "estimate": {"gpu": "a100"}})
    b = _write(tmp_path / "b.yaml", {"vim": {"stage1": {"batch_size": 4}}})
    cfg = load_config([a, b], {"mfu": {"training": 0.2}})
    assert (cfg["vim"]["stage1"]["epochs"], cfg["vim"]["stage1"]["batch_size"]) == (2, 4)
    assert cfg["estimate"]["gpu"] == "a100"
    assert cfg["estimate"]["mfu"] == {"training": 0.2, "generation": 0.15}
    assert load_config([])["base_model"] == "smollm2-135m"  # no file: the demo config
    with pytest.raises(ConfigError, match="estimate.mfu.training"):
        load_config([a], {"mfu": {"training": 2}})


def test_the_estimate_section_is_optional_and_changes_no_default() -> None:
    assert "estimate" not in validate({})
    assert validate({"estimate": {}})["estimate"]["mfu"] == {"training": 0.35, "generation": 0.15}


def test_lengths_are_measured_where_the_files_are() -> None:
    # The demo config's data files ship in resources/demo.
    est = run(load_config([str(ROOT / "config" / "demo.yaml")]))
    s1 = _line(est, "VIM stage 1")
    assert s1.source == "measured" and "resources/demo" in s1.lengths
    assert not math.isnan(s1.tokens_per_example) and s1.tokens_per_example > 10


def test_judge_agreement_adds_its_second_judge_on_the_sample(toy: dict, bare: Path) -> None:
    """judges.agreement: the second judge scores n of the judged answers (or all there
    are), with its own prompt; its calls count in the API totals."""
    (bare / "judge2.txt").write_text("S" * 80 + "\n", encoding="utf-8")  # 20 tokens
    toy["judges"]["agreement"] = {
        "enabled": True,
        "n": 5,
        "second": {"templates": {"hexphi": "judge2.txt"}},
    }
    est = run(validate(toy))
    second = _line(est, "judge agreement")
    # 5 of the 16 answers; input = prompt 20 + prompt 5 + reply bound 10 = 35 tokens;
    # output bound 50; $2 / $8 per 1M tokens.
    assert (second.where, second.count) == ("API", 5)
    assert second.input_tokens == 5 * 35 == 175
    assert second.output_tokens == 5 * 50 == 250
    assert second.usd == pytest.approx((175 * 2.0 + 250 * 8.0) / 1e6)
    assert est.totals()["api_calls"] == 16 + 5
    toy["judges"]["agreement"]["n"] = 100  # more than there are: all 16
    assert _line(run(validate(toy)), "judge agreement").count == 16
