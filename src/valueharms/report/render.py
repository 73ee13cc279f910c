"""Render Study A's and/or Study B's results as one self-contained HTML report
(METHODS A5–A7, B3; Study B's section is valueharms.report.studyb).

Every number is pre-formatted here (3 decimals, NaN as "–") and handed to a Jinja2
template with autoescaping on; plots are embedded as base64 PNGs drawn with Agg.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from valueharms import VALUES, benchmarks
from valueharms.io import write_text

DASH = "–"
OVERALL = "all"
# Study A's benchmarks as registered (valueharms.benchmarks), in the published order.
_SAFETY = [b for b in benchmarks.all_benchmarks() if b.role == "safety"]
BENCH_ORDER: tuple[str, ...] = tuple(b.name for b in _SAFETY)
BENCH_NAMES: dict[str, str] = {b.name: b.label for b in _SAFETY}
METRIC_ORDER: dict[str, tuple[str, ...]] = {b.name: b.headline for b in _SAFETY}
METRIC_NAMES: dict[str, str] = {k: v for b in _SAFETY for k, v in b.metric_labels.items()}
TYPE_ORDER: tuple[str, ...] = ("vanilla", "icl", "vim", "benign")
CATEGORY_BENCHMARKS: tuple[str, ...] = tuple(b.name for b in _SAFETY if b.by_category)

ColKey = tuple[str, str, str]  # (benchmark, metric, judge)
SubjKey = tuple[str, str]  # (model_id, condition)


# ---------------------------------------------------------------- formatting helpers


def _isnan(x: Any) -> bool:
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def fmt_num(x: Any, digits: int = 3) -> str:
    """Float to `digits` decimals; integers as is; NaN/None as a dash."""
    if x is None or _isnan(x):
        return DASH
    if isinstance(x, bool | np.bool_):
        return str(bool(x))
    if isinstance(x, int | np.integer):
        return str(int(x))
    if isinstance(x, float | np.floating):
        return f"{float(x):.{digits}f}"
    return str(x)


def fmt_int(x: Any) -> str:
    return DASH if x is None or _isnan(x) else str(int(x))


def fmt_id(x: Any) -> str:
    """Identifiers: integral floats (ints upcast by NaN) without decimals."""
    if x is None or _isnan(x):
        return DASH
    if isinstance(x, float | np.floating) and float(x).is_integer():
        return str(int(x))
    return str(x)


def fmt_p(p: Any) -> str:
    """p-values: 3 decimals, scientific below 0.001 so tiny values stay readable."""
    if p is None or _isnan(p):
        return DASH
    p = float(p)
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def stars(p: Any) -> str:
    if p is None or _isnan(p):
        return ""
    p = float(p)
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def bench_name(b: str) -> str:
    return BENCH_NAMES.get(b, b)


def metric_name(m: str) -> str:
    return METRIC_NAMES.get(m, m)


def _natural_key(s: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(s))]


def _ordered(items: Iterable[str], order: Sequence[str]) -> list[str]:
    """Known names in `order` first, then the rest in natural order."""
    items = list(dict.fromkeys(items))
    known = [x for x in dict.fromkeys(order) if x in items]
    return known + sorted((x for x in items if x not in order), key=_natural_key)


# ---------------------------------------------------------------- table structure


@dataclass
class Table:
    """A pre-formatted table: `rows` hold either cells or a group heading."""

    id: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    groups: list[tuple[str, int]] | None = None  # optional top header row (name, colspan)
    caption: str = ""

    def __post_init__(self) -> None:
        self.id = re.sub(r"[^A-Za-z0-9_-]+", "_", self.id)

    def add(self, cells: list[str], cls: str = "") -> None:
        self.rows.append({"cells": cells, "cls": cls})

    def group(self, name: str) -> None:
        self.rows.append({"group": name, "span": len(self.columns)})


# ---------------------------------------------------------------- data preparation


ICL_PREFIX = "icl-"


def _setting(condition: Any) -> str:
    """The prompt setting of a condition: an ICL profile counts as the plain setting."""
    c = str(condition)
    return "plain" if c.startswith(ICL_PREFIX) else c


def _subjects(subjects: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Subjects in display order (model type, then input order); add unlisted ones."""
    subj = subjects.loc[:, ["model_id", "condition", "model_type", "label"]].copy()
    subj = subj.astype({c: "object" for c in subj.columns})
    known = set(zip(subj["model_id"], subj["condition"], strict=True))
    extra = metrics.loc[:, ["model_id", "condition"]].drop_duplicates()
    extra = [k for k in zip(extra["model_id"], extra["condition"], strict=True) if k not in known]
    if extra:
        add = pd.DataFrame(
            {
                "model_id": [k[0] for k in extra],
                "condition": [k[1] for k in extra],
                "model_type": "unlisted",
                "label": [f"{k[0]} [{k[1]}]" for k in extra],
            }
        )
        subj = pd.concat([subj, add], ignore_index=True)
    subj["label"] = subj["label"].where(subj["label"].notna(), subj["model_id"])
    subj["setting"] = subj["condition"].map(_setting)
    types = _ordered(subj["model_type"].astype(str), TYPE_ORDER)
    subj["_t"] = subj["model_type"].astype(str).map({t: i for i, t in enumerate(types)})
    subj["_p"] = range(len(subj))
    return subj.sort_values(["_t", "_p"], kind="stable").reset_index(drop=True)


