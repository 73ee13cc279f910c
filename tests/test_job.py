"""The job record scripts build from Snakemake's object (valueharms.job)."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from snakemake.iocontainers import InputFiles, Namedlist, OutputFiles, Params, Wildcards

from valueharms.job import Files, Job, log_here


def _named(cls: type, **items: object) -> Namedlist:
    """A Snakemake Namedlist as its scripts see it: a list item is a named sub-list."""
    out = cls()
    for name, value in items.items():
        start = len(out)
        if isinstance(value, list):
            out.extend(value)
            out._set_name(name, start, end=len(out))
        else:
            out.append(value)
            out._set_name(name, start)
    return out


def test_files_by_position_and_name() -> None:
    f = Files.of("a.txt", data="d.parquet", valid=[], parts=["p1", "p2"])
    assert list(f) == ["a.txt", "d.parquet", "p1", "p2"] and len(f) == 4
    assert f[0] == "a.txt" and f["data"] == "d.parquet"
    assert f.get("valid") is None and f.get("absent") is None and f.get("data") == "d.parquet"
    assert f.list("parts") == ["p1", "p2"] and f.list("valid") == [] and f.list("x") == []
    with pytest.raises(ValueError, match="names 2 files"):
        f["parts"]
    with pytest.raises(ValueError, match="names 0 files"):
        f["valid"]


def test_from_snakemake(tmp_path: Path) -> None:
    smk = SimpleNamespace(
        input=_named(InputFiles, data="d.parquet", valid=[], parts=["p1"]),
        output=_named(OutputFiles, table="t.parquet"),
        params=_named(Params, seed=3, spec={"kind": "x"}),
        wildcards=_named(Wildcards, name="alpaca"),
        threads=4,
        log=[str(tmp_path / "logs" / "job.log")],
        config={"cache_dir": "cache", "seed": 1},
    )
    job = Job.from_snakemake(smk)
    assert job.input == Files(
        ("d.parquet", "p1"), {"data": ("d.parquet",), "valid": (), "parts": ("p1",)}
    )
    assert job.input.list("parts") == ["p1"]  # a list of one stays a list
    assert job.output["table"] == job.output[0] == "t.parquet"
    assert job.params == {"seed": 3, "spec": {"kind": "x"}}
    assert job.wildcards == {"name": "alpaca"} and job.threads == 4
    assert job.cache_dir == "cache" and job.config["seed"] == 1
    with job.logged():
        print("to the log")
        logging.getLogger("x").info("logged")
    text = (tmp_path / "logs" / "job.log").read_text()
    assert "to the log" in text and "logged" in text


def test_a_failure_is_logged_before_it_propagates(tmp_path: Path) -> None:
    job = Job(log=str(tmp_path / "j.log"))
    with pytest.raises(RuntimeError, match="boom"), job.logged():
        raise RuntimeError("boom")
    assert "job failed" in (tmp_path / "j.log").read_text()


def test_log_here_takes_only_this_threads_records(tmp_path: Path) -> None:
    """An in-process job's log gets its own thread's valueharms records and leaves
    Snakemake's streams and root handlers alone (the SLURM executor kept writing to a
    closed job log when local jobs redirected the whole process)."""
    log = logging.getLogger("valueharms.train.groups")
    stdout, root_handlers = sys.stdout, list(logging.getLogger().handlers)
    other_done = threading.Event()

    def other() -> None:
        log.info("from another thread")
        other_done.set()

    with log_here(str(tmp_path / "job.log")):
        assert sys.stdout is stdout
        assert logging.getLogger().handlers == root_handlers
        log.info("adapters placed")
        threading.Thread(target=other).start()
        assert other_done.wait(10)
    log.info("after the job")
    text = (tmp_path / "job.log").read_text()
    assert "adapters placed" in text
    assert "another thread" not in text and "after the job" not in text
    assert logging.getLogger("valueharms").handlers == []

    with pytest.raises(ValueError), log_here(str(tmp_path / "failed.log")):
        raise ValueError("bad key")
    assert "job failed" in (tmp_path / "failed.log").read_text()
