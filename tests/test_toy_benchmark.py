"""A new benchmark is one new module plus config (issue 19): a toy benchmark with its own
loader, judge verdicts and metric runs from its prompts to the report in a workflow copy,
with no other file edited."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml
from paths import ROOT
from test_workflow import workflow_copy

TOY = '''\
"""Toy: yes/no questions; the LLM judge says whether the answer agrees."""

from valueharms.benchmarks import Benchmark, LLMVerdicts, register
from valueharms.data.benchmarks import categorised_loader
from valueharms.metrics import identity, mean, per_category, rows_frame


def metrics(j):
    return rows_frame(per_category(j, identity(j), {"agree_rate": mean}))


def read(answer):
    a = answer.strip().lower()
    return (1.0, "agree") if a.startswith("agree") else (0.0, "disagree") if a else (None, None)


register(
    Benchmark(
        name="toy",
        label="Toy questions",
        load=categorised_loader("toy"),
        stratify=True,
        verdicts=LLMVerdicts(
            fields=lambda prompt, output: {"question": prompt, "response": output},
            read=read,
            choices=("agree", "disagree"),
        ),
        metrics=metrics,
        prompt_scores=lambda ok: ok.assign(metric="agree"),
        headline=("agree_rate",),
        metric_labels={"agree_rate": "Agree rate"},
        by_category=True,
    )
)
'''


@pytest.mark.slow
def test_a_toy_benchmark_from_one_module_runs_to_the_report(tmp_path: Path) -> None:
    wf = workflow_copy(tmp_path / "wf")
    shutil.copytree(ROOT / "src", wf / "src")
    (wf / "src" / "valueharms" / "benchmarks" / "toy.py").write_text(TOY)
    # The toy's data and judge prompt are the user's, like any dataset's.
    (wf / "toy.csv").write_text("category,prompt\nsky,Is the sky blue?\nsea,Is the sea dry?\n")
    (wf / "judge_toy.txt").write_text(
        textwrap.dedent("""\
            Question: {question}
            Answer: {response}
            Does the answer agree? Reply agree or disagree.""")
    )
    cfg = yaml.safe_load((wf / "config" / "demo.yaml").read_text())
    cfg["datasets"]["toy"] = {"path": "toy.csv"}
    cfg["benchmarks"] = {
        "select": ["toy"],
        "toy": {"template": "resources/prompts/bench_instruction.txt", "max_new_tokens": 8},
    }
    cfg["judges"]["templates"] = {"toy": "judge_toy.txt"}
    # One subject (the vanilla model) keeps it short; the stats stage still runs.
    cfg["distributions"] = {"select": ["Ach"]}
    cfg["vim"] = {"enabled": False}
    cfg["icl"] = {"enabled": False}
    cfg["alignment"] = {"enabled": False}
    cfg["mitigation"] = {"enabled": False}
    cfg["studyb"] = {"enabled": False}
    (wf / "config" / "toy.yaml").write_text(yaml.safe_dump(cfg))

    env = {**os.environ, "PYTHONPATH": str(wf / "src")}  # the copy's library, with the module
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/local"]
        + ["--configfile", "config/toy.yaml"],
        cwd=wf,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]

    metrics = pd.read_parquet(wf / "results" / "metrics" / "toy.parquet")
    assert set(metrics["metric"]) == {"agree_rate"}
    assert set(metrics["category"]) == {"all", "sky", "sea"}
    judged = pd.read_parquet(wf / "results/judgments/toy/smollm2-135m/vanilla/plain.parquet")
    assert set(judged["label"].dropna()) <= {"agree", "disagree"}
    html = (wf / "results" / "report" / "index.html").read_text()
    assert "Toy questions" in html and "Agree rate" in html
