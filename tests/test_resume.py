"""A generation job killed with SIGKILL halfway resumes: the rerun pays only the missing calls."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from valueharms.data.benchmarks import PROMPTS_SCHEMA
from valueharms.generate import GENERATIONS_SCHEMA
from valueharms.io import read_table, write_table

N_PROMPTS = 200
BENCH = {
    "max_new_tokens": 12,
    "temperature": 0.0,
    "top_p": 1.0,
    "samples": 1,
    "stop_at_sentence": False,
}


def job_args(tmp: Path, model_dir: Path) -> dict:
    """The arguments the generate rule's script passes to generate.run, for one job (a
    group of one subject)."""
    member = {
        "model_id": "tiny/vanilla",
        "condition": "plain",
        "adapter": None,
        "system": None,
        "categories": None,
        "chat_template": None,
        "temperature": None,
    }
    return {
        "prompts_path": str(tmp / "prompts.parquet"),
        "base_dir": str(model_dir),
        "base": "tiny",
        "members": [member],
        "bench_cfg": BENCH,
        "template": "{prompt}",
        "seed": 0,
        "model_spec": {"source": "path", "chat": True},
        "backend": "hf",
        "backend_settings": {"hf": {"mixed_adapters": True}},
        "cache_dir": str(tmp / "cache"),
        "batch_size": 1,  # one answer per cache entry, so the kill lands between answers
        "out": str(tmp / "out.parquet"),
        "threads": 1,
    }


def n_cached(tmp: Path) -> int:
    return len(list((tmp / "cache").rglob("*.json")))


@pytest.mark.slow
def test_kill_9_halfway_then_rerun_makes_only_the_missing_calls(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = pd.DataFrame(
        {
            "benchmark": "rtp",
            "prompt_id": [f"p{i:03d}" for i in range(N_PROMPTS)],
            "prompt": [f"Tell me about the number {i}." for i in range(N_PROMPTS)],
            "category": None,
            "axis": None,
            "descriptor": None,
        }
    )
    write_table(tmp_path / "prompts.parquet", prompts, PROMPTS_SCHEMA)
    args = job_args(tmp_path, tiny_model_dir)
    (tmp_path / "args.json").write_text(json.dumps(args))
    code = (
        "import json, sys; from valueharms import generate; "
        "generate.run(**json.load(open(sys.argv[1])))"
    )
    job = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "args.json")])
    deadline = time.monotonic() + 300
    while n_cached(tmp_path) < 20 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    assert job.returncode == -signal.SIGKILL, "the job ended before it could be killed"
    paid = n_cached(tmp_path)
    assert 20 <= paid < N_PROMPTS
    assert not Path(args["out"]).exists()  # no half-written output

    # Rerun the same job in this process, counting the requests that reach the model.
    from valueharms import generate
    from valueharms.llm import backends

    calls: list[str] = []
    real_make = backends.make_backend

    def counting_make(*a, **kw):
        server = real_make(*a, **kw)
        real_generate = server.generate

        def generate_counted(reqs):
            calls.extend(r.key for r in reqs)
            return real_generate(reqs)

        server.generate = generate_counted
        return server

    monkeypatch.setattr(backends, "make_backend", counting_make)
    generate.run(**args)
    assert len(calls) == N_PROMPTS - paid
    assert len(set(calls)) == len(calls)
    out = read_table(args["out"], GENERATIONS_SCHEMA)
    assert len(out) == N_PROMPTS and (out["status"] == "ok").all()
    assert int(out["cached"].sum()) == paid

    # And what it wrote equals an uninterrupted run's answers (greedy decoding).
    fresh = dict(args, cache_dir=str(tmp_path / "cache2"), out=str(tmp_path / "out2.parquet"))
    calls.clear()
    generate.run(**fresh)
    assert len(calls) == N_PROMPTS
    again = read_table(fresh["out"], GENERATIONS_SCHEMA)
    assert again["output"].tolist() == out["output"].tolist()
