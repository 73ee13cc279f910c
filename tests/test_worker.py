"""The forking worker (valueharms.worker): a script's step runs in a child of one process
that did the imports, with the script's directory, environment, log and exit status."""

from __future__ import annotations

import os
import re
import sys
import textwrap
from pathlib import Path

import pytest

from valueharms import worker
from valueharms.job import Files, Job

STEPS = """
import logging, os
from pathlib import Path

def ok(job):
    logging.getLogger("step").info("hello, mark=%s", os.environ.get("MARK"))
    Path(job.output[0]).write_text(f"{os.getpid()} {os.getcwd()}")

def fail(job):
    raise ValueError("boom")

def base(job):
    import torch
    from valueharms.worker import take_base
    got, again = take_base(job.input[0]), take_base(job.input[0])
    kind = type(got).__name__
    Path(job.output[0]).write_text(f"{kind} {again is None} {torch.get_num_threads()}")
"""


@pytest.fixture()
def steps_module(tmp_path, monkeypatch) -> Path:
    (tmp_path / "wsteps.py").write_text(textwrap.dedent(STEPS))
    # the worker process and this one import the module by name
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *sys.path]))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.fixture()
def running(steps_module, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    # a light preload: the real one (torch, transformers, ...) runs in the workflow tests
    proc, path = worker.start(steps_module / "worker.log", preload=("pandas", "wsteps"))
    yield proc
    worker.stop(proc, path)
    assert not os.path.exists(path)


def job_in(tmp_path: Path) -> Job:
    return Job(output=Files.of(str(tmp_path / "out.txt")), log=str(tmp_path / "step.log"))


def test_a_step_runs_in_a_child_of_the_worker(running, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MARK", "set-after-the-worker-started")
    work = tmp_path / "wd"
    work.mkdir()
    monkeypatch.chdir(work)
    worker.run("wsteps:ok", job_in(tmp_path))
    pid, cwd = (tmp_path / "out.txt").read_text().split()
    assert int(pid) not in (os.getpid(), running.pid)  # a forked child did the work
    assert cwd == str(work)
    assert "hello, mark=set-after-the-worker-started" in (tmp_path / "step.log").read_text()
    assert "preloaded 2 modules" in (tmp_path / "worker.log").read_text()


def test_a_failed_step_fails_the_script_and_is_logged(running, tmp_path) -> None:
    with pytest.raises(SystemExit) as err:
        worker.run("wsteps:fail", job_in(tmp_path))
    assert "status 1" in str(err.value.code)
    assert "ValueError: boom" in (tmp_path / "step.log").read_text()
    worker.run("wsteps:ok", job_in(tmp_path))  # the worker serves the next job


def test_without_a_worker_or_in_a_cluster_job_the_step_runs_here(
    steps_module, tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv(worker.ENV, raising=False)
    worker.run("wsteps:ok", job_in(tmp_path))
    assert int((tmp_path / "out.txt").read_text().split()[0]) == os.getpid()
    monkeypatch.setenv(worker.ENV, str(tmp_path / "no-such-socket"))
    worker.run("wsteps:ok", job_in(tmp_path))
    assert int((tmp_path / "out.txt").read_text().split()[0]) == os.getpid()
    with pytest.raises(ValueError, match="boom"):
        worker.run("wsteps:fail", job_in(tmp_path))


def test_a_cluster_job_never_uses_the_worker(running, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "42")  # sbatch exported the variable
    worker.run("wsteps:ok", job_in(tmp_path))
    assert int((tmp_path / "out.txt").read_text().split()[0]) == os.getpid()


def test_a_job_that_arrives_during_the_preload_is_served_before_it_ends(
    steps_module, tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    for name in ("slow1", "slow2"):  # each takes 3 s to import
        (steps_module / f"{name}.py").write_text("import time\ntime.sleep(3)\n")
    log = steps_module / "worker.log"
    proc, path = worker.start(log, preload=("slow1", "slow2", "wsteps"))
    try:
        worker.run("wsteps:ok", job_in(tmp_path))  # served between two imports
        assert (tmp_path / "out.txt").exists()
        assert "preloaded" not in log.read_text()  # slow2 is still importing
    finally:
        worker.stop(proc, path)


def test_the_worker_preloads_every_step_a_script_runs() -> None:
    scripts = Path(__file__).parents[1] / "scripts"
    targets = set()
    for script in scripts.glob("*.py"):
        targets.update(re.findall(r'run\("([\w.]+):\w+"', script.read_text()))
    assert targets, "no script names its step"
    assert targets <= set(worker.preload_list())


def test_the_worker_loads_a_jobs_base_once_and_each_child_takes_it_once(
    steps_module, tiny_model_dir, tmp_path, monkeypatch
) -> None:
    import subprocess

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    log = steps_module / "worker.log"
    proc, path = worker.start(log, preload=("torch", "wsteps"))
    try:
        for _ in range(2):
            job = Job(
                input=Files.of(str(tiny_model_dir)),
                output=Files.of(str(tmp_path / "out.txt")),
                log=str(tmp_path / "step.log"),
            )
            worker.run("wsteps:base", job)
            kind, again_none, threads = (tmp_path / "out.txt").read_text().split()
            assert kind == "LlamaForCausalLM" and again_none == "True"
    finally:
        worker.stop(proc, path)
    assert log.read_text().count("worker: loaded") == 1  # the second job's child reused it
    # the worker loads with one thread; its children get torch's own default back
    fresh = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert threads == fresh.stdout.strip()
