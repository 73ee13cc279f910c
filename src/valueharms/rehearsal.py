"""The rehearsal (issue 20): a study's whole shape through the SLURM profile on the
one-node test cluster (cluster/slurm.sh), with a tiny random model, and what it costs.

`make rehearsal` runs cluster/rehearsal.py, which calls `rehearse`:

1. starts the test cluster (installing SLURM and munge first when missing), unless it runs;
2. copies the workflow into a private directory (default `.rehearsal/run`), so the
   checkout's results/ stay untouched and every figure below counts this run alone; the
   config files' relative dataset paths are written out as absolute ones beside it;
3. derives the run's profile from profiles/slurm, changing only what the test cluster
   needs (`local_cluster_profile`): its one partition, no accounts, no slurmdbd;
4. predicts the submissions with cluster/submissions.py (a dry run: its wall time is the
   parse and DAG time);
5. runs Snakemake with that profile and records: wall time, jobs, the submissions SLURM
   received (its job completion log) against the prediction, SLURM's own time per
   submission (queue wait, and the job's wall time beyond the rules' own `benchmark:`
   times), when each kind of submission ran, the peak memory of the Snakemake process,
   and files and bytes written (and, before the run, the machine's matmul speed);
6. checks the report's shape from the tables behind it (VIM subjects, the value x risk
   grid, the model-type tests) and writes `summary.json`, `summary.md` and the run's
   SLURM records (`slurm_jobs.json`) beside the run.

The logic is here; cluster/rehearsal.py only parses arguments.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from valueharms import io

# What a workflow copy needs (as tests/test_slurm.py copies it).
COPY = ("Snakefile", "rules", "scripts", "config", "resources", "profiles", "envs")
PROFILE_NAME = "rehearsal"
PATHS_FILE = "config/rehearsal-paths.yaml"
# The test cluster's state (cluster/slurm.sh's default); `<SLURM_DIR>.lock` is its lock.
SLURM_DIR = Path(os.environ.get("VALUEHARMS_SLURM_DIR", "/tmp/valueharms-slurm"))
# Keys of a dataset block that name files.
_PATH_KEYS = ("path", "templates_path")


# ------------------------------------------------------------------ the profile


def local_cluster_profile(profile: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """profiles/slurm's settings for the test cluster of cluster/slurm.sh, and what changed.

    The test cluster has one partition (its default), no accounts and no slurmdbd (so no
    sacct: the plugin polls squeue, which sees finished jobs for MinJobAge = 1 h). Every
    other setting (jobs, groups, group-components, latency, polling, retries) is kept.
    Successful jobs' SLURM logs are kept: they name the jobs each submission ran.
    """
    out = copy.deepcopy(dict(profile))
    changes: list[str] = []
    for key in ("slurm_partition", "slurm_account"):
        if key in (out.get("default-resources") or {}):
            del out["default-resources"][key]
            changes.append(f"default-resources: {key} removed")
    for rule, settings in sorted((out.get("set-resources") or {}).items()):
        if isinstance(settings, dict) and "slurm_partition" in settings:
            # The profile's YAML anchors share one dict between rules: copy before editing.
            rest = {k: v for k, v in settings.items() if k != "slurm_partition"}
            if rest:
                out["set-resources"][rule] = rest
            else:  # an empty entry becomes an empty --set-resources argument
                del out["set-resources"][rule]
            changes.append(f"set-resources: {rule}: slurm_partition removed (one partition)")
    if "set-resources" in out and not out["set-resources"]:
        del out["set-resources"]
    for key, value, why in (
        ("slurm-status-command", "squeue", "no slurmdbd, so no sacct"),
        ("slurm-no-account", True, "no accounts"),
        ("slurm-keep-successful-logs", True, "they name each submission's jobs"),
        # The plugin polls 40 s after a job ends, and 10 s later after each poll that finds
        # none finished: right for jobs of hours, most of the run for jobs of seconds.
        ("slurm-init-seconds-before-status-checks", 2, "jobs of seconds, not hours"),
        ("seconds-between-status-checks", 2, "jobs of seconds, not hours"),
    ):
        if out.get(key) != value:
            out[key] = value
            changes.append(f"{key}: {value} ({why})")
    return out, changes


# ------------------------------------------------------------------ the workflow copy


def absolute_dataset_paths(configs: Sequence[Mapping[str, Any]], root: Path) -> dict[str, Any]:
    """The `datasets` blocks' relative file paths of `configs`, made absolute against
    `root` (the checkout), as a config to read after them. A path that does not exist stays
    as given (absolute), so the run stops with the usual error naming its key."""
    datasets: dict[str, dict[str, str]] = {}
    for cfg in configs:
        for name, block in ((cfg or {}).get("datasets") or {}).items():
            for key in _PATH_KEYS:
                value = (block or {}).get(key)
                if isinstance(value, str) and not os.path.isabs(value):
                    datasets.setdefault(name, {})[key] = os.path.normpath(root / value)
    return {"datasets": datasets} if datasets else {}


def copy_workflow(root: Path, dest: Path, configfiles: Sequence[str]) -> list[str]:
    """A private copy of the workflow at `dest` (replaced); returns its config files."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in COPY:
        src = root / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
    configs = [yaml.safe_load((root / f).read_text(encoding="utf-8")) or {} for f in configfiles]
    files = list(configfiles)
    paths = absolute_dataset_paths(configs, root)
    if paths:
        (dest / PATHS_FILE).write_text(
            "# Written by valueharms.rehearsal: the dataset paths of "
            + ", ".join(configfiles)
            + " made absolute (this is a copy of the workflow).\n"
            + yaml.safe_dump(paths, sort_keys=True),
            encoding="utf-8",
        )
        files.append(PATHS_FILE)
    return files


