"""Per-dataset bookkeeping of the data stage: rows in, dropped (with reasons), rows out.

`build_summary` loads every dataset it is given with the same loaders the pipeline uses and
returns a JSON-able dict (written to results/data/summary.json); `render_table` turns it into
the Markdown table that docs/data.md embeds between the SUMMARY markers, so the docs can be
checked against what the code computes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from valueharms import benchmarks as registry
from valueharms.data import benchmarks, benign, distributions, vim
from valueharms.data.sources import CATALOGUE, LoadReport, expected_rows

# What the papers (or Study A's code) report for each dataset, for comparison (a
# benchmark's own figure is declared with it: valueharms.benchmarks).
PAPER_COUNTS: dict[str, str] = {
    "ess": "not stated; Study A's ess_distribution.csv has 20,466 respondents",
    "touche": "not stated (Touché23-ValueEval, 10 collapsed labels)",
    "touche_stage2_train": "not stated (Study A's fixed split)",
    "touche_stage2_valid": "not stated (Study A's fixed split)",
    "published_distributions": "154 used (+28 reverse_* rows not used in the paper)",
    "alpaca": "52K",
    "dolly": "15K, safety categories removed",
    "grammar": "14K (JFLEG + C4_200M)",
    "grammar_valid": "not stated",
    "samsum": "16K",
}


def dataset_report(
    name: str, path: str, config: Mapping[str, Any] | None = None
) -> tuple[LoadReport, pd.DataFrame]:
    """Load dataset `name` from `path` with its pipeline loader; return its report and rows."""
    cfg = dict(config or {})
    exp = expected_rows(name, cfg)
    rep = LoadReport(name, str(path))
    if name == "ess":
        raw = distributions.read_ess(path, expected_rows=exp)
        reverse = bool(cfg.get("distributions", {}).get("realistic", {}).get("reverse_code", True))
        scores, counts = distributions.score_ess(raw, reverse_code=reverse)
        rep.rows_in = counts["n_in"]
        for reason, n in counts["dropped"].items():
            rep.drop(reason, n)
        rep.close(counts["n_out"])
        return rep, scores
    if name.startswith("touche"):
        df = vim.read_touche(path, name=name, expected_rows=exp, report=rep)
        n = vim.unscored(df)
        if n:
            rep.notes.append(f"{n} arguments have no value label (no stage-1 score)")
        return rep, df
    if name == "published_distributions":
        df = distributions.load_published_table(path)
        rep.rows_in = len(df)
        rep.close(len(df))
        return rep, df
    if name in registry.names() and registry.get(name).load is not None:
        dup = benchmarks.duplicates_setting(name, cfg)
        return rep, benchmarks.load_benchmark(
            name, path, expected_rows=exp, report=rep, duplicates=dup
        )
    if name == "grammar_valid":
        return rep, benign.load_grammar(path, expected_rows=exp, report=rep, name=name)
    if name == "dolly":
        excl = cfg.get("benign", {}).get("dolly_exclude_categories", [])
        return rep, benign.load_dolly(path, excl, expected_rows=exp, report=rep)
    if name in benign.LOADERS:
        return rep, benign.LOADERS[name](path, expected_rows=exp, report=rep)
    raise ValueError(f"no loader for dataset {name!r}")


def _published_size(name: str) -> str | None:
    return registry.get(name).published_size if name in registry.names() else None


def build_summary(
    paths: Mapping[str, str],
    config: Mapping[str, Any] | None = None,
    dists: pd.DataFrame | None = None,
    split_sizes: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Summary of every dataset in `paths` (name -> file), plus distribution/VIM totals."""
    out: dict[str, Any] = {"datasets": {}}
    for name in sorted(paths):
        rep, _ = dataset_report(name, paths[name], config)
        src = CATALOGUE.get(name)
        if src and src.rows is not None and rep.rows_in != src.rows:
            rep.notes.append(f"{rep.rows_in} rows where the declared file has {src.rows}")
        out["datasets"][name] = {
            **rep.as_dict(),
            "upstream": src.upstream if src else None,
            "licence": src.licence if src else None,
            "paper": PAPER_COUNTS.get(name) or _published_size(name),
        }
        del out["datasets"][name]["path"]  # machine-specific; the log has it
    if dists is not None:
        out["distributions"] = {
            "rows": len(dists),
            **{k: int(n) for k, n in dists["kind"].value_counts().sort_index().items()},
        }
    if split_sizes is not None:
        cols = [c for c in split_sizes.columns if c != "distribution"]
        out["vim_split_sizes"] = {
            "distributions": len(split_sizes),
            **{f"{c}_min": int(split_sizes[c].min()) for c in cols},
            **{f"{c}_max": int(split_sizes[c].max()) for c in cols},
        }
    return out


def _fmt_dropped(dropped: Mapping[str, int]) -> str:
    return "; ".join(f"{n:,} {reason}" for reason, n in dropped.items()) or "0"


def render_table(summary: Mapping[str, Any]) -> str:
    """The Markdown table of docs/data.md: one row per dataset. Kept rows (flagged as
    suspect but kept: LoadReport.kept) are part of rows out."""
    lines = [
        "| dataset | rows in | dropped (why) | kept, flagged (why) | rows out | papers |",
        "|---|---:|---|---|---:|---|",
    ]
    for name, d in summary["datasets"].items():
        lines.append(
            f"| `{name}` | {d['rows_in']:,} | {_fmt_dropped(d['dropped'])} | "
            f"{_fmt_dropped(d.get('kept') or {})} | {d['rows_out']:,} | {d['paper'] or 'n/a'} |"
        )
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- SUMMARY:BEGIN -->", "<!-- SUMMARY:END -->"


def docs_block(text: str) -> str:
    """The generated part of docs/data.md (between the markers)."""
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


if __name__ == "__main__":  # pragma: no cover
    # python -m valueharms.data.summary <folder>: the docs/data.md table for the files there.
    import sys

    from valueharms.config import validate
    from valueharms.data.sources import local_path

    cfg = validate({"data_search_paths": sys.argv[1:]})
    found = {n: p for n in CATALOGUE if (p := local_path(n, cfg))}
    sys.stdout.write(render_table(build_summary(found, cfg)))
