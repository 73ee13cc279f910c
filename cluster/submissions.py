"""How many SLURM submissions a run makes: jobs per rule, and group jobs per group.

    cd <checkout> && .venv/bin/python cluster/submissions.py SNAKEMAKE_ARGS...
    e.g. SNAKEMAKE_ARGS = --profile profiles/slurm --configfile config/study_a.yaml
    --json first: print JSON instead of a table

Runs Snakemake's dry run (`-n`) with the given arguments. With a cluster executor (the
profile's `executor: slurm`) the dry run prints each group job with its jobs, so the
groups and group-components of the profile count; its "Job stats" table only gives jobs
per rule. This reads the printed plan. It needs no cluster: the dry run submits nothing.
A dry run does not say which jobs run inside Snakemake, so the local rules (`localrule:
True` or `localrules:`) are read from the workflow's files in the working directory.
tests/test_slurm.py checks its count against the jobs a live SLURM cluster received.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

GROUP = re.compile(r"Group job (\S+) \(jobs in lexicogr\. order\):")
RULE = re.compile(r"^(\s*)(local)?rule (\w+):")


def local_rules(workdir: str | Path = ".") -> set[str]:
    """Rules of the Snakefile and rules/*.smk that run inside Snakemake (never submitted)."""
    found: set[str] = set()
    files = [Path(workdir) / "Snakefile", *sorted((Path(workdir) / "rules").glob("*.smk"))]
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text()
        for m in re.finditer(r"^localrules:\s*(.+)$", text, flags=re.M):
            found |= {r.strip() for r in m.group(1).split(",") if r.strip()}
        # `rule X:` up to the next rule: a `localrule: True` directive in between
        for m in re.finditer(r"^\s*rule (\w+):(.*?)(?=^\s*(?:rule|checkpoint) \w+:|\Z)", text,
                             flags=re.M | re.S):  # fmt: skip
            if re.search(r"^\s*localrule:\s*True\s*$", m.group(2), flags=re.M):
                found.add(m.group(1))
    return found


def parse(plan: str, local: set[str] | frozenset[str] = frozenset()) -> dict:
    """The dry run's printed plan -> jobs per rule, submissions per rule or group."""
    jobs: list[list] = []  # [rule, group or None, has output]
    group_jobs: Counter[str] = Counter()
    group = None
    for line in plan.splitlines():
        if m := GROUP.search(line):
            group = m.group(1)
            group_jobs[group] += 1
        elif m := RULE.match(line):
            indent, is_local, rule = m.groups()
            group = group if indent else None
            jobs.append([rule, group, False, bool(is_local) or rule in local])
        elif jobs and line.strip().startswith("output:"):
            jobs[-1][2] = True
    # A job without output (the target rule `all`) runs in the main Snakemake process.
    remote = [(rule, grp) for rule, grp, has_output, local in jobs if has_output and not local]
    rules = Counter(rule for rule, _ in remote)
    singles = Counter(rule for rule, grp in remote if grp is None)
    members: dict[str, Counter[str]] = {g: Counter() for g in group_jobs}
    for rule, grp in remote:
        if grp is not None:
            members[grp][rule] += 1
    return {
        "rules": dict(rules),
        "singles": dict(singles),
        "groups": {
            g: {"submissions": group_jobs[g], "jobs": dict(members[g])} for g in sorted(group_jobs)
        },
        "jobs": sum(rules.values()),
        "submissions": sum(singles.values()) + sum(group_jobs.values()),
    }


def table(result: dict) -> str:
    lines = [f"{'submitted as':<22} {'jobs':>6} {'sbatch calls':>13}"]
    for rule, n in sorted(result["singles"].items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"{rule:<22} {n:>6} {n:>13}")
    for group, entry in result["groups"].items():
        members = ", ".join(f"{r} {n}" for r, n in sorted(entry["jobs"].items()))
        jobs = sum(entry["jobs"].values())
        lines.append(f"{'group ' + group:<22} {jobs:>6} {entry['submissions']:>13}   ({members})")
    lines.append(f"{'total':<22} {result['jobs']:>6} {result['submissions']:>13}")
    return "\n".join(lines)


def run(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.stderr.write(out.stdout + out.stderr)
        sys.exit(f"submissions.py: the dry run failed (exit {out.returncode})")
    return parse(out.stdout + out.stderr, local_rules())


if __name__ == "__main__":
    argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        # Without this, --help went on to Snakemake's dry run and printed an empty count.
        print(__doc__)
        sys.exit(0 if argv else 2)
    as_json = argv[0] == "--json"
    result = run(argv[1:] if as_json else argv)
    print(json.dumps(result, indent=1) if as_json else table(result))