# ------------------------------------------------------------------ SLURM's records


def parse_jobcomp(text: str) -> list[dict[str, Any]]:
    """jobcomp/filetxt lines -> one dict per job (key=value fields; times as datetimes)."""
    jobs = []
    for line in text.splitlines():
        if not line.startswith("JobId="):
            continue
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        job: dict[str, Any] = dict(fields)
        job["JobId"] = int(fields["JobId"])
        for key in ("SubmitTime", "EligibleTime", "StartTime", "EndTime"):
            value = fields.get(key)
            job[key] = dt.datetime.fromisoformat(value) if value and value != "Unknown" else None
        jobs.append(job)
    return jobs


def submission_names(slurm_logdir: Path) -> dict[int, str]:
    """SLURM job id -> the rule or group name it was submitted as, from the plugin's logs
    (`<slurm-logdir>/<rule or group>/<wildcards>/<jobid>.log`)."""
    names = {}
    if slurm_logdir.is_dir():
        for log in slurm_logdir.rglob("*.log"):
            if log.stem.isdigit():
                names[int(log.stem)] = log.relative_to(slurm_logdir).parts[0]
    return names


def submission_jobs(slurm_logdir: Path) -> dict[int, list[str]]:
    """SLURM job id -> the jobs it ran (`rule:name=value,...`), from the Snakemake call
    in its log."""
    out: dict[int, list[str]] = {}
    if slurm_logdir.is_dir():
        for log in slurm_logdir.rglob("*.log"):
            if not log.stem.isdigit():
                continue
            text = log.read_text(errors="replace")
            if m := re.search(r"--target-jobs (.*?) --", text):
                out[int(log.stem)] = m.group(1).split()
    return out


def benchmark_seconds(benchdir: Path) -> dict[str, float]:
    """Each `benchmark:` file's wall seconds (`s`), by its path below `benchdir` without
    `.tsv` (`benchmarks/<rule>/<wildcard values>.tsv` -> `<rule>/<values>`)."""
    out: dict[str, float] = {}
    if benchdir.is_dir():
        for tsv in sorted(benchdir.rglob("*.tsv")):
            lines = tsv.read_text(encoding="utf-8").splitlines()
            if len(lines) >= 2 and lines[0].split("\t")[0] == "s":
                key = tsv.relative_to(benchdir).as_posix()[: -len(".tsv")]
                out[key] = float(lines[1].split("\t")[0])
    return out


def job_seconds(target: str, bench: Mapping[str, float]) -> float | None:
    """The benchmark seconds of one `rule:name=value,...` job: the workflow's benchmark
    files are `benchmarks/<rule>/<its wildcard values in order>.tsv`; None if it has none."""
    rule, _, wildcards = target.partition(":")
    values = [kv.split("=", 1)[1] for kv in wildcards.split(",") if "=" in kv]
    return bench.get("/".join([rule, *values]))


