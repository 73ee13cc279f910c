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
from valueharms.job import Files, Job

N_PROMPTS = 200
BENCH = {
    "max_new_tokens": 12,
    "temperature": 0.0,
    "top_p": 1.0,
    "samples": 1,
    "stop": {},
}


def job_args(tmp: Path, model_dir: Path) -> dict:
    """The generate rule's job record for one job (a group of one subject), as JSON:
    the fields of valueharms.job.Job (see `job_of`)."""
    member = {
        "model_id": "tiny/vanilla",
        "condition": "plain",
        "adapter": None,
        "system": None,
        "categories": None,
        "chat_template": None,
        "temperature": None,
        "icl": None,
        "pairs": None,
    }
    return {
        "input": {"prompts": str(tmp / "prompts.parquet"), "base": str(model_dir)},
        "output": [str(tmp / "out.parquet")],
        "params": {
            "members": [member],
            "bench": BENCH,
            "template": "{prompt}",
            "seed": 0,
            "model_spec": {"source": "path", "chat": True},
            "backend": "hf",
            "backend_settings": {"hf": {"mixed_adapters": True}},
            "batch_size": 1,  # one answer per cache entry, so the kill lands between answers
        },
        "cache_dir": str(tmp / "cache"),
    }


def job_of(args: dict) -> Job:
    return Job(
        input=Files.of(**args["input"]),
        output=Files.of(*args["output"]),
        params=args["params"],
        cache_dir=args["cache_dir"],
    )


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
    code = (  # job_of, in the child process
        "import json, sys; from valueharms import generate; from valueharms.job import Files, Job; "
        "a = json.load(open(sys.argv[1])); "
        "generate.run_job(Job(Files.of(**a['input']), Files.of(*a['output']), a['params'], "
        "cache_dir=a['cache_dir']))"
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
    assert not Path(args["output"][0]).exists()  # no half-written output

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
    generate.run_job(job_of(args))
    assert len(calls) == N_PROMPTS - paid
    assert len(set(calls)) == len(calls)
    out = read_table(args["output"][0], GENERATIONS_SCHEMA)
    assert len(out) == N_PROMPTS and (out["status"] == "ok").all()
    assert int(out["cached"].sum()) == paid

    # And what it wrote equals an uninterrupted run's answers (greedy decoding).
    fresh = dict(args, cache_dir=str(tmp_path / "cache2"), output=[str(tmp_path / "out2.parquet")])
    calls.clear()
    generate.run_job(job_of(fresh))
    assert len(calls) == N_PROMPTS
    again = read_table(fresh["output"][0], GENERATIONS_SCHEMA)
    assert again["output"].tolist() == out["output"].tolist()
