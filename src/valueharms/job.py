"""The typed record of one Snakemake job, which every script builds and passes on.

A script is three lines: build the record from the `snakemake` object, send the job's
output to its log, call the step's `*_job` entry point in the library with the record.
The entry point reads what it needs from the record (the rule's input, output and param
names are the contract) and calls the typed library function. Tests build a `Job` by
hand to run the same entry point without Snakemake.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Files:
    """A job's input or output files: all of them in order, and by name.

    A name holds one file, several, or none (an input a rule leaves out as `[]`).
    `files[i]` is the i-th file and `files[name]` the one file of `name`; `get(name)` is
    that file or None when the name holds none, `list(name)` every file of the name.
    """

    paths: tuple[str, ...] = ()
    named: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, *paths: str, **named: str | list[str] | tuple[str, ...]) -> Files:
        """Files from paths and named paths (a name's value: one path or a list)."""
        by_name = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in named.items()}
        return cls(tuple(paths) + tuple(p for v in by_name.values() for p in v), by_name)

    @classmethod
    def from_namedlist(cls, files: Any) -> Files:
        """From Snakemake's input or output (a list whose items may carry names)."""
        named = {
            k: (str(v),) if isinstance(v, str) else tuple(map(str, v)) for k, v in files.items()
        }
        return cls(tuple(map(str, files)), named)

    def __getitem__(self, key: int | str) -> str:
        if isinstance(key, int):
            return self.paths[key]
        paths = self.named[key]
        if len(paths) != 1:
            raise ValueError(f"{key!r} names {len(paths)} files, not one: {list(paths)}")
        return paths[0]

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, name: str) -> str | None:
        """The one file of `name`; None when the name is absent or holds no file."""
        if not self.named.get(name):
            return None
        return self[name]

    def list(self, name: str) -> list[str]:
        """Every file of `name` (empty when the name is absent)."""
        return list(self.named.get(name, ()))


@dataclass(frozen=True)
class Job:
    """One job of a rule: its files, params, wildcards, threads, log file and config."""

    input: Files = field(default_factory=Files)
    output: Files = field(default_factory=Files)
    params: Mapping[str, Any] = field(default_factory=dict)
    wildcards: Mapping[str, str] = field(default_factory=dict)
    threads: int = 1
    log: str | None = None  # where the job's stdout, stderr and logging go (None: nowhere)
    cache_dir: str | None = None  # config `cache_dir`: the LLM cache and Batch API state
    config: Mapping[str, Any] = field(default_factory=dict)  # the workflow's config

    @classmethod
    def from_snakemake(cls, smk: Any) -> Job:
        """The record of the job a Snakemake script runs (`smk`: its `snakemake` object)."""
        config = dict(getattr(smk, "config", None) or {})
        return cls(
            input=Files.from_namedlist(smk.input),
            output=Files.from_namedlist(smk.output),
            params=dict(smk.params.items()),
            wildcards={k: str(v) for k, v in smk.wildcards.items()},
            threads=int(getattr(smk, "threads", 1) or 1),
            log=str(smk.log[0]) if smk.log else None,
            cache_dir=config.get("cache_dir"),
            config=config,
        )

    @classmethod
    def from_run(cls, input: Any, output: Any, params: Any) -> Job:
        """The record of a `run:` block's job, from the block's input, output and params."""
        return cls(
            input=Files.from_namedlist(input),
            output=Files.from_namedlist(output),
            params=dict(params.items()),
        )

    @contextlib.contextmanager
    def logged(self) -> Iterator[None]:
        """Send the job's stdout, stderr and logging to its log file (see `log_to`)."""
        with log_to(self.log):
            yield


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # a job log's lines


@contextlib.contextmanager
def log_to(log_path: str | None) -> Iterator[None]:
    """Redirect stdout, stderr and logging to `log_path` (progress bars included); an
    exception is logged there before it propagates."""
    log_path = log_path or os.devnull
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    with open(log_path, "w", buffering=1, encoding="utf-8") as fh:
        with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            logging.basicConfig(
                stream=fh,
                level=logging.INFO,
                force=True,
                format=LOG_FORMAT,
            )
            try:
                yield
            except BaseException:
                logging.exception("job failed")
                raise


@contextlib.contextmanager
def log_here(log_path: str | None) -> Iterator[None]:
    """`log_to` for a job that runs inside Snakemake's own process (a `run:` block of a
    local rule): only this thread's records of the `valueharms` loggers go to `log_path`.

    `log_to` redirects the whole process (stdout, stderr, the root logger); inside
    Snakemake that would also capture its executor's messages, which then fail once the
    file is closed. Here Snakemake's streams and handlers are left as they are.
    """
    log_path = log_path or os.devnull
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    logger = logging.getLogger("valueharms")
    handler = logging.FileHandler(log_path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    thread = threading.get_ident()
    handler.addFilter(lambda record: record.thread == thread)
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    except BaseException:
        logger.exception("job failed")
        raise
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
