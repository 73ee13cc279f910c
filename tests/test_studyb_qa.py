"""QA evaluation (Study B, B3) through lm-eval, offline, on the tiny local task."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from valueharms.io import read_json, read_table
from valueharms.studyb.qa_eval import (
    QA_SCHEMA,
    TINY_TASK,
    VANILLA,
    LMEvalSettings,
    qa_delta_summary,
    qa_deltas,
    resolved_include_path,
    run_lm_eval,
)

pytest.importorskip("lm_eval")

TASKS = Path(__file__).resolve().parents[1] / "resources" / "lm_eval_tasks"
N_ITEMS = sum(1 for line in (TASKS / TINY_TASK / f"{TINY_TASK}.jsonl").open() if line.strip())


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter with random (non-zero) weights, so it changes the model's scores."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(base, cfg).save_pretrained(out)
    return out


def test_resolved_include_path_makes_data_paths_absolute(tmp_path: Path) -> None:
    with resolved_include_path(TASKS) as path:
        cfg = yaml.safe_load((path / TINY_TASK / f"{TINY_TASK}.yaml").read_text())
        data = Path(cfg["dataset_kwargs"]["data_files"]["test"])
        assert data.is_absolute() and data == (TASKS / TINY_TASK / f"{TINY_TASK}.jsonl")
        assert cfg["task"] == TINY_TASK and cfg["doc_to_choice"] == "{{choices}}"
    assert not path.exists()  # a temporary copy
    # The source keeps its relative path (what makes it portable).
    src = yaml.safe_load((TASKS / TINY_TASK / f"{TINY_TASK}.yaml").read_text())
    assert src["dataset_kwargs"]["data_files"]["test"] == f"{TINY_TASK}.jsonl"


def test_resolved_include_path_keeps_function_tags(tmp_path: Path) -> None:
    task = tmp_path / "tasks" / "t"
    task.mkdir(parents=True)
    (task / "t.yaml").write_text(
        "task: t\ndataset_path: json\ndataset_kwargs:\n  data_files: [a.jsonl, /abs/b.jsonl]\n"
        "process_results: !function utils.score\n"
    )
    (task / "utils.py").write_text("def score(doc, results):\n    return {}\n")
    with resolved_include_path(tmp_path / "tasks") as path:
        text = (path / "t" / "t.yaml").read_text()
        assert "!function" in text and "utils.score" in text
        assert str(task / "a.jsonl") in text and "/abs/b.jsonl" in text
        assert (path / "t" / "utils.py").read_text().startswith("def score")


def test_lm_eval_runs_offline_with_and_without_adapter(
    tiny_model_dir: Path, adapter_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the task's relative data path must not depend on the cwd
    settings = LMEvalSettings(
        tasks=[TINY_TASK],
        batch_size=4,
        include_path=TASKS,
        device="cpu",
        seed=0,
        include_defaults=False,
    )
    vanilla = run_lm_eval(
        tiny_model_dir, None, settings, tmp_path / "vanilla.parquet", model_name="tiny"
    )
    induced = run_lm_eval(
        tiny_model_dir,
        adapter_dir,
        settings,
        tmp_path / "empathy.parquet",
        model_name="tiny",
        adapter_name="empathy",
    )
    assert list(vanilla.columns) == QA_SCHEMA.names
    assert set(zip(vanilla.task, vanilla.metric, vanilla["filter"], strict=True)) == {
        (TINY_TASK, "acc", "none"),
        (TINY_TASK, "acc_norm", "none"),
    }
    for table, adapter in ((vanilla, VANILLA), (induced, "empathy")):
        assert (table.adapter == adapter).all() and (table.model == "tiny").all()
        assert (table.n == N_ITEMS).all()
        assert table.value.between(0, 1).all() and (table.stderr > 0).all()
    pd.testing.assert_frame_equal(read_table(tmp_path / "vanilla.parquet", QA_SCHEMA), vanilla)
    raw = read_json(tmp_path / "empathy.json")
    assert raw["config"]["model_args"]["peft"] == str(adapter_dir)
    assert "peft" not in read_json(tmp_path / "vanilla.json")["config"]["model_args"]

    deltas = qa_deltas(pd.concat([vanilla, induced]))
    assert len(deltas) == 2 and (deltas.adapter == "empathy").all()
    assert (deltas.delta == deltas.value - deltas.vanilla).all()


def test_qa_deltas_on_a_hand_made_table() -> None:
    def row(model: str, adapter: str, task: str, value: float) -> dict:
        return dict(
            task=task,
            metric="acc",
            filter="none",
            value=value,
            stderr=0.01,
            n=100,
            model=model,
            adapter=adapter,
        )

    table = pd.DataFrame(
        [
            row("llama", VANILLA, "mmlu", 0.60),
            row("llama", "empathy", "mmlu", 0.58),
            row("llama", "humor", "mmlu", 0.65),
            row("llama", VANILLA, "gsm8k", 0.50),
            row("llama", "empathy", "gsm8k", 0.50),
            row("olmo", VANILLA, "mmlu", 0.40),
            row("olmo", "empathy", "mmlu", 0.45),
            row("olmo", "humor", "truthfulqa_mc2", 0.30),  # no vanilla row for it
        ]
    )
    d = qa_deltas(table).set_index(["model", "task", "adapter"])["delta"]
    assert d[("llama", "mmlu", "empathy")] == pytest.approx(-0.02)
    assert d[("llama", "mmlu", "humor")] == pytest.approx(0.05)
    assert d[("llama", "gsm8k", "empathy")] == pytest.approx(0.0)
    assert d[("olmo", "mmlu", "empathy")] == pytest.approx(0.05)  # never llama's vanilla
    assert math.isnan(d[("olmo", "truthfulqa_mc2", "humor")])
    assert len(d) == 5

    s = qa_delta_summary(qa_deltas(table)).set_index(["model", "task"])
    assert s.loc[("llama", "mmlu"), "mean"] == pytest.approx(0.015)
    assert s.loc[("llama", "mmlu"), "std"] == pytest.approx(pd.Series([-0.02, 0.05]).std())
    assert s.loc[("llama", "mmlu"), "n_adapters"] == 2

    with pytest.raises(ValueError, match="several vanilla"):
        qa_deltas(pd.concat([table, table.head(1)]))
