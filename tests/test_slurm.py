"""The SLURM profile against a live SLURM cluster: one node on this machine, started by
cluster/slurm.sh (munge, slurmctld, slurmd, two fake GPUs), stopped at the end.

A reduced workflow (config/slurm_ci.yaml) runs through `snakemake --profile
profiles/slurm-ci` in a private copy of the workflow. Everything asserted about the jobs
comes from SLURM: its job table (`scontrol show job`: state, comment, requested GPUs,
allocated GRES, memory, CPUs, time limit), its job completion log, and each job's own
log (the jobs that a submission ran). In order, on one copy:

1. one target: only the jobs it needs are submitted;
2. the whole workflow, with the training job cancelled (`scancel`) while it runs: the run
   fails and names the rule; a rerun submits exactly the missing jobs;
3. every job ran as a SLURM job with the resources the config asks for: GPU rules with
   a GPU request and a GPU allocated, the other rules without.

Needs root, and apt-get or SLURM and munge already installed; CI installs them (about
15 s). Set VALUEHARMS_SKIP_SLURM=1 to skip. On a failure the SLURM daemon logs and
the job logs are printed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from paths import ROOT

from valueharms.rehearsal import SLURM_DIR, cluster_lock

SCRIPT = ROOT / "cluster" / "slurm.sh"
SUBMISSIONS = ROOT / "cluster" / "submissions.py"
PROFILE = "profiles/slurm-ci"
COPY = ["Snakefile", "rules", "scripts", "config", "resources", "profiles", "envs"]
TARGET = "results/generations/rtp/smollm2-135m/vanilla/plain.parquet"
CANCEL_RULE = "train_vim_stage1"
STAGE = {
    "distribution": "data",
    "vim_examples": "data",
    "benchmark_prompts": "data",
    "distributions": "data",
    "prepare_base_model": "prepare_model",
    "train_vim_stage1": "train",
    "train_vim_stage2": "train",
    "generate": "generate",
    "judge": "judge",
    "metrics": "analysis",
    "stats": "analysis",
    "report": "analysis",
}
TIMINGS: dict[str, float] = {}


def _can_run() -> str | None:
    """Why this machine cannot host the test cluster, or None."""
    if os.environ.get("VALUEHARMS_SKIP_SLURM"):
        return "VALUEHARMS_SKIP_SLURM is set"
    if not sys.platform.startswith("linux"):
        return "needs Linux"
    if os.geteuid() != 0:
        return "cluster/slurm.sh starts the SLURM daemons as root"
    installed = all(shutil.which(b) for b in ("munged", "slurmctld", "slurmd", "sbatch"))
    if not installed and not shutil.which("apt-get"):
        return "SLURM is not installed and there is no apt-get"
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and "Written by cluster/slurm.sh" not in conf.read_text(errors="replace"):
        return "this machine runs its own SLURM (/etc/slurm/slurm.conf)"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(_can_run()), reason=str(_can_run()))]


def sh(*args: str, timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def slurm_sh(cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return sh("bash", str(SCRIPT), cmd, timeout=timeout)


@pytest.fixture(scope="module")
def cluster():
    """The one-node cluster: installed (if missing) and started here, stopped at the end.

    A cluster that was already running is used and left running.
    """
    # One test session at a time on this machine's cluster (two checkouts' CI runs, a
    # rehearsal): the lock valueharms.rehearsal takes too.
    with cluster_lock(SLURM_DIR, timeout=900):
        yield from _cluster()


def _cluster():
    was_running = slurm_sh("status", timeout=30).returncode == 0
    if not was_running:
        t0 = time.time()
        inst = slurm_sh("install", timeout=400)
        TIMINGS["install"] = time.time() - t0
        assert inst.returncode == 0, f"cluster/slurm.sh install failed:\n{inst.stdout}{inst.stderr}"
        t0 = time.time()
        start = slurm_sh("start", timeout=120)
        TIMINGS["start"] = time.time() - t0
        if start.returncode != 0:
            print(slurm_sh("logs", timeout=30).stdout)
            slurm_sh("stop", timeout=60)
            pytest.fail(f"cluster/slurm.sh start failed:\n{start.stdout}{start.stderr}")
    yield
    print("SLURM test timings (s):", {k: round(v, 1) for k, v in TIMINGS.items()})
    if not was_running:
        stop = slurm_sh("stop", timeout=90)
        assert stop.returncode == 0, stop.stderr
        assert slurm_sh("status", timeout=30).returncode != 0


@pytest.fixture(scope="module")
def wd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the workflow (as in test_workflow.py): results/ stays untouched."""
    dest = tmp_path_factory.mktemp("slurm_wf")
    for name in COPY:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
    return dest


