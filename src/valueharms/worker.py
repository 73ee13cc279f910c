"""Pay a job's start-up once per run: a forking worker for local (non-cluster) runs.

Every script job starts a fresh interpreter that imports torch, transformers, peft and
pandas (about 6 s on a 2-core laptop, longer than many of the demo's jobs). When config
`worker.enabled` is on and Snakemake runs jobs on this machine, the workflow starts one
worker process (`serve`) that imports all of that once; each script then only sends its
`Job` record over a Unix socket (`run`), and the worker forks a child that runs the step
with the imports already done. The child writes the job's log as the script would, and
its exit status becomes the script's. Without a worker (a cluster job, the switch off,
or no answer on the socket) `run` calls the step in the script's own process.

With a CPU-only torch the worker also loads each job's base model (an input directory
with a revision file) once per run, before forking its child, which takes it instead of
reading it again (`take_base`; the hf backend does). Forking after the imports and loads
is safe because the worker runs torch on one thread only (no OpenMP pool to inherit); each
child gets torch's thread count back. The child is not a process of the script, so
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

# Base models the worker loaded before forking, by (directory, revision file's mtime): a
# child takes its job's base from here instead of reading it again (`take_base`).
_BASES: dict[tuple[str, int], Any] = {}
_THREADS: list[int] = []  # torch's thread count before the worker set 1 (see _warm)


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


def _base_dirs(job: Job) -> list[str]:
    """The prepared base models among a job's inputs (directories with a revision file)."""
    from valueharms.models import REVISION_FILE

    return [
        p
        for p in job.input
        if os.path.isfile(os.path.join(p, REVISION_FILE))
        and os.path.isfile(os.path.join(p, "config.json"))
    ]


def _base_key(base_dir: str | Path) -> tuple[str, int] | None:
    from valueharms.models import REVISION_FILE

    try:
        return str(Path(base_dir).resolve()), os.stat(Path(base_dir) / REVISION_FILE).st_mtime_ns
    except OSError:
        return None


def _warm(job: Job) -> None:
    """Load the job's base models into the worker (once per run), so its child and the
    next jobs' children have them without reading them again.

    Only with a CPU-only torch: a CUDA context does not survive a fork. The worker sets
    torch to one thread first, so loading starts no OpenMP pool that a forked child would
    inherit broken; the child restores the thread count before its job."""
    import torch

    if torch.version.cuda is not None or getattr(torch.version, "hip", None):
        return
    for base in _base_dirs(job):
        key = _base_key(base)
        if key is None or key in _BASES:
            continue
        if not _THREADS:
            _THREADS.append(torch.get_num_threads())
            torch.set_num_threads(1)
        from transformers import AutoModelForCausalLM

        t0 = time.perf_counter()
        try:
            _BASES[key] = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
        except Exception as err:  # noqa: BLE001 (not a causal LM: the job loads its own)
            log.warning("worker: cannot preload %s: %s", base, err)
            continue
        log.info("worker: loaded %s in %.1f s", base, time.perf_counter() - t0)


def take_base(base_dir: str | Path) -> Any | None:
    """The base model at `base_dir` as the worker loaded it (fp32, CPU), or None. A child
    gets it once: the caller may wrap it in adapters, so a second backend loads its own."""
    key = _base_key(base_dir)
    return _BASES.pop(key, None) if key else None


def _child(conn: socket.socket, request: dict[str, Any]) -> int:
    """In a forked child: run the job of `request` (sent over `conn`), report its status."""
    if _THREADS:
        import torch

        torch.set_num_threads(_THREADS[0])
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
        conn.settimeout(None)
        try:
            request = _recv(conn)
        except (ConnectionError, OSError, pickle.UnpicklingError) as err:
            log.warning("worker: dropped a request: %s", err)
            conn.close()
            continue
        if "torch" in sys.modules:  # preloading done or under way: load the job's base
            with contextlib.suppress(Exception):
                _warm(request["job"])
        if os.fork() == 0:  # the child: one job, then gone
            server.close()
            code = 1
            try:
                code = _child(conn, request)
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
    # Run as valueharms.worker, not __main__: children look up its loaded bases there.
    importlib.import_module("valueharms.worker").serve(path, parent, modules or None)