def _seconds(a: dt.datetime | None, b: dt.datetime | None) -> float | None:
    return None if a is None or b is None else (b - a).total_seconds()


def scheduler_overhead(
    jobs: Sequence[Mapping[str, Any]],
    names: Mapping[int, str],
    targets: Mapping[int, Sequence[str]],
    bench: Mapping[str, float],
) -> dict[str, Any]:
    """Per rule or group a run submitted: submissions, SLURM wall time, queue wait, the
    own time of the jobs each submission ran (their benchmark files) and the rest of the
    wall time per submission (the job's Snakemake start-up, parse and bookkeeping, srun:
    what a submission costs beyond its work). Also the totals."""
    by_name: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for job in jobs:
        by_name[names.get(job["JobId"], "?")].append(job)
    # When each kind ran, in minutes from the first submission: the run's stage timeline.
    submitted = [j["SubmitTime"] for j in jobs if j.get("SubmitTime") is not None]
    t0 = min(submitted) if submitted else None

    def minutes(
        times: list[dt.datetime | None], pick: Callable[[list[dt.datetime]], dt.datetime]
    ) -> float | None:
        known = [t for t in times if t is not None]
        return _seconds(t0, pick(known)) / 60 if t0 is not None and known else None

    rows = []
    unmatched = 0
    for name, js in sorted(by_name.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        walls = [w for j in js if (w := _seconds(j["StartTime"], j["EndTime"])) is not None]
        waits = [w for j in js if (w := _seconds(j["SubmitTime"], j["StartTime"])) is not None]
        member_rules: Counter[str] = Counter()
        own = 0.0
        for j in js:
            for target in targets.get(j["JobId"], ()):
                member_rules[target.split(":", 1)[0]] += 1
                seconds = job_seconds(target, bench)
                own += seconds or 0.0
                unmatched += seconds is None
        rows.append(
            {
                "submitted_as": name,
                "submissions": len(js),
                "jobs": dict(member_rules),
                "wall_s": sum(walls),
                "queue_wait_s_mean": sum(waits) / len(waits) if waits else None,
                "queue_wait_s_max": max(waits) if waits else None,
                "rules_own_s": own,
                "overhead_s_per_submission": (sum(walls) - own) / len(js) if js else None,
                "overhead_s_per_job": (sum(walls) - own) / sum(member_rules.values())
                if member_rules
                else None,
                "states": dict(Counter(j.get("JobState") for j in js)),
                "first_start_min": minutes([j.get("StartTime") for j in js], min),
                "last_end_min": minutes([j.get("EndTime") for j in js], max),
            }
        )
    n = sum(r["submissions"] for r in rows)
    n_jobs = sum(sum(r["jobs"].values()) for r in rows)
    wall = sum(r["wall_s"] for r in rows)
    own = sum(r["rules_own_s"] for r in rows)
    waits = [w for j in jobs if (w := _seconds(j["SubmitTime"], j["StartTime"])) is not None]
    return {
        "by_submission": rows,
        "submissions": n,
        "submitted_jobs": n_jobs,
        "jobs_without_benchmark": unmatched,
        "wall_s": wall,
        "rules_own_s": own,
        "overhead_s_per_submission": (wall - own) / n if n else None,
        "overhead_s_per_job": (wall - own) / n_jobs if n_jobs else None,
        "queue_wait_s_mean": sum(waits) / len(waits) if waits else None,
    }


# ------------------------------------------------------------------ disk and memory


def disk_usage(root: Path) -> dict[str, int]:
    """Files under `root`, their apparent bytes and their bytes on disk (allocated blocks);
    a hard-linked file (the training store's adapters) counts once."""
    files = apparent = on_disk = 0
    seen: set[tuple[int, int]] = set()
    if root.is_dir():
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                st = os.lstat(os.path.join(dirpath, name))
                files += 1
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                apparent += st.st_size
                on_disk += st.st_blocks * 512
    return {"files": files, "bytes": apparent, "bytes_on_disk": on_disk}


def _status_kib(pid: int, key: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{key}:\s+(\d+) kB", text, flags=re.M)
    return int(m.group(1)) if m else None


class PeakRSS:
    """Polls a process's peak resident set (VmHWM, the kernel's high-water mark) while it
    runs; `peak_kib` is the last value read before it exited."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.pid, self.interval, self.peak_kib = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            hwm = _status_kib(self.pid, "VmHWM")
            if hwm is None:
                return
            self.peak_kib = max(self.peak_kib, hwm)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------ Snakemake's output


def steps_done(output: str) -> tuple[int, int] | None:
    """The last 'N of M steps (...) done' of a Snakemake run."""
    found = re.findall(r"(\d+) of (\d+) steps \([^)]*\) done", output)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def job_stats(output: str) -> dict[str, int]:
    """The first 'Job stats' table of a Snakemake (dry) run: rule -> jobs, and 'total'."""
    if "Job stats:" not in output:
        return {}
    table = output.split("Job stats:", 1)[1]
    counts: dict[str, int] = {}
    for line in table.splitlines()[2:]:
        m = re.fullmatch(r"\s*(\w+)\s+(\d+)\s*", line)
        if not m:
            if counts:
                break
            continue
        counts[m.group(1)] = int(m.group(2))
        if m.group(1) == "total":
            break
    return counts


# ------------------------------------------------------------------ the report's shape


def report_shape(results: Path) -> dict[str, Any]:
    """What the report is built on: VIM subjects with metrics, the value x risk grid of
    the correlations, and the model-type tests (from results/stats); and the report's size."""
    import pandas as pd
    import pyarrow.parquet as pq

    out: dict[str, Any] = {}
    report = results / "report" / "index.html"
    out["report_bytes"] = report.stat().st_size if report.is_file() else None
    corr = results / "stats" / "correlations.parquet"
    if corr.is_file():
        c = pd.read_parquet(corr)
        out["grid_values"] = int(c["value"].nunique())
        out["grid_risks"] = int(c[["benchmark", "category"]].drop_duplicates().shape[0])
        out["grid_cells_with_rho"] = int(c["rho"].notna().sum())
    tests = results / "stats" / "comparisons.parquet"
    if tests.is_file():
        t = pd.read_parquet(tests)
        out["model_type_tests"] = len(t)
        out["model_type_baselines"] = sorted(t["baseline"].astype(str).unique())
        out["model_type_tests_with_p"] = int(t["p_holm"].notna().sum())
    # Metrics tables (not the *_failures / *_scores ones, which have other columns).
    metrics = [
        f
        for f in sorted((results / "metrics").glob("*.parquet"))
        if "model_id" in pq.read_schema(f).names
    ]
    vim: set[str] = set()
    for f in metrics:
        m = pd.read_parquet(f, columns=["model_id"])
        vim |= {x for x in m["model_id"].astype(str) if "/vim/" in x}
    out["vim_subjects"] = len(vim)
    return out


# ------------------------------------------------------------------ the run


@dataclass
class Rehearsal:
    root: Path
    workdir: Path
    configfiles: list[str]
    profile: str = "profiles/slurm"
    python: str = sys.executable
    slurm_dir: Path = SLURM_DIR
    keep_cluster: bool = False
    log: list[str] = field(default_factory=list)

    def say(self, msg: str) -> None:
        line = f"rehearsal [{time.strftime('%H:%M:%S')}]: {msg}"
        self.log.append(line)
        print(line, file=sys.stderr, flush=True)

    def env(self) -> dict[str, str]:
        """Snakemake's environment, and so every SLURM job's (sbatch --export=ALL)."""
        e = dict(os.environ)
        e["PATH"] = f"{Path(self.python).parent}{os.pathsep}{e.get('PATH', '')}"
        return e

    def slurm_sh(self, cmd: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.root / "cluster" / "slurm.sh"), cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@contextlib.contextmanager
def cluster_lock(slurm_dir: Path, timeout: float = 900) -> Iterator[None]:
    """One user of the test cluster at a time (tests/test_slurm.py takes the same lock)."""
    with open(f"{slurm_dir}.lock", "w") as lock:
        deadline = time.time() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as err:
                if time.time() > deadline:
                    raise RuntimeError(
                        f"another user held {slurm_dir}.lock for {timeout} s"
                    ) from err
                time.sleep(2)
        yield


@contextlib.contextmanager
def running_cluster(r: Rehearsal, timings: dict[str, float]) -> Iterator[None]:
    """The test cluster, started here unless it ran; stopped at the end if started here."""
    was_running = r.slurm_sh("status", timeout=30).returncode == 0
    if not was_running:
        t0 = time.time()
        inst = r.slurm_sh("install", timeout=600)
        timings["cluster_install_s"] = time.time() - t0
        if inst.returncode != 0:
            raise RuntimeError(f"cluster/slurm.sh install failed:\n{inst.stderr}")
        t0 = time.time()
        start = r.slurm_sh("start", timeout=180)
        timings["cluster_start_s"] = time.time() - t0
        if start.returncode != 0:
            raise RuntimeError(f"cluster/slurm.sh start failed:\n{start.stderr}")
        r.say("cluster started")
    else:
        r.say("cluster already running: used, and left running")
    try:
        yield
    finally:
        if not was_running and not r.keep_cluster:
            t0 = time.time()
            r.slurm_sh("stop", timeout=180)
            timings["cluster_stop_s"] = time.time() - t0
            r.say("cluster stopped")


def _jobcomp_since(slurm_dir: Path, workdir: Path, since: dt.datetime) -> list[dict[str, Any]]:
    text = ""
    for name in ("jobcomp.previous.log", "jobcomp.log"):
        f = slurm_dir / "log" / name
        if f.is_file():
            text += f.read_text(errors="replace")
    return [
        j
        for j in parse_jobcomp(text)
        if j.get("WorkDir") == str(workdir) and j["SubmitTime"] and j["SubmitTime"] >= since
    ]


def predict(r: Rehearsal, files: Sequence[str]) -> tuple[dict[str, Any], float]:
    """cluster/submissions.py's prediction (a dry run) and its wall time."""
    t0 = time.time()
    out = subprocess.run(
        [
            r.python,
            str(r.root / "cluster" / "submissions.py"),
            "--json",
            "--profile",
            f"profiles/{PROFILE_NAME}",
            "--configfile",
            *files,
        ],
        cwd=r.workdir,
        env=r.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.time() - t0
    if out.returncode != 0:
        raise RuntimeError(
            f"the prediction's dry run failed:\n{out.stdout[-4000:]}{out.stderr[-4000:]}"
        )
    return json.loads(out.stdout), took


def run_snakemake(
    r: Rehearsal, files: Sequence[str], extra: Sequence[str], timeout_s: float | None = None
) -> dict[str, Any]:
    """The run itself: wall time, peak memory of the Snakemake process, its output. After
    `timeout_s` Snakemake is stopped as by Ctrl-C and the figures are of what it did."""
    cmd = [r.python, "-m", "snakemake", "--profile", f"profiles/{PROFILE_NAME}", *extra]
    cmd += ["--configfile", *files]
    logfile = r.workdir / "rehearsal.snakemake.log"
    r.say(f"running: {' '.join(cmd[1:])} (output: {logfile})")
    t0 = time.time()
    with open(logfile, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=r.workdir, env=r.env(), stdout=out, stderr=subprocess.STDOUT
        )
        with PeakRSS(proc.pid) as rss:
            try:
                rc = proc.wait(timeout=timeout_s)
                stopped = False
            except subprocess.TimeoutExpired:
                # Ctrl-C: Snakemake cancels its SLURM jobs and exits; what finished stays.
                r.say(f"time limit of {timeout_s:.0f} s reached: stopping Snakemake (SIGINT)")
                proc.send_signal(signal.SIGINT)
                try:
                    rc = proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = proc.wait()
                stopped = True
    wall = time.time() - t0
    text = logfile.read_text(errors="replace")
    return {
        "returncode": rc,
        "stopped_at_time_limit": stopped,
        "wall_s": wall,
        "peak_rss_mib": rss.peak_kib / 1024,
        "steps": steps_done(text),
        "job_stats": job_stats(text),
        "first_submission_s": _first_submission(text, t0),
        "output_tail": text[-3000:],
    }


def _first_submission(text: str, t0: float) -> float | None:
    """Seconds from the start to the first sbatch (Snakemake's parse, DAG, preflight): the
    last timestamp Snakemake printed before its first '... has been submitted with SLURM
    jobid' (or 'Submitted job', as older versions put it)."""
    stamp = None
    for line in text.splitlines():
        if m := re.fullmatch(r"\[(\w{3} \w{3}\s+\d+ \d\d:\d\d:\d\d \d{4})\]\s*", line):
            stamp = dt.datetime.strptime(re.sub(r"\s+", " ", m.group(1)), "%a %b %d %H:%M:%S %Y")
        elif re.search(r"submitted", line, flags=re.I) and "job" in line and stamp is not None:
            return (stamp - dt.datetime.fromtimestamp(t0)).total_seconds()
    return None


def rehearse(
    root: Path,
    configfiles: Sequence[str],
    workdir: Path | None = None,
    profile: str = "profiles/slurm",
    snakemake_args: Sequence[str] = (),
    keep_cluster: bool = False,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run the rehearsal; return its summary (also written to <workdir>/summary.json/.md)."""
    root = root.resolve()
    workdir = (workdir or root / ".rehearsal" / "run").resolve()
    r = Rehearsal(root, workdir, list(configfiles), profile, keep_cluster=keep_cluster)
    summary: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "configfiles": list(configfiles),
        "profile": profile,
        "workdir": str(workdir),
        "machine": machine(),
    }
    timings: dict[str, float] = {}
    files = copy_workflow(root, workdir, configfiles)
    base = yaml.safe_load((root / profile / "config.yaml").read_text(encoding="utf-8"))
    derived, changes = local_cluster_profile(base)
    (workdir / "profiles" / PROFILE_NAME).mkdir(parents=True, exist_ok=True)
    (workdir / "profiles" / PROFILE_NAME / "config.yaml").write_text(
        f"# {profile}/config.yaml for the test cluster (valueharms.rehearsal); changed:\n"
        + "".join(f"#   {c}\n" for c in changes)
        + yaml.safe_dump(derived, sort_keys=False),
        encoding="utf-8",
    )
    summary["profile_changes"] = changes
    with cluster_lock(r.slurm_dir), running_cluster(r, timings):
        prediction, dry_s = predict(r, files)
        summary["predicted"] = prediction
        timings["dry_run_s"] = dry_s
        r.say(f"predicted {prediction['submissions']} submissions ({dry_s:.0f} s dry run)")
        since = dt.datetime.now().replace(microsecond=0)
        run = run_snakemake(r, files, snakemake_args, timeout_s)
        time.sleep(2)  # the completion log is written as jobs end
        jobs = _jobcomp_since(r.slurm_dir, workdir, since)
    # The cluster's completion log is rotated by its next user: keep this run's records.
    io.write_json(workdir / "slurm_jobs.json", jobs)
    summary["run"] = {k: v for k, v in run.items() if k != "output_tail"}
    summary["timings"] = timings
    slurm_logs = workdir / (derived.get("slurm-logdir") or "logs/slurm")
    overhead = scheduler_overhead(
        jobs,
        submission_names(slurm_logs),
        submission_jobs(slurm_logs),
        benchmark_seconds(workdir / "benchmarks"),
    )
    summary["slurm"] = {
        "received": len(jobs),
        "predicted": prediction["submissions"],
        "states": dict(Counter(j.get("JobState") for j in jobs)),
        **overhead,
    }
    summary["disk"] = {
        "results": disk_usage(workdir / "results"),
        "logs": disk_usage(workdir / "logs"),
        "benchmarks": disk_usage(workdir / "benchmarks"),
        "snakemake_metadata": disk_usage(workdir / ".snakemake"),
        "llm_cache": disk_usage(workdir / ".cache"),
    }
    summary["report"] = report_shape(workdir / "results")
    io.write_json(workdir / "summary.json", summary)
    io.write_text(workdir / "summary.md", markdown(summary))
    if run["returncode"] != 0:
        r.say(
            f"snakemake failed (exit {run['returncode']}); its output ends:\n{run['output_tail']}"
        )
    return summary


def machine() -> str:
    cpus = os.cpu_count()
    try:
        total = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        gib = f"{total / 1024**2:.0f} GiB"
    except (OSError, AttributeError):
        gib = "? GiB"
    speed = matmul_gflops()
    return f"{cpus} CPUs, {gib}, {os.uname().machine}, Python {sys.version.split()[0]}" + (
        f", fp32 matmul {speed:.0f} GFLOP/s" if speed is not None else ""
    )


# 2048² fp32 products on every CPU, median of 10: the same sandbox ran them 1.54 times as
# fast one day as the day before, and the rehearsal's wall time moved by the same factor,
# so a run's time means little without this figure beside it.
_MATMUL = """
import statistics, time, torch
a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
a @ b
ts = []
for _ in range(10):
    t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)
print(2 * 2048**3 / statistics.median(ts) / 1e9)
"""


def matmul_gflops(timeout_s: float = 120) -> float | None:
    """The machine's fp32 matmul speed (GFLOP/s), in a child process (torch stays out of
    the driver); None where torch is missing or the child fails."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", _MATMUL], capture_output=True, text=True, timeout=timeout_s
        )
        return float(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


# ------------------------------------------------------------------ the summary


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.1f} MiB"