def _overall_values(metrics: pd.DataFrame) -> tuple[list[ColKey], dict[SubjKey, dict]]:
    """Overall (category == all) values keyed by subject, and column keys in display order."""
    ov = metrics[metrics["category"].astype(str) == OVERALL]
    vals: dict[SubjKey, dict[ColKey, float]] = {}
    for r in ov.itertuples(index=False):
        vals.setdefault((r.model_id, r.condition), {})[(r.benchmark, r.metric, r.judge)] = r.value
    return _order_cols({k for d in vals.values() for k in d}), vals


def _order_cols(keys: Iterable[ColKey]) -> list[ColKey]:
    keys = set(keys)
    out: list[ColKey] = []
    for b in _ordered((k[0] for k in keys), BENCH_ORDER):
        bk = [k for k in keys if k[0] == b]
        for m in _ordered((k[1] for k in bk), METRIC_ORDER.get(b, ())):
            out += sorted((k for k in bk if k[1] == m), key=lambda k: str(k[2]))
    return out


def _col_header(k: ColKey) -> str:
    return f"{metric_name(k[1])} ({k[2]})"


def _bench_groups(cols: list[ColKey], lead: int) -> list[tuple[str, int]]:
    groups: list[tuple[str, int]] = [("", lead)] if lead else []
    for b in dict.fromkeys(k[0] for k in cols):
        groups.append((bench_name(b), sum(k[0] == b for k in cols)))
    return groups


def _type_groups(subj: pd.DataFrame, by_condition: bool) -> list[tuple[tuple[str, ...], list]]:
    keys = ["model_type", "setting"] if by_condition else ["model_type"]
    out = []
    for g, df in subj.groupby(keys, sort=False):
        g = g if isinstance(g, tuple) else (g,)
        out.append(
            (tuple(str(x) for x in g), list(zip(df["model_id"], df["condition"], strict=True)))
        )
    return out


def _nanmean(xs: list[Any]) -> float:
    xs = [float(x) for x in xs if x is not None and not _isnan(x)]
    return float(np.mean(xs)) if xs else math.nan


