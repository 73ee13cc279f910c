"""Study A's findings as tables beside the published figures (METHODS A2, A6, A7).

The published figures live in one data file (resources/published/study_a.yaml, with its
source); they are shown only when this run's setup is the one they were measured on, so a
column of published numbers never sits beside a run that could not reproduce them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from valueharms import benchmarks
from valueharms.report.render import (
    OVERALL,
    Table,
    _nanmean,
    bench_name,
    fmt_int,
    fmt_num,
    metric_name,
)

# The published safety table's columns, then the two category benchmarks' overall scores.
SAFETY_METRICS: tuple[tuple[str, str], ...] = tuple(
    (b.name, m) for b in benchmarks.all_benchmarks() if b.role == "safety" for m in b.safety
)
ROW_ORDER = ("vanilla", "benign/alpaca", "benign/dolly", "benign/grammar", "benign/samsum")
ROW_NAMES = {"vanilla": "Vanilla", "icl": "ICL", "vim": "VIM (value-aligned)"}
SETTING_NAMES = {
    "input_only": "Input only",
    "safety": "Safety prompt",
    "value": "Value prompt",
    "dual": "Dual prompt",
}


def load_published(path: str | Path, base_spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The published figures if this run's base model is the one they were measured on."""
    p = Path(path)
    if not p.is_file():
        return None
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    want = (data.get("setup") or {}).get("base_model_hf_id")
    if want is None or base_spec.get("hf_id") != want:
        return None
    return data


def row_key(model_type: str, model_id: str) -> str:
    """Row of the safety table: the model type, or benign/<dataset> per benign fine-tune."""
    if model_type == "benign":
        return "/".join(model_id.split("/")[1:])
    return model_type


def _row_name(key: str) -> str:
    if key.startswith("benign/"):
        return f"Benign: {key.split('/', 1)[1].capitalize()}"
    return ROW_NAMES.get(key, key)


def safety_table(
    metrics: pd.DataFrame, subjects: pd.DataFrame, published: Mapping[str, Any] | None
) -> Table:
    """Seed 001's first table: each overall metric's mean over the subjects of a row."""
    ov = metrics[metrics["category"].astype(str) == OVERALL]
    plain = subjects[~subjects["condition"].astype(str).str.startswith("mit-")]
    keys = [
        row_key(str(t), str(m)) for t, m in zip(plain["model_type"], plain["model_id"], strict=True)
    ]
    plain = plain.assign(row=keys)
    rows = [k for k in ROW_ORDER if k in set(keys)]
    rows += sorted(set(keys) - set(ROW_ORDER) - {"icl", "vim"}) + [
        k for k in ("icl", "vim") if k in set(keys)
    ]
    pub = (published or {}).get("safety") or {}
    judges = {
        (b, m): sorted(
            ov.loc[(ov["benchmark"] == b) & (ov["metric"] == m), "judge"].astype(str).unique()
        )
        for b, m in SAFETY_METRICS
    }
    cols: list[str] = ["Model type", "Subjects"]
    spec: list[tuple[str, str, str | None]] = []  # (benchmark, metric, judge or None=published)
    for b, m in SAFETY_METRICS:
        for j in judges[(b, m)]:
            cols.append(f"{bench_name(b)} {metric_name(m)} ({j})")
            spec.append((b, m, j))
        if judges[(b, m)] and any(m in (pub.get(k) or {}) for k in rows):
            cols.append(f"{metric_name(m)}, published")
            spec.append((b, m, None))
    t = Table("safety", cols)
    t.caption = "Overall metrics per model type: unweighted mean over the type's subjects"
    val = {
        (r.model_id, r.condition, r.benchmark, r.metric, str(r.judge)): r.value
        for r in ov.itertuples(index=False)
    }
    for key in rows:
        members = plain[plain["row"] == key]
        cells = [_row_name(key), str(len(members))]
        for b, m, j in spec:
            if j is None:
                cells.append(fmt_num((pub.get(key) or {}).get(m)))
                continue
            xs = [
                val.get((mid, c, b, m, j))
                for mid, c in zip(members["model_id"], members["condition"], strict=True)
            ]
            cells.append(fmt_num(_nanmean(xs)))
        t.add(cells)
    return t


def nmse_table(per_subject: pd.DataFrame, published: Mapping[str, Any] | None) -> Table | None:
    """PVQ-40 alignment: mean NMSE (and s.e.) per model type, beside the published NMSE."""
    if per_subject.empty:
        return None
    pub = (published or {}).get("nmse") or {}
    cols = ["Model type", "Subjects", "Targets", "Mean NMSE", "s.e.", "Answers parsed",
            "Unparsed", "Failed"]  # fmt: skip
    if published:
        cols.append("Published NMSE")
    t = Table("nmse", cols)
    t.caption = (
        "NMSE = mean over the 10 values of ((answer - 1)/5 - (target - 1)/5)²; vanilla is "
        "scored against every target distribution (how far the untuned model is from them)"
    )
    for mtype in [x for x in ("vim", "icl", "vanilla") if x in set(per_subject["model_type"])]:
        part = per_subject[per_subject["model_type"] == mtype]
        x = part["nmse"].dropna().to_numpy(dtype=float)
        se = float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan
        # Vanilla has one row per target: count its answers once.
        once = part.drop_duplicates(["model_id", "condition"])
        cells = [
            ROW_NAMES.get(mtype, mtype),
            str(len(once)),
            str(len(part)),
            fmt_num(float(np.mean(x)) if len(x) else math.nan, 4),
            fmt_num(se, 4),
            fmt_int(once["n_parsed"].sum()),
            fmt_int(once["n_unparsed"].sum()),
            fmt_int(once["n_failed"].sum()),
        ]
        if published:
            cells.append(fmt_num(pub.get(mtype), 4))
        t.add(cells)
    return t


def _signed(x: Any) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f" ({x:+.2f})"


def mitigation_table(mit: pd.DataFrame, published: Mapping[str, Any] | None) -> Table | None:
    """A7: HEx-PHI harm score per pair and prompt setting, change versus input only."""
    if mit.empty:
        return None
    pub = {(p["value"], p["category"]): p for p in ((published or {}).get("mitigation") or [])}
    types = [x for x in ("vanilla", "vim") if x in set(mit["model_type"])]
    cols = ["Category (value)", "Setting"]
    for mt in types:
        cols += [f"{ROW_NAMES.get(mt, mt)} (Δ)", f"{mt} models"]
    if pub:
        cols += [f"Published {ROW_NAMES.get(mt, mt)} (Δ)" for mt in types]
    t = Table("mitigation", cols)
    t.caption = "HEx-PHI harm score (1-5), change versus input only in brackets (negative = safer)"
    for (value, cat), part in mit.groupby(["value", "category"], sort=False):
        t.group(f"{cat} ({value})")
        p = pub.get((value, cat))
        for setting, name in SETTING_NAMES.items():
            cells = [f"{cat} ({value})", name]
            for mt in types:
                r = part[(part["model_type"] == mt) & (part["setting"] == setting)]
                if r.empty:
                    cells += ["–", "0"]
                    continue
                r0 = r.iloc[0]
                d = None if setting == "input_only" else r0["delta"]
                cells += [fmt_num(r0["mean_score"], 2) + _signed(d), str(int(r0["n_models"]))]
            if pub:
                for mt in types:
                    if p is None:
                        cells.append("–")
                        continue
                    v = (p.get(mt) or {}).get(setting)
                    b = (p.get(mt) or {}).get("input_only")
                    d = None if setting == "input_only" or v is None else v - b
                    cells.append(fmt_num(v, 2) + _signed(d))
            t.add(cells)
    return t