def _min_s(s: float | None) -> str:
    if s is None:
        return "?"
    m, sec = divmod(round(s), 60)
    return f"{m} min {sec:02d} s" if m else f"{sec} s"


def markdown(s: Mapping[str, Any]) -> str:
    """The summary as a markdown section for docs/benchmarks.md."""
    run, slurm, disk, rep = s["run"], s["slurm"], s["disk"], s["report"]
    steps = run.get("steps")
    lines = [
        f"Rehearsal, {s['date']}: `{' '.join(s['configfiles'])}` through `{s['profile']}` "
        f"on the test cluster ({s['machine']}).",
        "",
        "| what | figure |",
        "|---|---|",
        f"| exit status | {run['returncode']}"
        + (" (stopped at the time limit)" if run.get("stopped_at_time_limit") else "")
        + " |",
        f"| wall time of the run | {_min_s(run['wall_s'])} |",
        f"| dry run (parse, DAG, prediction) | {_min_s(s['timings'].get('dry_run_s'))} |",
        f"| run start to first submission | {_min_s(run.get('first_submission_s'))} |",
        f"| jobs (steps done / planned, local ones included) | "
        f"{steps[0] if steps else '?'} / {steps[1] if steps else '?'} |",
        f"| submissions received by SLURM / predicted | {slurm['received']} / "
        f"{slurm['predicted']} |",
        f"| SLURM job states | {', '.join(f'{k} {v}' for k, v in slurm['states'].items())} |",
        f"| mean queue wait per submission | {slurm['queue_wait_s_mean'] or 0:.1f} s |",
        f"| SLURM wall time beyond the rules' own time, per submission / per job | "
        f"{slurm['overhead_s_per_submission'] or 0:.1f} s / "
        f"{slurm.get('overhead_s_per_job') or 0:.1f} s "
        f"({slurm.get('submitted_jobs', '?')} jobs submitted) |",
        f"| peak memory (RSS) of the Snakemake process | {run['peak_rss_mib']:,.0f} MiB |",
    ]
    for name, d in disk.items():
        lines.append(
            f"| {name}: files, bytes (on disk) | {d['files']:,}, {_mib(d['bytes'])} "
            f"({_mib(d['bytes_on_disk'])}) |"
        )
    if rep.get("report_bytes") is not None:
        lines.append(f"| report (index.html) | {_mib(rep['report_bytes'])} |")
    lines.append(
        f"| report's tables | {rep.get('vim_subjects', '?')} VIM subjects; value x risk grid "
        f"{rep.get('grid_values', '?')} x {rep.get('grid_risks', '?')}; "
        f"{rep.get('model_type_tests', '?')} model-type tests |"
    )
    lines += [
        "",
        "| submitted as | submissions | jobs | SLURM wall (s) | rules' own (s) | "
        "beyond, per submission (s) | beyond, per job (s) | mean queue wait (s) | "
        "ran (min from the first submission) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in slurm["by_submission"]:
        start, end = row.get("first_start_min"), row.get("last_end_min")
        ran = f"{start:.1f}–{end:.1f}" if start is not None and end is not None else "?"
        lines.append(
            f"| {row['submitted_as']} | {row['submissions']} | {sum(row['jobs'].values())} | "
            f"{row['wall_s']:.0f} | {row['rules_own_s']:.0f} | "
            f"{row['overhead_s_per_submission'] or 0:.1f} | "
            f"{row.get('overhead_s_per_job') or 0:.1f} | {row['queue_wait_s_mean'] or 0:.1f} | "
            f"{ran} |"
        )
    return "\n".join(lines) + "\n"
