"""The rehearsal's bookkeeping (valueharms.rehearsal): the profile it derives for the test
cluster, the workflow copy's dataset paths, SLURM's completion log, the scheduler's time
per submission, disk usage, and Snakemake's output. The rehearsal itself is `make
rehearsal` (docs/cluster.md); none of these tests starts a cluster or Snakemake."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from paths import ROOT

from valueharms import rehearsal
from valueharms.config import deep_merge, load_yaml, validate

JOBCOMP = (
    "JobId=7 UserId=root(0) GroupId=root(0) Name=valueharms_x JobState=COMPLETED "
    "Partition=debug TimeLimit=5 StartTime=2026-12-03T12:54:02 EndTime=2026-12-03T12:54:13 "
    "NodeList=vm NodeCnt=1 ProcCnt=1 WorkDir=/w ReservationName= Tres=cpu=1,mem=500M "
    "Account= QOS= WcKey= Cluster=unknown SubmitTime=2026-12-03T12:54:00 "
    "EligibleTime=2026-12-03T12:54:00 DerivedExitCode=0:0 ExitCode=0:0 \n"
    "JobId=8 UserId=root(0) GroupId=root(0) Name=valueharms_x JobState=FAILED "
    "Partition=debug TimeLimit=10 StartTime=2026-12-03T12:54:10 EndTime=2026-12-03T12:55:10 "
    "NodeList=vm NodeCnt=1 ProcCnt=1 WorkDir=/w ReservationName= Tres=cpu=1 Account= QOS= "
    "WcKey= Cluster=unknown SubmitTime=2026-12-03T12:54:04 EligibleTime=2026-12-03T12:54:04 "
    "DerivedExitCode=0:0 ExitCode=1:0 \n"
)


def test_the_profile_for_the_test_cluster_changes_only_what_it_lacks() -> None:
    slurm = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    derived, changes = rehearsal.local_cluster_profile(slurm)
    # The test cluster has one partition, no accounts, no sacct.
    # (an entry left empty is dropped: Snakemake would get an empty --set-resources)
    assert all("slurm_partition" not in s for s in derived.get("set-resources", {}).values())
    assert all(derived.get("set-resources", {}).values())
    assert derived["slurm-status-command"] == "squeue" and derived["slurm-no-account"] is True
    assert any("train_vim_group: slurm_partition removed" in c for c in changes)
    # Jobs of seconds: polled every 2 s, not 40 s and more (each change is listed).
    assert derived["slurm-init-seconds-before-status-checks"] == 2
    assert any(c.startswith("slurm-init-seconds-before-status-checks: 2") for c in changes)
    # Everything else is the profile's own: groups, components, jobs, polling, retries.
    for key in ("groups", "group-components", "jobs", "retries", "latency-wait", "executor"):
        assert derived[key] == slurm[key]
    assert derived["set-resource-scopes"] == slurm["set-resource-scopes"]
    # The profile itself is not modified (its YAML anchors share dicts between rules).
    assert slurm["set-resources"]["generate"]["slurm_partition"] == "gpu"


def test_the_copys_dataset_paths_are_made_absolute_against_the_checkout(tmp_path) -> None:
    configs = [
        {"datasets": {"rtp": {"path": "../shared/rtp.csv"}, "x": {"path": "/abs/x.csv"}}},
        {"datasets": {"issuebench": {"path": "a.csv", "templates_path": "b.csv"}}},
        {"vim": {}},
    ]
    paths = rehearsal.absolute_dataset_paths(configs, tmp_path / "checkout")
    assert paths == {
        "datasets": {
            "rtp": {"path": str(tmp_path / "shared" / "rtp.csv")},
            "issuebench": {
                "path": str(tmp_path / "checkout" / "a.csv"),
                "templates_path": str(tmp_path / "checkout" / "b.csv"),
            },
        }
    }


def test_the_rehearsal_config_is_study_as_shape_on_a_tiny_random_model() -> None:
    study = load_yaml(ROOT / "config" / "study_a.yaml")
    cfg = validate(deep_merge(study, load_yaml(ROOT / "config" / "rehearsal.yaml")))
    assert cfg["models"][cfg["base_model"]]["source"] == "tiny_random"
    assert cfg["distributions"]["select"] is None  # all 154
    assert cfg["benign"]["select"] == study["benign"]["select"]
    assert cfg["benchmarks"]["select"] == ["rtp", "holisticbiasr", "hexphi", "beavertails"]
    assert cfg["icl"]["enabled"] and cfg["vim"]["enabled"] and cfg["vanilla"]["enabled"]
    assert cfg["alignment"]["enabled"] and cfg["mitigation"]["enabled"]
    assert cfg["training"]["subjects_per_job"] > 1
    # Every dataset the rehearsal reads is named, so a missing one stops it up front.
    for name in ("ess", "touche", "rtp", "hexphi", "beavertails", "holisticbiasr", "pvq"):
        assert cfg["datasets"][name]["path"]
    extremes = load_yaml(ROOT / "config" / "rehearsal_extremes.yaml")
    assert len(extremes["distributions"]["select"]) == 14


def test_the_completion_log_and_the_time_beyond_the_rules_own(tmp_path) -> None:
    jobs = rehearsal.parse_jobcomp(JOBCOMP + "garbage line\n")
    assert [j["JobId"] for j in jobs] == [7, 8]
    assert jobs[0]["StartTime"] == dt.datetime(2026, 12, 3, 12, 54, 2)
    assert jobs[1]["WorkDir"] == "/w" and jobs[1]["JobState"] == "FAILED"

    logs = tmp_path / "logs" / "slurm"
    submitted = (
        (7, "data", "distribution:dist=Ach vim_examples:dist=Ach"),
        (8, "generate", "generate:benchmark=rtp,group=t/vim-1"),
    )
    for jobid, name, targets in submitted:
        d = logs / name / "some_wildcards"
        d.mkdir(parents=True)
        (d / f"{jobid}.log").write_text(f"... --target-jobs {targets} --allowed-rules x\n")
    names = rehearsal.submission_names(logs)
    targets = rehearsal.submission_jobs(logs)
    assert names == {7: "data", 8: "generate"}
    assert targets[7] == ["distribution:dist=Ach", "vim_examples:dist=Ach"]

    bench = tmp_path / "benchmarks"
    # Ben's jobs ran in no submission of this run's log: they must not count for Ach's.
    for rel, s in (("distribution/Ach.tsv", 1.5), ("vim_examples/Ach.tsv", 2.5),
                   ("distribution/Ben.tsv", 100.0), ("vim_examples/Ben.tsv", 100.0),
                   ("generate/rtp/t/vim-1.tsv", 40.0), ("report.tsv", 3.0)):  # fmt: skip
        f = bench / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"s\th:m:s\tmax_rss\n{s}\t0:00:01\t-\n")
    seconds = rehearsal.benchmark_seconds(bench)
    assert seconds["distribution/Ach"] == 1.5 and seconds["report"] == 3.0
    assert rehearsal.job_seconds("generate:benchmark=rtp,group=t/vim-1", seconds) == 40.0
    assert rehearsal.job_seconds("report", seconds) == 3.0
    assert rehearsal.job_seconds("distribution:dist=Con", seconds) is None

    over = rehearsal.scheduler_overhead(jobs, names, targets, seconds)
    assert over["submissions"] == 2 and over["wall_s"] == 11 + 60
    assert over["submitted_jobs"] == 3 and over["jobs_without_benchmark"] == 0
    data = next(r for r in over["by_submission"] if r["submitted_as"] == "data")
    assert data["jobs"] == {"distribution": 1, "vim_examples": 1}
    assert data["rules_own_s"] == 4.0 and data["overhead_s_per_submission"] == 7.0
    assert data["overhead_s_per_job"] == 3.5
    assert data["queue_wait_s_mean"] == 2.0
    # When each kind ran, from the first submission (job 7's, 12:54:00).
    assert (data["first_start_min"], data["last_end_min"]) == (2 / 60, 13 / 60)
    gen = next(r for r in over["by_submission"] if r["submitted_as"] == "generate")
    assert (gen["first_start_min"], gen["last_end_min"]) == (10 / 60, 70 / 60)
    assert over["overhead_s_per_submission"] == (71 - 44) / 2
    assert over["overhead_s_per_job"] == (71 - 44) / 3
    assert over["queue_wait_s_mean"] == (2 + 6) / 2


def test_disk_usage_counts_a_hard_linked_file_once(tmp_path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 5000)
    os.link(tmp_path / "a", tmp_path / "b")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c").write_bytes(b"y" * 10)
    usage = rehearsal.disk_usage(tmp_path)
    assert usage["files"] == 3 and usage["bytes"] == 5010
    assert usage["bytes_on_disk"] >= 5010
    assert rehearsal.disk_usage(tmp_path / "absent") == {"files": 0, "bytes": 0, "bytes_on_disk": 0}


def test_snakemakes_output_gives_the_steps_and_the_job_stats() -> None:
    out = (
        "Job stats:\njob           count\n------------  -------\nall               1\n"
        "generate          3\ntotal             4\n\nSelect jobs to execute...\n"
        "1 of 4 steps (25%) done\n...\n4 of 4 steps (100%) done\n"
    )
    assert rehearsal.steps_done(out) == (4, 4)
    assert rehearsal.job_stats(out) == {"all": 1, "generate": 3, "total": 4}
    assert rehearsal.steps_done("nothing") is None and rehearsal.job_stats("x") == {}


def test_the_summary_renders_as_a_markdown_table() -> None:
    summary = {
        "date": "2026-12-03 15:00 UTC",
        "configfiles": ["config/study_a.yaml", "config/rehearsal.yaml"],
        "profile": "profiles/slurm",
        "machine": "2 CPUs",
        "timings": {"dry_run_s": 12.0},
        "run": {"returncode": 0, "wall_s": 125.0, "peak_rss_mib": 812.0, "steps": (10, 10)},
        "slurm": {
            "received": 5,
            "predicted": 5,
            "states": {"COMPLETED": 5},
            "queue_wait_s_mean": 1.0,
            "overhead_s_per_submission": 9.5,
            "by_submission": [
                {
                    "submitted_as": "generate",
                    "submissions": 5,
                    "jobs": {"generate": 5},
                    "wall_s": 100.0,
                    "rules_own_s": 52.5,
                    "overhead_s_per_submission": 9.5,
                    "queue_wait_s_mean": 1.0,
                    "first_start_min": 0.5,
                    "last_end_min": 2.3,
                }
            ],
        },
        "disk": {"results": {"files": 3, "bytes": 2048, "bytes_on_disk": 12288}},
        "report": {"report_bytes": 1024, "vim_subjects": 154, "grid_values": 10, "grid_risks": 25},
    }
    md = rehearsal.markdown(summary)
    assert "| wall time of the run | 2 min 05 s |" in md
    assert "| submissions received by SLURM / predicted | 5 / 5 |" in md
    assert "154 VIM subjects; value x risk grid 10 x 25" in md
    assert "| generate | 5 | 5 | 100 | 52 | 9.5 | 0.0 | 1.0 | 0.5–2.3 |" in md


def test_the_machine_line_gives_its_matmul_speed() -> None:
    # torch is in the project's environment, so the figure is there, measured
    m = re.search(r", fp32 matmul (\d+) GFLOP/s$", rehearsal.machine())
    assert m and int(m.group(1)) > 0


def test_make_rehearsal_runs_the_driver() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "rehearsal: $(STAMP)" in makefile and "cluster/rehearsal.py" in makefile
    assert (ROOT / "cluster" / "rehearsal.py").is_file()
    assert Path(ROOT / "config" / "rehearsal.yaml").is_file()


def test_the_first_submission_is_timed_from_snakemakes_timestamps() -> None:
    t0 = dt.datetime(2026, 12, 3, 14, 30, 0).timestamp()
    out = (
        "Building DAG of jobs...\n[Thu Dec  3 14:30:41 2026]\nrule prepare_base_model:\n"
        "    output: results/models/tiny/base\n"
        "Job 3 has been submitted with SLURM jobid 75 (log: x).\n[Thu Dec  3 14:31:00 2026]\n"
        "Submitted group job x with external jobid '76'.\n"
    )
    assert rehearsal._first_submission(out, t0) == 41.0
    assert rehearsal._first_submission("no jobs", t0) is None


def test_submissions_help_prints_the_usage_and_runs_no_dry_run() -> None:
    script = str(ROOT / "cluster" / "submissions.py")
    out = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "SNAKEMAKE_ARGS" in out.stdout
    assert "sbatch calls" not in out.stdout  # no (empty) count from a dry run
    bare = subprocess.run([sys.executable, script], capture_output=True, text=True)
    assert bare.returncode == 2 and "SNAKEMAKE_ARGS" in bare.stdout
