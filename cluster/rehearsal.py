"""The rehearsal (issue 20): a study's whole shape through the SLURM profile on the
one-node test cluster, with a tiny random model; records what it costs.

    .venv/bin/python cluster/rehearsal.py [--configfile FILE ...] [--workdir DIR]
        [--profile profiles/slurm] [--keep-cluster] [--timeout S] [-- SNAKEMAKE_ARGS...]

Default: config/study_a.yaml + config/rehearsal.yaml (`make rehearsal`); add
config/rehearsal_extremes.yaml for the 14 extremes (`make rehearsal-extremes`). Runs as
root (the cluster's daemons). The logic is in valueharms.rehearsal; it writes
<workdir>/summary.json and summary.md (the table docs/benchmarks.md quotes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from valueharms.rehearsal import rehearse

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--configfile", nargs="+", default=["config/study_a.yaml", "config/rehearsal.yaml"]
    )
    ap.add_argument("--workdir", type=Path, default=None, help="default: .rehearsal/run")
    ap.add_argument("--profile", default="profiles/slurm")
    ap.add_argument(
        "--keep-cluster", action="store_true", help="leave a cluster started here running"
    )
    ap.add_argument("--timeout", type=float, default=None, help="stop Snakemake after N s")
    args = ap.parse_args(argv)
    summary = rehearse(
        ROOT, args.configfile, args.workdir, args.profile, extra, args.keep_cluster, args.timeout
    )
    print(open(Path(summary["workdir"]) / "summary.md").read())
    sys.exit(summary["run"]["returncode"])