def env() -> dict[str, str]:
    """The environment of snakemake, and so of every SLURM job (sbatch --export=ALL)."""
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    return e


def smk_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--profile", PROFILE, *args]


def smk(wd: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        smk_cmd(*args), cwd=wd, env=env(), capture_output=True, text=True, timeout=timeout
    )


# Jobs that run in Snakemake's own process, never submitted: the target rule and the
# per-subject cuts of a group's table.
LOCAL = ("all", "subject_generations", "subject_judgments")


def job_counts(output: str) -> Counter[str]:
    """The 'Job stats' table of a (dry) run as {rule: count}, without the local rules."""
    counts: Counter[str] = Counter()
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    for line in table.splitlines():
        if m := re.fullmatch(r"(\w+)\s+(\d+)", line.strip()):
            counts[m.group(1)] = int(m.group(2))
    for rule in LOCAL:
        counts.pop(rule, None)
    return counts


# ------------------------------------------------------------------ SLURM's records


def slurm_jobs(wd: Path) -> list[dict]:
    """Every job SLURM holds for this workflow copy (finished ones stay for MinJobAge)."""
    out = sh("scontrol", "-d", "-o", "show", "job", timeout=30)
    assert out.returncode == 0 or "No jobs" in out.stdout + out.stderr, out.stderr
    jobs = []
    for line in out.stdout.splitlines():
        if not line.startswith("JobId="):
            continue
        field = {
            k: (m.group(1) if (m := re.search(rf"(?:^|\s){k}=(\S*)", line)) else None)
            for k in (
                "JobId",
                "JobName",
                "JobState",
                "Comment",
                "TresPerJob",
                "JOB_GRES",
                "NumCPUs",
                "MinMemoryNode",
                "TimeLimit",
                "WorkDir",
                "StdOut",
                "NodeList",
            )
        }
        if field["WorkDir"] != str(wd):
            continue
        field["id"] = int(field["JobId"])
        field["members"] = members(field)
        jobs.append(field)
    return sorted(jobs, key=lambda j: j["id"])


def members(job: dict) -> list[str]:
    """'rule:wildcards' of the jobs a submission ran, from the Snakemake call in its log."""
    log = Path(job["StdOut"] or "")
    text = log.read_text(errors="replace") if log.is_file() else ""
    if m := re.search(r"--target-jobs (.*?) --allowed-rules", text):
        return m.group(1).split()
    # Cancelled before Snakemake started: a single job's comment names its rule.
    if m := re.match(r"rule_(\w+?)_wildcards_", job["Comment"] or ""):
        return [f"{m.group(1)}:?"]
    return []


def rules_of(job: dict) -> Counter[str]:
    return Counter(m.split(":", 1)[0] for m in job["members"])


def runs(jobs: list[dict]) -> list[list[dict]]:
    """Jobs by Snakemake invocation: each run submits under its own job name (run id)."""
    by_name: dict[str, list[dict]] = {}
    for j in jobs:
        by_name.setdefault(j["JobName"], []).append(j)
    return sorted(by_name.values(), key=lambda js: js[0]["id"])


def jobcomp() -> dict[int, str]:
    """SLURM's job completion log: {job id: final state}."""
    conf = Path("/etc/slurm/slurm.conf").read_text()
    loc = re.search(r"^JobCompLoc=(\S+)", conf, flags=re.M)
    assert loc, "no JobCompLoc in slurm.conf"
    text = Path(loc.group(1)).read_text() if Path(loc.group(1)).exists() else ""
    return {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r"^JobId=(\d+) .*?JobState=(\S+)", text, flags=re.M)
    }


@contextlib.contextmanager
def diagnostics(wd: Path, *outputs: str):
    """On failure, print what explains it: Snakemake's output, SLURM's and the jobs' logs."""
    try:
        yield
    except BaseException:
        for out in outputs:
            print("===== snakemake output (tail)\n", out[-6000:])
        print(sh("squeue", "--states=all", "-o", "%i %T %k %b %R", timeout=30).stdout)
        print(slurm_sh("logs", timeout=30).stdout)
        for log in sorted((wd / "logs" / "slurm").rglob("*.log")):
            print(f"===== {log} (tail)\n{log.read_text(errors='replace')[-3000:]}")
        raise


