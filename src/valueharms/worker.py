"""Pay a job's start-up once per run: a forking worker for local (non-cluster) runs.

Every script job starts a fresh interpreter that imports torch, transformers, peft and
pandas (about 6 s on a 2-core laptop, longer than many of the demo's jobs). When config
`worker.enabled` is on and Snakemake runs jobs on this machine, the workflow starts one
worker process (`serve`) that imports all of that once; each script then only sends its
`Job` record over a Unix socket (`run`), and the worker forks a child that runs the step
with the imports already done. The child writes the job's log as the script would, and
its exit status becomes the script's. Without a worker (a cluster job, the switch off,
or no answer on the socket) `run` calls the step in the script's own process.

Forking after the imports is safe because the worker runs no torch operation before it
forks (no OpenMP pool to inherit). The child is not a process of the script, so
Snakemake's `benchmark:` files keep their wall time but not the child's memory or CPU.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from valueharms.job import Job

ENV = "VALUEHARMS_WORKER"  # the socket of this run's worker, set for local jobs

# What a job imports and the worker imports for it, the slow parts first: transformers
# loads a model's code (and torch.distributed, dynamo, ...) lazily on the first load. Then
# what steps import inside their functions, then every valueharms module (`preload_list`).
PRELOAD = (
    "torch",
    "transformers",
    "transformers.models.llama.modeling_llama",
    "transformers.generation.utils",
    "transformers.core_model_loading",
    "peft",
    "pandas",
    "pyarrow.parquet",
    "scipy.stats",
    "jsonschema",
    "matplotlib.figure",
    "sklearn.metrics",
    "datasets",
    "trl",
    "openai",
)
# Not preloaded: a backend this environment may lack, and this module's own entry points.
SKIP = ("valueharms.llm.vllm_backend", "valueharms.worker", "valueharms.estimate.__main__")


def preload_list() -> tuple[str, ...]:
    """PRELOAD, then every module of the valueharms package but SKIP: a step imports its
    own modules inside its function (valueharms.plan's config schema, scipy, ...), about
    1.5 s that each job would otherwise pay again."""
    import pkgutil

    import valueharms

    ours = sorted(
        m.name
        for m in pkgutil.walk_packages(valueharms.__path__, "valueharms.")
        if m.name not in SKIP
    )
    return (*PRELOAD, *ours)


log = logging.getLogger(__name__)


def _send(conn: socket.socket, obj: Any) -> None:
    data = pickle.dumps(obj)
    conn.sendall(struct.pack("!Q", len(data)) + data)


def _recv(conn: socket.socket) -> Any:
    head = _exactly(conn, 8)
    return pickle.loads(_exactly(conn, struct.unpack("!Q", head)[0]))


def _exactly(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the worker closed the connection")
        buf += chunk
    return bytes(buf)


def call(target: str, job: Job) -> None:
    """Run `target` ("module:function") on `job` in this process, logged to the job's log."""
    module, _, name = target.partition(":")
    func = getattr(importlib.import_module(module), name)
    with job.logged():
        func(job)


def run(target: str, job: Job) -> None:
    """A script's body: run `target` on `job` in this run's worker if there is one,
    else here. Raises SystemExit with the child's status when the step failed there."""
    path = os.environ.get(ENV)
    # A cluster job may inherit the variable (sbatch exports the environment): it is on
    # another node or in an allocation of its own, so it never uses the worker.
    if not path or os.environ.get("SLURM_JOB_ID") or not Path(path).exists():
        return call(target, job)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return call(target, job)
    with conn:
        _send(conn, {"target": target, "job": job, "cwd": os.getcwd(), "env": dict(os.environ)})
        pid = _recv(conn)["pid"]

        def stop(signum: int, _frame: Any) -> None:  # Snakemake cancels: so does the child
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
            raise SystemExit(128 + signum)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop)
        try:
            status = _recv(conn)["status"]
        except ConnectionError:
            status = 1  # the child died without a word (killed, out of memory)
    if status:
        raise SystemExit(f"valueharms: the step failed (status {status}); see {job.log}")
    return None


def _child(conn: socket.socket) -> int:
    """In a forked child: run one job sent over `conn`, report its status."""
    request = _recv(conn)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    _send(conn, {"pid": os.getpid()})
    try:
        call(request["target"], request["job"])
        status = 0
    except SystemExit as err:
        status = err.code if isinstance(err.code, int) else 1
    except BaseException:  # logged to the job's log by Job.logged
        status = 1
    with contextlib.suppress(OSError):
        _send(conn, {"status": status})
    return status


def serve(path: str, parent: int | None = None, preload: tuple[str, ...] | None = None) -> None:
    """Listen on `path` at once, import `preload` (default: preload_list()) and fork a
    child per job; ends when `parent` (Snakemake) is gone. Jobs that arrive while the
    imports run are served between two imports, so none waits for all of them (such a
    child imports what it needs that is not loaded yet)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    t0 = time.perf_counter()
    modules = preload_list() if preload is None else preload
    server.settimeout(0)
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 (one that fails to import: the rest serve)
            log.warning("worker: cannot preload %s: %s", module, err)
        _serve_waiting(server)
    log.info("worker: preloaded %d modules in %.1f s", len(modules), time.perf_counter() - t0)
    server.settimeout(1.0)
    while parent is None or os.getppid() == parent:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        _serve_waiting(server)


def _serve_waiting(server: socket.socket) -> None:
    """Fork a child for each connection waiting on `server` (within its timeout)."""
    while True:
        try:
            conn, _ = server.accept()
        except (TimeoutError, BlockingIOError):
            return
        if os.fork() == 0:  # the child: one job, then gone
            server.close()
            conn.settimeout(None)
            code = 1
            try:
                code = _child(conn)
            finally:
                os._exit(code)
        conn.close()


def start(
    log_path: str | Path | None = None, preload: tuple[str, ...] | None = None
) -> tuple[subprocess.Popen, str]:
    """Start a worker for this process's jobs; returns it and its socket path (also set
    in this process's environment, which local jobs inherit)."""
    path = os.path.join(tempfile.mkdtemp(prefix="valueharms-worker-"), "socket")
    out = open(log_path, "a") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "valueharms.worker", path, str(os.getpid()), *(preload or ())],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    for _ in range(200):  # the socket exists within milliseconds of the start
        if os.path.exists(path) or proc.poll() is not None:
            break
        time.sleep(0.05)
    os.environ[ENV] = path
    return proc, path


def stop(proc: subprocess.Popen, path: str) -> None:
    os.environ.pop(ENV, None)
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    with contextlib.suppress(OSError):
        os.unlink(path)
        os.rmdir(os.path.dirname(path))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    # No modules named: the default preload (preload_list).
    path, parent, modules = sys.argv[1], int(sys.argv[2]), tuple(sys.argv[3:])
    serve(path, parent, modules or None)