def _counts(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per subject, benchmark and judge: n, n_failed, n_unparsed.

    Each metric row repeats the same generation-level counts, so take the max over the
    overall rows (or over all rows when a benchmark has no overall row) instead of summing.
    """
    keys = ["benchmark", "judge", "model_id", "condition"]
    if metrics.empty:
        return pd.DataFrame(columns=[*keys, "n", "n_failed", "n_unparsed"])
    m = metrics.copy()
    m["_ov"] = m["category"].astype(str) == OVERALL
    has_ov = m.groupby(keys, dropna=False)["_ov"].transform("any")
    m = m[m["_ov"] | ~has_ov]
    agg = m.groupby(keys, dropna=False)[["n", "n_failed", "n_unparsed"]].max()
    return agg.reset_index()


# ---------------------------------------------------------------- tables


FEW = "†"  # marks a number built on fewer than report.min_scored_share of its items


def _few(counts: pd.DataFrame, share: float) -> set[tuple[str, str, str]]:
    """(benchmark, model_id, condition) whose scored items (n minus failed and unparsed)
    are fewer than `share` of n: their numbers rest on what survived, so they are marked."""
    if counts.empty:
        return set()
    scored = counts["n"] - counts["n_failed"].fillna(0) - counts["n_unparsed"].fillna(0)
    few = counts[(counts["n"] > 0) & (scored < share * counts["n"])]
    return set(zip(few["benchmark"], few["model_id"], few["condition"], strict=True))


def _marked(x: float | None, few: bool) -> str:
    return fmt_num(x) + (FEW if few else "")


def _headline(
    subj: pd.DataFrame, cols: list[ColKey], vals: dict, by_condition: bool, few: set = frozenset()
) -> tuple[Table, list[tuple[str, list[float]]]]:
    lead = ["Model type", *(["Condition"] if by_condition else []), "Subjects"]
    t = Table("headline", [*lead, *(_col_header(k) for k in cols)])
    t.groups = _bench_groups(cols, len(lead))
    means: list[tuple[str, list[float]]] = []
    for g, keys in _type_groups(subj, by_condition):
        row = [_nanmean([vals.get(s, {}).get(k) for s in keys]) for k in cols]
        means.append((" / ".join(g), row))
        marks = [any((k[0], *s) in few for s in keys) for k in cols]
        t.add([*g, str(len(keys)), *(_marked(x, m) for x, m in zip(row, marks, strict=True))])
    return t, means


def _subject_lead(r: Any, by_condition: bool) -> list[str]:
    return [str(r.label), *([str(r.condition)] if by_condition else [])]


def _benchmark_tables(
    subj: pd.DataFrame,
    cols: list[ColKey],
    vals: dict,
    counts: pd.DataFrame,
    by_condition: bool,
    few: set = frozenset(),
) -> list[tuple[str, Table]]:
    out = []
    benches = _ordered(
        list(dict.fromkeys([k[0] for k in cols] + list(counts["benchmark"]))), BENCH_ORDER
    )
    for b in benches:
        bcols = [k for k in cols if k[0] == b]
        c = counts[counts["benchmark"] == b].groupby(["model_id", "condition"])
        c = c[["n", "n_failed", "n_unparsed"]].max()
        lead = ["Subject", *(["Condition"] if by_condition else [])]
        t = Table(
            f"bench-{b}", [*lead, *(_col_header(k) for k in bcols), "n", "n_failed", "n_unparsed"]
        )
        last = None
        for r in subj.itertuples(index=False):
            if r.model_type != last:
                t.group(str(r.model_type))
                last = r.model_type
            sk = (r.model_id, r.condition)
            cnt = c.loc[sk] if sk in c.index else None
            marked = (b, *sk) in few
            t.add(
                [
                    *_subject_lead(r, by_condition),
                    *(_marked(vals.get(sk, {}).get(k), marked) for k in bcols),
                    *(
                        fmt_int(None if cnt is None else cnt[x])
                        for x in ("n", "n_failed", "n_unparsed")
                    ),
                ],
                cls="fail" if cnt is not None and (cnt["n_failed"] or 0) > 0 else "",
            )
        out.append((bench_name(b), t))
    return out


def _category_tables(subj: pd.DataFrame, metrics: pd.DataFrame, by_condition: bool) -> list[Table]:
    out = []
    cat = metrics[metrics["category"].astype(str) != OVERALL]
    for b in _ordered(cat["benchmark"], CATEGORY_BENCHMARKS + BENCH_ORDER):
        cb = cat[cat["benchmark"] == b]
        for m in _ordered(cb["metric"], METRIC_ORDER.get(b, ())):
            cm = cb[cb["metric"] == m]
            for j in sorted(cm["judge"].astype(str).unique()):
                cj = cm[cm["judge"].astype(str) == j]
                cats = sorted(cj["category"].astype(str).unique(), key=_natural_key)
                v = {(r.model_id, r.condition, str(r.category)): r.value for r in cj.itertuples()}
                lead = ["Subject", *(["Condition"] if by_condition else [])]
                t = Table(f"cat-{b}-{m}-{j}", [*lead, *cats])
                t.caption = f"{bench_name(b)}: {metric_name(m)} by category (judge: {j})"
                last = None
                for r in subj.itertuples(index=False):
                    if r.model_type != last:
                        t.group(str(r.model_type))
                        last = r.model_type
                    cells = [fmt_num(v.get((r.model_id, r.condition, c))) for c in cats]
                    t.add([*_subject_lead(r, by_condition), *cells])
                out.append(t)
    return out


def _comparisons_table(comp: pd.DataFrame, published_p: float | None = None) -> Table:
    cols = [
        "Benchmark", "Metric", "Group", "Baseline", "n group", "n baseline", "Mean group",
        "Mean baseline", "Diff", "U", "p (MW)", "p (perm.)", "Rank-biserial", "p (Holm)", "",
    ]  # fmt: skip
    if published_p is not None:
        cols.append("Published p")
    t = Table("comparisons", cols)
    for r in comp.itertuples(index=False):
        t.add(
            [
                bench_name(str(r.benchmark)),
                metric_name(str(r.metric)),
                str(r.group),
                str(r.baseline),
                fmt_int(r.n_group),
                fmt_int(r.n_baseline),
                fmt_num(r.mean_group),
                fmt_num(r.mean_baseline),
                fmt_num(r.mean_diff),
                fmt_num(r.u_statistic, 1),
                fmt_p(r.p_mannwhitney),
                fmt_p(r.p_permutation),
                fmt_num(r.rank_biserial),
                fmt_p(r.p_holm),
                stars(r.p_holm),
                *([f"< {published_p:g}"] if published_p is not None else []),
            ]  # fmt: skip
        )
    return t


def _correlation_table(corr: pd.DataFrame) -> Table:
    sig = corr[corr["q_bh"] < 0.05].sort_values(["q_bh", "p_value"], kind="stable")
    t = Table("correlations", ["Value", "Benchmark", "Category", "n", "ρ", "p", "q (BH)", ""])
    for r in sig.itertuples(index=False):
        t.add(
            [
                str(r.value),
                bench_name(str(r.benchmark)),
                str(r.category),
                fmt_int(r.n),
                fmt_num(r.rho),
                fmt_p(r.p_value),
                fmt_p(r.q_bh),
                stars(r.q_bh),
            ]  # fmt: skip
        )
    return t


def _distributions_table(dist: pd.DataFrame) -> Table:
    vcols = [v for v in VALUES if v in dist.columns]
    lead = ["name", "kind", "anchor", "rank", "distance", "respondent_id"]
    lead = [c for c in lead if c in dist.columns]
    t = Table("distributions", [*lead, *vcols])
    for r in dist.to_dict("records"):
        cells = [
            fmt_num(r[c]) if c == "distance" else fmt_int(r[c]) if c == "rank" else fmt_id(r[c])
            for c in lead
        ]
        t.add([*cells, *(fmt_num(r[v]) for v in vcols)])
    return t


def _failures_table(counts: pd.DataFrame) -> Table:
    t = Table("failures", ["Benchmark", "Judge", "Subjects", "n", "n_failed", "n_unparsed"])
    tot = [0, 0, 0]
    grouped = counts.groupby(["benchmark", "judge"], dropna=False, sort=False)
    rows = {(str(b), str(j)): df for (b, j), df in grouped}
    for b in _ordered((k[0] for k in rows), BENCH_ORDER):
        for j in sorted(k[1] for k in rows if k[0] == b):
            df = rows[(b, j)]
            s = [int(df[c].fillna(0).sum()) for c in ("n", "n_failed", "n_unparsed")]
            tot = [a + x for a, x in zip(tot, s, strict=True)]
            t.add([bench_name(b), j, str(len(df)), *map(str, s)], cls="fail" if s[1] else "")
    n_subj = len(counts[["model_id", "condition"]].drop_duplicates())
    t.add(["Total", "", str(n_subj), *map(str, tot)], cls="total")
    return t


# ---------------------------------------------------------------- plots


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _bar_plot(cols: list[ColKey], means: list[tuple[str, list[float]]]) -> str:
    """Grouped bars: metrics on x, one bar per model type; rates and other scales apart."""
    fig = Figure(figsize=(max(6.0, 1.3 * len(cols) + 2), 3.8), layout="constrained")
    if not cols or not means:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no overall metrics", ha="center", va="center")
        ax.set_axis_off()
        return _png(fig)
    arr = np.array([m for _, m in means], dtype=float)  # types × metrics
    rate = [
        i
        for i in range(len(cols))
        if np.all(np.isnan(arr[:, i]) | ((arr[:, i] >= 0) & (arr[:, i] <= 1)))
    ]
    other = [i for i in range(len(cols)) if i not in rate]
    panels = [p for p in (rate, other) if p]
    axes = fig.subplots(1, len(panels), squeeze=False, width_ratios=[len(p) for p in panels])[0]
    width = 0.8 / len(means)
    for ax, idx in zip(axes, panels, strict=True):
        x = np.arange(len(idx))
        for ti, (name, _) in enumerate(means):
            ax.bar(
                x + (ti - (len(means) - 1) / 2) * width,
                arr[ti, idx],
                width,
                label=name,
            )
        ax.set_xticks(
            x, [f"{bench_name(cols[i][0])}\n{metric_name(cols[i][1])}" for i in idx], fontsize=7
        )
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_ylim(0, 1 if idx is rate else None)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("mean over subjects")
    if len(axes) > 1:
        axes[1].set_ylabel("mean over subjects (own scale)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, title="model type")
    return _png(fig)


def _heatmap(corr: pd.DataFrame) -> str | None:
    """ρ per value × category, * where q_BH < 0.05; grey where ρ is undefined (fewer than
    3 distributions, or a rate that is the same for every distribution)."""
    c = corr[corr["n"] >= 3]
    if c.empty:
        return None
    c = c.assign(
        col=[
            f"{bench_name(str(b))}: {k}" for b, k in zip(c["benchmark"], c["category"], strict=True)
        ]
    )
    rows = _ordered(c["value"].astype(str), VALUES)
    bcols = []
    for b in _ordered(c["benchmark"].astype(str), CATEGORY_BENCHMARKS + BENCH_ORDER):
        cb = c[c["benchmark"].astype(str) == b]
        bcols += sorted(dict.fromkeys(cb["col"]), key=_natural_key)
    rho = c.pivot_table(index="value", columns="col", values="rho", aggfunc="first").reindex(
        index=rows, columns=bcols
    )
    q = c.pivot_table(index="value", columns="col", values="q_bh", aggfunc="first").reindex(
        index=rows, columns=bcols
    )
    fig = Figure(figsize=(max(5.0, 0.32 * len(bcols) + 3), 0.35 * len(rows) + 2.2))
    ax = fig.add_subplot()
    ax.set_facecolor("0.85")  # NaN cells are left transparent over this grey
    im = ax.imshow(rho.to_numpy(dtype=float), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(bcols)), bcols, rotation=90, fontsize=6)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    for (i, j), qv in np.ndenumerate(q.to_numpy(dtype=float)):
        if qv < 0.05:
            ax.text(j, i, "*", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="Spearman ρ (* q_BH < 0.05; grey: undefined)", shrink=0.8)
    fig.tight_layout()
    return _png(fig)


# ---------------------------------------------------------------- provenance and notes


def _tree(x: Any) -> dict[str, Any]:
    """Nested provenance as a kind-tagged tree the template renders recursively."""
    if isinstance(x, Mapping):
        return {"kind": "dict", "items": [(str(k), _tree(v)) for k, v in x.items()]}
    if isinstance(x, list | tuple | set):
        return {"kind": "list", "items": [_tree(v) for v in x]}
    return {"kind": "scalar", "text": DASH if x is None or _isnan(x) else str(x)}


def _find(d: Any, key: str) -> Any:
    if isinstance(d, Mapping):
        for k, v in d.items():  # also matches dotted keys such as "bias_score.threshold_unit"
            if str(k).rsplit(".", 1)[-1] == key:
                return v
        for v in d.values():
            if (r := _find(v, key)) is not None:
                return r
    return None


def _notes(prov: Mapping[str, Any], study_a: bool = True) -> list[str]:
    notes: list[str] = []
    for key in ("notes", "settings_notes", "settings"):
        n = prov.get(key)
        if isinstance(n, str):
            notes.append(n)
        elif isinstance(n, Mapping):
            notes += [f"{k}: {v}" for k, v in n.items()]
        elif isinstance(n, list | tuple):
            notes += [str(x) for x in n]
    if not study_a:  # the rest explains Study A's numbers
        return notes
    unit = _find(prov, "threshold_unit")
    if unit == "fraction":
        notes.append(
            "Bias score: a bucket counts when the bootstrap upper bound of its negative-regard "
            "share exceeds 0.5 (threshold_unit = fraction; differs from Study A's code)."
        )
    else:
        state = "is" if unit == "percent" else "is not recorded; the pipeline default is"
        notes.append(
            f"Bias score: threshold_unit {state} 'percent', reproducing Study A's code, which "
            "compares 0.5 with a negative-regard percentage, so nearly every (axis, descriptor) "
            "bucket counts (hence the published ~94% figures)."
        )
    notes.append(
        "Each metric column names the judge that produced it; n_failed / n_unparsed are per "
        "subject and benchmark (repeated counts across metrics are not summed twice)."
    )
    notes.append("Headline values are unweighted means over the subjects of each model type.")
    return notes


# ---------------------------------------------------------------- entry point


REQUIRED: dict[str, tuple[str, ...]] = {
    "metrics": ("benchmark", "model_id", "condition", "judge", "metric", "category", "value", "n",
                "n_failed", "n_unparsed"),
    "subjects": ("model_id", "condition", "model_type", "label"),
    "comparisons": ("benchmark", "metric", "group", "baseline", "n_group", "n_baseline",
                    "mean_group", "mean_baseline", "mean_diff", "u_statistic", "p_mannwhitney",
                    "p_permutation", "rank_biserial", "p_holm"),
    "correlations": ("value", "benchmark", "category", "n", "rho", "p_value", "q_bh"),
}  # fmt: skip


def _check_columns(frames: Mapping[str, pd.DataFrame]) -> None:
    for name, cols in REQUIRED.items():
        missing = [c for c in cols if c not in frames[name].columns]
        if missing:
            raise ValueError(f"{name} lacks columns {missing}")


def _template() -> jinja2.Template:
    src = resources.files("valueharms.report").joinpath("templates/index.html").read_text("utf-8")
    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(src)


TITLES: dict[tuple[bool, bool], tuple[str, str]] = {
    (True, False): (
        "valueharms: Study A report",
        "valueharms: unintended harms of value-aligned LLMs (Study A)",
    ),
    (False, True): (
        "valueharms: Study B report",
        "valueharms: how value induction reshapes LLM behaviour (Study B)",
    ),
    (True, True): (
        "valueharms: Study A and Study B report",
        "valueharms: unintended harms of value-aligned LLMs (Study A) and how value induction "
        "reshapes LLM behaviour (Study B)",
    ),
}


@dataclass(frozen=True)
class StudyAData:
    """What Study A's sections are made of: the metrics, the subjects table, the stats
    stage's comparisons and correlations, the distributions (each may be empty), and for
    the findings the PVQ-40 NMSE per subject (`nmse`), the mitigation table
    (valueharms.mitigation) and the `published` figures (None: not this run's setup)."""

    metrics: pd.DataFrame
    subjects: pd.DataFrame
    comparisons: pd.DataFrame
    correlations: pd.DataFrame
    distributions: pd.DataFrame
    nmse: pd.DataFrame | None = None
    mitigation: pd.DataFrame | None = None
    published: Mapping[str, Any] | None = None
    protocol: list[dict[str, str]] | None = None  # valueharms.protocol.rows of this run
    failures: FailureData | None = None
    # The benchmarks' LoadReport dicts (benchmark_prompts' JSONs) for the Data table.
    load_reports: list[dict[str, Any]] | None = None
    # report.min_scored_share: numbers on a smaller share of their items scored are marked
    min_scored_share: float = 0.0
    # judges.agreement's table (valueharms.judge.agreement.AGREEMENT_SCHEMA); None: off
    agreement: pd.DataFrame | None = None


@dataclass(frozen=True)
class FailureData:
    """Failure counts beyond the metrics tables: the mitigation runs' metrics rows and
    failed/unparsed judgments by reason (valueharms.failures.reason_counts)."""

    mitigation: pd.DataFrame | None = None
    reasons: pd.DataFrame | None = None


def _reasons_table(reasons: pd.DataFrame | None) -> Table:
    t = Table("failure-reasons", ["Benchmark", "Judge", "Status", "Reason", "Rows"])
    if reasons is None or reasons.empty:
        return t
    keys = ["benchmark", "judge", "status", "reason"]
    agg = reasons.groupby(keys, dropna=False)["n"].sum().reset_index()
    agg = agg.sort_values(["benchmark", "judge", "n"], ascending=[True, True, False])
    for r in agg.itertuples():
        t.add([bench_name(str(r.benchmark)), str(r.judge), str(r.status), str(r.reason), str(r.n)])
    return t


def _protocol_table(rows: list[dict[str, str]]) -> Table:
    cols = ["Switch", "This run", "Behaviour used", "Public code", "Ours", "Public code file"]
    t = Table("protocol", cols)
    for r in rows:
        cells = [r["switch"], r["this run"], r["behaviour used"], r["public code"], r["ours"]]
        t.add([*cells, r["public code file"]], cls="" if r["behaviour used"] != "other" else "fail")
    return t


def _data_table(reports: list[dict[str, Any]]) -> Table:
    """One row per benchmark file: rows read, dropped and kept-but-suspect by reason, and
    the prompts the run uses (after subsampling). A row with drops or suspects is marked."""

    def why(counts: Mapping[str, int]) -> str:
        return "; ".join(f"{n:,} {reason}" for reason, n in counts.items()) or "0"

    cols = ["Benchmark", "File", "Rows in", "Dropped (why)", "Kept, flagged (why)", "Rows out"]
    t = Table("data", [*cols, "Prompts used"])
    order = {b: i for i, b in enumerate(BENCH_ORDER)}
    for r in sorted(reports, key=lambda r: (order.get(r["dataset"], len(order)), r["dataset"])):
        dropped, kept = r.get("dropped") or {}, r.get("kept") or {}
        t.add(
            [bench_name(r["dataset"]), str(r["path"]), f"{r['rows_in']:,}", why(dropped)]
            + [why(kept), f"{r['rows_out']:,}", fmt_int(r.get("prompts"))],
            cls="fail" if dropped or kept else "",
        )
    return t


def _agreement_table(agreement: pd.DataFrame | None) -> Table | None:
    """Judge agreement per benchmark: both judges, the pairs, Cohen's kappa (weighted or
    not) with its bootstrap interval, the share of identical verdicts and the rows left out
    (failed / unparsed) per judge. None when judges.agreement is off."""
    if agreement is None:
        return None
    levels = sorted(agreement["confidence"].unique()) if len(agreement) else [0.95]
    ci = f"{levels[0] * 100:g}% CI" if len(levels) == 1 else "CI"
    cols = ["Benchmark", "First judge", "Second judge", "Sampled", "Pairs", "κ", "Weights"]
    left = [f"Left out, {j} judge (failed / unparsed)" for j in ("first", "second")]
    cols += [ci, "Agreement", *left]
    t = Table("agreement", [*cols, "Note"])
    order = {b: i for i, b in enumerate(_ordered(agreement["benchmark"], BENCH_ORDER))}
    rows = agreement.sort_values("benchmark", key=lambda c: c.map(order), kind="stable")
    for r in rows.itertuples(index=False):
        defined = not _isnan(r.kappa)
        interval = f"[{fmt_num(r.ci_low)}, {fmt_num(r.ci_high)}]" if defined else DASH
        if len(levels) > 1 and defined:
            interval += f" ({r.confidence * 100:g}%)"
        t.add(
            [bench_name(str(r.benchmark)), str(r.first_judge), str(r.second_judge)]
            + [
                fmt_int(r.n_sampled),
                fmt_int(r.n_pairs),
                fmt_num(r.kappa) if defined else "undefined",
            ]
            + [str(r.weights), interval, DASH if _isnan(r.agreement) else f"{r.agreement:.1%}"]
            + [f"{r.first_failed} / {r.first_unparsed}", f"{r.second_failed} / {r.second_unparsed}"]
            + ["" if r.note is None or _isnan(r.note) else str(r.note)],
            cls="" if defined else "fail",
        )
    return t


def _with_mitigation(data: StudyAData) -> pd.DataFrame:
    extra = data.failures.mitigation if data.failures else None
    if extra is None or extra.empty:
        return data.metrics
    return pd.concat([data.metrics, extra], ignore_index=True)


def _study_a(data: StudyAData) -> dict[str, Any]:
    """The template context of Study A's sections."""
    from valueharms.report import findings

    _check_columns(
        {"metrics": data.metrics, "subjects": data.subjects, "comparisons": data.comparisons,
         "correlations": data.correlations}
    )  # fmt: skip
    # Mitigation runs have their own table; elsewhere they would read as extra subjects.
    metrics = data.metrics[~data.metrics["condition"].astype(str).str.startswith("mit-")]
    subj = _subjects(data.subjects, metrics)
    by_cond = subj["setting"].nunique() > 1
    cols, vals = _overall_values(metrics)
    counts = _counts(metrics)
    few = _few(counts, data.min_scored_share)
    headline, means = _headline(subj, cols, vals, by_cond, few)
    published, correlations = data.published, data.correlations
    return dict(
        headline=headline,
        benchmarks=_benchmark_tables(subj, cols, vals, counts, by_cond, few),
        few=dict(mark=FEW, share=data.min_scored_share, n=len(few)),
        categories=_category_tables(subj, metrics, by_cond),
        safety=findings.safety_table(metrics, subj, published),
        nmse=findings.nmse_table(data.nmse if data.nmse is not None else pd.DataFrame(), published),
        mitigation=findings.mitigation_table(
            data.mitigation if data.mitigation is not None else pd.DataFrame(), published
        ),
        published_source=(published or {}).get("source"),
        bar_png=_bar_plot(cols, means),
        heatmap_png=_heatmap(correlations),
        correlations=_correlation_table(correlations.dropna(subset=["rho"])),
        comparisons=_comparisons_table(
            data.comparisons, ((published or {}).get("comparisons") or {}).get("p_below")
        ),
        distributions=_distributions_table(data.distributions),
        # Every judged row counts, the mitigation runs' included (their rows are in no
        # metrics table: the mitigation stage writes them).
        failures=_failures_table(_counts(_with_mitigation(data))),
        failure_reasons=_reasons_table(data.failures.reasons if data.failures else None),
        protocol=_protocol_table(data.protocol or []),
        data=_data_table(data.load_reports or []),
        agreement=_agreement_table(data.agreement),
    )


def build_report(
    provenance: dict,
    out_html: str,
    study_a: StudyAData | None = None,
    studyb_tables: Mapping[str, pd.DataFrame] | None = None,
    studyb_info: Mapping[str, Any] | None = None,
) -> None:
    """Write the report as one self-contained HTML file at `out_html` (atomically).

    Study A's sections are shown when `study_a` is given. Study B's section is shown when
    `studyb_tables` (valueharms.metrics.studyb.TABLES name -> table) is given, with
    `studyb_info` (valueharms.report.studyb.section).
    """
    has_a, has_b = study_a is not None, studyb_tables is not None
    if not (has_a or has_b):
        raise ValueError("nothing to report: neither Study A metrics nor Study B tables given")
    ctx: dict[str, Any] = _study_a(study_a) if study_a is not None else {}
    if has_b:
        from valueharms.report import studyb

        ctx["studyb"] = studyb.section(studyb_tables, studyb_info)  # type: ignore[arg-type]
    summary = [
        f"{k}: {provenance[k]}" for k in ("config_hash", "git_sha", "created") if k in provenance
    ]
    title, heading = TITLES[(has_a, has_b)]
    html = _template().render(
        title=title,
        heading=heading,
        study_a=has_a,
        summary=" · ".join(summary),
        notes=_notes(provenance, has_a),
        provenance=_tree(provenance),
        **ctx,
    )
    write_text(out_html, html)