# ------------------------------------------------------------------ the tests


def test_cluster_script_is_idempotent(cluster) -> None:
    again = slurm_sh("start", timeout=60)
    assert again.returncode == 0 and "already running" in again.stderr
    status = slurm_sh("status", timeout=30)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "gpu:fake:2" in status.stdout and "idle" in status.stdout


def test_one_target_submits_only_its_jobs(cluster, wd: Path) -> None:
    dry = smk(wd, "-n", TARGET, timeout=120)
    assert dry.returncode == 0, dry.stderr[-3000:]
    expected = job_counts(dry.stdout + dry.stderr)
    assert expected == Counter(prepare_base_model=1, benchmark_prompts=1, generate=1)
    predicted = sh(
        *(sys.executable, str(SUBMISSIONS), "--json", TARGET, "--profile", PROFILE),
        cwd=wd,
        timeout=120,
    )

    t0 = time.time()
    out = smk(wd, TARGET, timeout=600)
    TIMINGS["one target"] = time.time() - t0
    with diagnostics(wd, out.stdout + out.stderr):
        assert out.returncode == 0
        assert (wd / TARGET).is_file()
        jobs = slurm_jobs(wd)
        assert len(runs(jobs)) == 1
        ran = sum((rules_of(j) for j in jobs), Counter())
        assert ran == expected, "the target's jobs, and no other, were submitted"
        assert {m for j in jobs for m in j["members"]} >= {
            "generate:benchmark=rtp,group=smollm2-135m/vanilla-1",
            "benchmark_prompts:benchmark=rtp",
            "prepare_base_model:base=smollm2-135m",
        }
        # cluster/submissions.py predicted these sbatch calls from the dry run.
        assert predicted.returncode == 0, predicted.stderr[-3000:]
        assert yaml.safe_load(predicted.stdout)["submissions"] == len(jobs)


def _wait_running(wd: Path, rule: str, proc: subprocess.Popen, timeout: float) -> int:
    """Id of this workflow's job of `rule` once SLURM runs it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        q = sh("squeue", "-h", "-t", "RUNNING", "-o", "%i|%k|%Z", timeout=30)
        for line in q.stdout.splitlines():
            jobid, comment, workdir = line.split("|")
            if workdir == str(wd) and comment.startswith(f"rule_{rule}_"):
                return int(jobid)
        if proc.poll() is not None:
            raise AssertionError(f"snakemake exited ({proc.returncode}) before {rule} ran")
        time.sleep(0.5)
    raise AssertionError(f"no running {rule} job within {timeout} s")


def _job_processes(wd: Path, rule: str) -> list[int]:
    """Processes still running a job of `rule` of this workflow copy."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(wd) in cmd and f"--target-jobs {rule}:" in cmd:
            pids.append(int(cmdline.parent.name))
    return pids


