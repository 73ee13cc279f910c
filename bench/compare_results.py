"""Compare the tables two runs wrote: are the metrics and statistics the same?

    python bench/compare_results.py OLD/results NEW/results [--stages metrics stats ...]

Reads every Parquet file under the given stages of both trees and reports, per file,
whether the tables are equal (same columns, same rows in the same order, values equal;
floats exactly, unless --rtol is given). Exit 0 when every table of OLD has an equal
twin in NEW, 1 otherwise. Used to check that a refactor left the demo's numbers alone
(docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

STAGES = ("metrics", "stats", "alignment", "studyb/metrics")


def differs(a: pd.DataFrame, b: pd.DataFrame, rtol: float) -> str | None:
    """None when equal, else a one-line reason."""
    try:
        pd.testing.assert_frame_equal(
            a.reset_index(drop=True),
            b.reset_index(drop=True),
            check_exact=rtol == 0,
            rtol=rtol or 1e-5,
        )
    except AssertionError as err:
        return " ".join(str(err).split())[:300]
    return None


def compare(old: Path, new: Path, stages: list[str], rtol: float) -> int:
    bad = 0
    n = 0
    for stage in stages:
        for f in sorted((old / stage).rglob("*.parquet")):
            rel = f.relative_to(old)
            twin = new / rel
            n += 1
            if not twin.is_file():
                print(f"MISSING  {rel}")
                bad += 1
                continue
            why = differs(pd.read_parquet(f), pd.read_parquet(twin), rtol)
            print(
                f"{'equal   ' if why is None else 'DIFFERS '} {rel}" + (f": {why}" if why else "")
            )
            bad += why is not None
    print(f"{n - bad} of {n} tables equal")
    return 1 if bad or not n else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path, help="the first run's results/ folder")
    ap.add_argument("new", type=Path, help="the second run's results/ folder")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), help="folders under results/")
    ap.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (0: exact)")
    a = ap.parse_args()
    sys.exit(compare(a.old, a.new, a.stages, a.rtol))


if __name__ == "__main__":
    main()