def test_cancelled_job_fails_the_run_and_rerun_does_only_the_rest(cluster, wd: Path) -> None:
    t0 = time.time()
    proc = subprocess.Popen(
        smk_cmd(), cwd=wd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = ""
    try:
        with diagnostics(wd):
            jobid = _wait_running(wd, CANCEL_RULE, proc, timeout=480)
            time.sleep(2)  # let the job's Snakemake start the training script
            assert sh("scancel", str(jobid), timeout=30).returncode == 0
            output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()  # Snakemake's own SIGKILL; its SLURM jobs are scancel'ed by stop
            output += proc.communicate()[0]
    TIMINGS["run with scancel"] = time.time() - t0

    with diagnostics(wd, output):
        assert proc.returncode != 0
        # Snakemake names the failed rule and the SLURM job, and says it was cancelled.
        assert f"Error in rule {CANCEL_RULE}" in output
        assert f"SLURM-job '{jobid}'" in output and "CANCELLED" in output
        cancelled = next(j for j in slurm_jobs(wd) if j["id"] == jobid)
        assert cancelled["JobState"] == "CANCELLED"
        assert jobcomp().get(jobid) == "CANCELLED"
        # SLURM killed the job's processes: nothing can still write its outputs.
        deadline = time.time() + 20
        while _job_processes(wd, CANCEL_RULE) and time.time() < deadline:
            time.sleep(1)
        assert not _job_processes(wd, CANCEL_RULE)

        done_before = [
            m for j in slurm_jobs(wd) if j["JobState"] == "COMPLETED" for m in j["members"]
        ]
        missing = smk(wd, "-n", timeout=300)
        assert missing.returncode == 0, missing.stderr[-3000:]
        expected = job_counts(missing.stdout + missing.stderr)
        assert expected[CANCEL_RULE] == 1

    seen = {j["id"] for j in slurm_jobs(wd)}
    t0 = time.time()
    rerun = smk(wd, timeout=900)
    TIMINGS["rerun"] = time.time() - t0
    with diagnostics(wd, rerun.stdout + rerun.stderr):
        assert rerun.returncode == 0
        assert (wd / "results" / "report" / "index.html").is_file()
        new = [j for j in slurm_jobs(wd) if j["id"] not in seen]
        assert new and all(j["JobState"] == "COMPLETED" for j in new)
        assert len(runs(new)) == 1
        ran = [m for j in new for m in j["members"]]
        # Exactly the missing jobs: the dry run's list, and nothing that had completed.
        assert Counter(m.split(":", 1)[0] for m in ran) == expected
        assert not set(ran) & set(done_before)
        assert any(m.startswith(f"{CANCEL_RULE}:") for m in ran)
        # Earlier runs + the rerun = the whole workflow, each job once.
        completed = done_before + ran
        assert len(completed) == len(set(completed))


def _minutes(limit: str) -> int:
    """SLURM time limit ([D-]HH:MM:SS or MM:SS) -> minutes."""
    days, _, hms = limit.rpartition("-")
    parts = [int(p) for p in hms.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts
    return (int(days or 0) * 24 + h) * 60 + m + (s + 59) // 60


def test_jobs_ran_as_slurm_jobs_with_the_requested_resources(cluster, wd: Path) -> None:
    cfg = yaml.safe_load((wd / "config" / "slurm_ci.yaml").read_text())["resources"]
    profile = yaml.safe_load((wd / PROFILE / "config.yaml").read_text())
    gpu_models = {r: s["gpu_model"] for r, s in profile["set-resources"].items()}
    jobs = slurm_jobs(wd)
    finished = jobcomp()
    with diagnostics(wd):
        assert len(runs(jobs)) == 3
        all_rules = sum((rules_of(j) for j in jobs if j["JobState"] == "COMPLETED"), Counter())
        # Every rule of the workflow ran on SLURM (the target rule `all` runs in Snakemake).
        assert set(all_rules) == set(STAGE)
        # Grouping: fewer submissions than jobs, and the judge jobs shared one.
        assert len(jobs) < sum(len(j["members"]) for j in jobs)
        assert any(rules_of(j)["judge"] > 1 for j in jobs)
        for j in jobs:
            rules = rules_of(j)
            stages = {STAGE[r] for r in rules}
            what = f"SLURM job {j['id']} ({j['Comment']}: {dict(rules)})"
            assert j["JobState"] in ("COMPLETED", "CANCELLED"), what
            assert finished.get(j["id"]) == j["JobState"], f"{what} not in the jobcomp log"
            assert j["NodeList"] == sh("hostname", "-s", timeout=10).stdout.strip(), what
            gpus = max(cfg[s]["gpu"] for s in stages)
            if gpus:
                model = {gpu_models.get(r) for r in rules} - {None}
                want = f"gres:gpu:{model.pop()}:{gpus}" if model else f"gres:gpu:{gpus}"
                assert j["TresPerJob"] == want, what
                assert j["JOB_GRES"] and j["JOB_GRES"].startswith("gpu"), what
            else:
                assert j["TresPerJob"] is None and j["JOB_GRES"] in (None, "(null)"), what
            # A group runs its jobs one after the other: the largest memory and CPUs,
            # the sum of the runtimes.
            mem = max(cfg[STAGE[r]]["mem_mb"] for r in rules)
            assert j["MinMemoryNode"] == f"{mem}M", what
            assert int(j["NumCPUs"]) == max(cfg[STAGE[r]]["threads"] for r in rules), what
            runtime = sum(cfg[STAGE[r]]["runtime"] * n for r, n in rules.items())
            assert _minutes(j["TimeLimit"]) == runtime, what
