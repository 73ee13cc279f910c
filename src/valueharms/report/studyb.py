"""Study B's section of the HTML report (METHODS B1, B3; seed 004 Tables 1, 2, 5-8, 10, 11,
Figures 2, 4-5, 7, 9-11), from the tables of valueharms.metrics.studyb.

Every number comes from those tables and is pre-formatted here; shares, rates and
frequencies are shown as percentages (saying so), QA deltas in lm-eval's units. Each table
names the judge behind its numbers; an empty table becomes a one-line note saying whether
its input is not configured in this run or has no data.

The paper's figures (valueharms.report.published_b) stand beside ours in columns marked
"published" where this run's setup is the one they were measured on; otherwise the table
says what differs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from valueharms.metrics.studyb import (
    ANTHRO_BENCH,
    EXPRESSION_BENCH,
    MAIN_METHOD,
    MATRIX_TOP_K,
    ORPO,
    PREFERENCE_TABLES,
    REFUSAL_BENCH,
    SETTINGS,
    SOURCE_TOP_K,
    TABLES,
    TOP_K,
    UNINDUCED,
    ab,
    main_rows,
)
from valueharms.report import published_b
from valueharms.report.render import DASH, Table, _isnan, _png, fmt_int, fmt_num

BENCH_NAMES = {
    EXPRESSION_BENCH: "IssueBench (value extractor)",
    REFUSAL_BENCH: "AdvBench (refusal judge)",
    ANTHRO_BENCH: "AnthroBench (anthropomorphism judge)",
}
SETTING_NAMES = {"none": "None", "prompt": "Prompt", "train": "Train", "both": "Both"}
KIND_ORDER = ("base", "post-trained")
KIND_NAMES = {"base": "Base", "post-trained": "Post-trained (SFT, Instruct)"}
QA_JUDGE = "lm-eval (no LLM judge)"


@dataclass
class FigureItem:
    """A figure of a block, with the table of its numbers, folded unless `open`."""

    summary: str
    png: str
    alt: str
    table: Table | None = None
    open: bool = False


@dataclass
class Block:
    """One subsection: a heading, a sentence, then a plot and/or table and any figures,
    or a note."""

    id: str
    heading: str
    text: str = ""
    table: Table | None = None
    png: str | None = None
    png_alt: str = ""
    note: str | None = None
    figures: list[FigureItem] = field(default_factory=list)
    # Lines under the table on the paper's figures: shown beside ours, or why not.
    published: list[str] = field(default_factory=list)


def pct(x: Any, digits: int = 1) -> str:
    """A fraction as a percentage, `digits` decimals; NaN/None as a dash."""
    return DASH if x is None or _isnan(x) else f"{100 * float(x):.{digits}f}"


def pp(x: Any, digits: int = 1) -> str:
    """A difference of fractions in signed percentage points."""
    return DASH if x is None or _isnan(x) else f"{100 * float(x):+.{digits}f}"


def fmt_beta(x: Any) -> str:
    return DASH if x is None or _isnan(x) else f"{float(x):g}"


def _beside(ours: Sequence[str], theirs: Sequence[str] | None) -> list[str]:
    """Our cells, each followed by its published one (none when `theirs` is None)."""
    if theirs is None:
        return list(ours)
    return [x for pair in zip(ours, theirs, strict=True) for x in pair]


def _order(items: Iterable[str], first: Sequence[str]) -> list[str]:
    """Distinct `items`: those in `first` in its order, then the rest as they come."""
    items = list(dict.fromkeys(items))
    return [x for x in first if x in set(items)] + [x for x in items if x not in set(first)]


class _Context:
    """What every block needs: the tables, judge names, ordering and the main setup."""

    def __init__(self, tables: Mapping[str, pd.DataFrame], info: Mapping[str, Any]) -> None:
        self.t = {k: tables.get(k, TABLES[k].empty_table().to_pandas()) for k in TABLES}
        # The preference data's tables are shown when they are given (all of them).
        self.pref = (
            {k: tables[k] for k in PREFERENCE_TABLES}
            if all(k in tables for k in PREFERENCE_TABLES)
            else None
        )
        self.info = info
        self.main_beta = info.get("main_beta")
        self.default_t = float(info.get("default_temperature", 0.7))
        self.values = [str(v) for v in info.get("values") or ()]
        self.models = [str(m) for m in info.get("models") or ()]
        self.judges = dict(info.get("judges") or info.get("judge_names") or {})
        self.pub = published_b.from_info(info)

    def published(self, key: str) -> Mapping[str, Any] | None:
        """The paper's table `key` when this run's setup matches it, else None."""
        return self.pub.table(key) if self.pub else None

    def published_rows(self, key: str, col: str) -> dict[str, Mapping[str, Any]] | None:
        """The matched published table's rows by `col`, else None."""
        return self.pub.rows_by(key, col) if self.published(key) else None

    def paper_model(self, model: str) -> str:
        """The paper's name of one of our models ("" when it is none of the paper's)."""
        return (self.pub.model_name(model) if self.pub else None) or ""

    def published_lines(self, key: str, *extra: str) -> list[str]:
        """The block's lines on the paper's table `key`; `extra` only when it is shown."""
        if self.pub is None:
            return []
        note = self.pub.note(key)
        lines = [note] if note else []
        return lines + [e for e in extra if e] if self.published(key) else lines

    def judge(self, bench: str) -> str:
        """The judge named in the config, else the judges recorded in the rows."""
        if self.judges.get(bench):
            return str(self.judges[bench])
        f = self.t["failures"]
        names = sorted(set(f.loc[f["benchmark"] == bench, "judge"].dropna().astype(str)))
        return "; ".join(names) if names else "unknown judge"

    def configured(self, bench: str) -> bool:
        listed = self.info.get("benchmarks")
        if listed is not None:
            return bench in listed
        # The failures table lists every planned subject, judged or not.
        return bench in set(self.t["failures"]["benchmark"])

    def missing(self, bench: str, what: str) -> str:
        if not self.configured(bench):
            return f"Not configured: no {bench} subjects in this run."
        return f"No data: {what}."

    def setup(self) -> str:
        beta = fmt_beta(self.main_beta)
        return f"DPO at β = {beta} (none/prompt: the vanilla model), temperature {self.default_t:g}"

    def model_order(self, models: Iterable[str]) -> list[str]:
        return _order(models, self.models)

    def value_order(self, values: Iterable[str]) -> list[str]:
        """info's value order, else the tables' own (config order, from build_tables)."""
        return _order(values, self.values)


# ---------------------------------------------------------------- preference data (B1)


def _table1(c: _Context, pref: Mapping[str, pd.DataFrame]) -> Block:
    s, v = pref["subset_sizes"], pref["verification_by_value"]
    b = Block(
        "sec-sb-subsets",
        "Value subsets of the preference data (Table 1)",
        "Pairs in which the extractor found the target value in exactly one response: only "
        "in the chosen one, only in the rejected one (flipped for training), and the subset's "
        "size; then the pairs the verifier read and its precision of the target value, in "
        "percent (Table 2 per value).",
    )
    b.published = c.published_lines("table_1")
    if s.empty:
        b.note = "No data: no value subsets."
        return b
    pub = c.published_rows("table_1", "value")
    sides = ["Chosen", "Rejected", "Total"]
    t = Table(
        "sb-subset-sizes",
        [
            "Value",
            *_beside(sides, None if pub is None else [f"{x}, published" for x in sides]),
            "Verified",
            "Verifier precision (%)",
        ],
    )
    if c.configured(EXPRESSION_BENCH):  # the IssueBench judge is the same extractor
        t.caption = f"Extractor: {c.judge(EXPRESSION_BENCH)}"
    by = v.set_index("value")
    for r in s.itertuples(index=False):
        ver = by.loc[r.value] if r.value in by.index else None
        counts = [fmt_int(r.chosen), fmt_int(r.rejected), fmt_int(r.total)]
        theirs = None
        if pub is not None:
            p = pub.get(str(r.value)) or {}
            theirs = [fmt_int(p.get(k)) for k in ("chosen", "rejected", "total")]
        t.add(
            [str(r.value), *_beside(counts, theirs)]
            + ([DASH, DASH] if ver is None else [fmt_int(ver["n_verified"]), pct(ver["precision"])])
        )
    b.table = t
    return b


def _table2(c: _Context, pref: Mapping[str, pd.DataFrame]) -> Block:
    s = pref["verification"]
    b = Block(
        "sec-sb-verification",
        "Verification of the value subsets (Table 2)",
        "Precision of the target value among the labels the closed-set verifier gives each "
        "subset's chosen response, averaged over values (pooled over pairs in the next "
        "column), in percent; random annotators pick k labels. Human annotators' rows come "
        "from the annotation sheets (python -m valueharms.studyb.annotation).",
    )
    pub = c.published("table_2")
    used: set[str] = set()
    if s.empty:
        b.note = "Not configured or no data: no verification in this run."
        b.published = c.published_lines("table_2")
        return b
    t = Table(
        "sb-verification",
        [
            "Annotator",
            "Labels per sample",
            *_beside(["Precision (%)"], None if pub is None else ["Precision, published (%)"]),
            "Pooled (%)",
            "Values",
            "Pairs",
        ],
    )
    for r in s.itertuples(index=False):
        theirs = None
        if pub is not None:
            row = _table2_row(c, pub, str(r.kind), r.labels_per_sample)
            theirs = [pct(row["precision"] if row else None, 2)]
            used |= {str(row["annotator"])} if row else set()
        t.add(
            [
                str(r.annotator),
                fmt_num(r.labels_per_sample, 1),
                *_beside([pct(r.precision, 2)], theirs),
                pct(r.micro, 2),
                fmt_int(r.n_values),
                fmt_int(r.n_verified) if r.kind == "verifier" else DASH,
            ]
        )
    b.table = t
    other = [
        f"{p['annotator']} {pct(p['precision'], 2)}"
        for p in (pub or {}).get("rows") or []
        if str(p["annotator"]) not in used
    ]
    b.published = c.published_lines(
        "table_2",
        f"The paper's rows without a counterpart here (percent): {', '.join(other)}."
        if other
        else "",
    )
    return b


def _table2_row(
    c: _Context, pub: Mapping[str, Any], kind: str, labels: Any
) -> Mapping[str, Any] | None:
    """The paper's Table 2 row beside one of ours: a random baseline by its k, our
    verifier by its Hugging Face id."""
    verifier = ((c.pub.run if c.pub else {}).get("verifier") or {}).get("hf_id")
    for p in pub.get("rows") or []:
        if kind == "random" == p["kind"] and not _isnan(labels) and int(labels) == int(p["k"]):
            return p
        if kind == "verifier" == p["kind"] and verifier and p.get("hf_id") == verifier:
            return p
    return None


def _sources_plot(s: pd.DataFrame, sources: list[str]) -> str:
    ncol = min(2, len(sources))
    nrow = math.ceil(len(sources) / ncol)
    n_bars = min(SOURCE_TOP_K, int(s["source"].value_counts().max()))
    fig = Figure(figsize=(5.2 * ncol, (0.22 * n_bars + 0.9) * nrow + 0.3), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    for ax, src in zip(axes, sources, strict=False):
        part = s[s["source"] == src].sort_values("rank").head(SOURCE_TOP_K)
        y = np.arange(len(part))
        ax.barh(y - 0.2, part["n_chosen"], height=0.4, color="#2e86c1", label="chosen")
        ax.barh(y + 0.2, part["n_rejected"], height=0.4, color="#c0392b", label="rejected")
        ax.set_yticks(y, list(part["value"].astype(str)), fontsize=7)
        ax.invert_yaxis()  # the most frequent value on top
        ax.set_title(f"Top {len(part)} values in {src}", fontsize=9)
        ax.set_xlabel("responses expressing the value", fontsize=8)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[len(sources) :]:
        ax.set_axis_off()
    return _png(fig)


def _sources(c: _Context, pref: Mapping[str, pd.DataFrame]) -> Block:
    s = pref["source_values"]
    b = Block(
        "sec-sb-sources",
        "Values in the chosen and rejected responses per source (Figure 9)",
        f"The {SOURCE_TOP_K} values extracted most often per preference source (both sides "
        "together): responses of each side expressing the value, and their share of the "
        "side's extracted responses in percent.",
    )
    if s.empty:
        b.note = "No data: no extracted preference responses."
        return b
    sources = list(dict.fromkeys(s["source"].astype(str)))
    t = Table("sb-source-values", ["Value", "Chosen", "Rejected", "Chosen (%)", "Rejected (%)"])
    if c.configured(EXPRESSION_BENCH):
        t.caption = f"Extractor: {c.judge(EXPRESSION_BENCH)}"
    for src in sources:
        part = s[s["source"] == src].sort_values("rank").head(SOURCE_TOP_K)
        n_c, n_r = part["chosen_extracted"].iat[0], part["rejected_extracted"].iat[0]
        t.group(f"{src} ({n_c} chosen, {n_r} rejected responses extracted)")
        for r in part.itertuples(index=False):
            t.add(
                [
                    str(r.value),
                    fmt_int(r.n_chosen),
                    fmt_int(r.n_rejected),
                    pct(r.share_chosen),
                    pct(r.share_rejected),
                ]
            )
    b.table = t
    b.png = _sources_plot(s, sources)
    b.png_alt = "Chosen and rejected values per preference source"
    return b


# ---------------------------------------------------------------- value expression


def _table5(c: _Context) -> Block:
    s = c.t["expression_summary"]
    b = Block(
        "sec-sb-expression",
        "Target-value expression by model and setting (Table 5)",
        "Share of IssueBench responses in which the target value is expressed, mean ± s.e. "
        f"over the target values, in percent; {c.setup()}.",
    )
    b.published = c.published_lines(
        "table_5",
        "The paper prints each standard error as a fraction (“27.4 ± .06”); shown here in "
        "percentage points (± 6), to the paper's precision.",
        _contradiction(c),
    )
    if s.empty:
        b.note = c.missing(EXPRESSION_BENCH, "no extracted IssueBench responses")
        return b
    settings = [x for x in SETTINGS if x in set(s["setting"])]
    pub = c.published_rows("table_5", "model")
    names = [f"{SETTING_NAMES[x]} (%)" for x in settings]
    theirs = None if pub is None else [f"{SETTING_NAMES[x]}, published (%)" for x in settings]
    t = Table("sb-expression-summary", ["Model", "Kind", *_beside(names, theirs), "Values (k)"])
    t.caption = f"Judge: {c.judge(EXPRESSION_BENCH)}"
    for m in c.model_order(s["model"].astype(str)):
        part = s[s["model"] == m].set_index("setting")
        cells = [m, str(part["kind"].iat[0])]
        ours = [
            f"{pct(part.at[x, 'mean'])} ± {pct(part.at[x, 'se'])}" if x in part.index else DASH
            for x in settings
        ]
        paper = None
        if pub is not None:
            p = pub.get(c.paper_model(m))
            paper = [
                f"{pct(p[x]['mean'])} ± {pct(p[x]['se'], 0)}" if p and x in p else DASH
                for x in settings
            ]
        cells += _beside(ours, paper)
        cells.append("/".join(str(k) for k in sorted(set(part["n_values"]))))
        t.add(cells)
    b.table = t
    return b


def _contradiction(c: _Context) -> str:
    """The note on the paper's Tables 5 and 6 disagreeing (docs/study_b.md), with our two
    means of the same shares; empty unless one of them is shown."""
    if c.pub is None or not (c.published("table_5") or c.published("table_6")):
        return ""
    beta = float(c.pub.data["setup"]["main_beta"])  # Table 5's beta
    if c.main_beta is None or not math.isclose(float(c.main_beta), beta):
        return ""  # our Table 5 is at another beta: no like-for-like means
    t5 = published_b.table5_both_mean(c.pub.data)
    t6 = published_b.table6_mean(c.pub.data, beta)
    s5, s6 = c.t["expression_summary"], c.t["expression_by_beta"]
    ours5 = published_b.mean(list(s5.loc[s5["setting"] == "both", "mean"].astype(float)))
    at = s6[np.isclose(s6["beta"].to_numpy(float), beta)] if len(s6) else s6
    ours6 = published_b.mean(list(at["share"].astype(float)))
    return (
        f"The paper contradicts itself: its Table 5 Both column averages {pct(t5, 2)}% over "
        f"the models, its Table 6 β = {fmt_beta(beta)} column {pct(t6, 2)}% over the "
        "values, though both are means of the same (model, value) shares. Ours are means of "
        f"the same shares too ({pct(ours5, 2)}% and {pct(ours6, 2)}% here, equal when every "
        "share is defined), so they can agree with at most one of the two "
        "(docs/study_b.md, “Published figures”)."
    )


def _table6(c: _Context) -> Block:
    s = c.t["expression_by_beta"]
    b = Block(
        "sec-sb-expression-beta",
        "Target-value expression by value and β (Table 6)",
        "Both setting, DPO, temperature "
        f"{c.default_t:g}: share of responses expressing the target value, mean over "
        "models, in percent.",
    )
    b.published = c.published_lines("table_6", _contradiction(c))
    if s.empty:
        b.note = c.missing(
            EXPRESSION_BENCH, "no both-setting DPO subjects with extracted responses"
        )
        return b
    betas = sorted(set(s["beta"]))
    pub, pt = c.published_rows("table_6", "value"), c.published("table_6") or {}
    # the published column of each of our betas (None: the paper has no such beta)
    at = {
        x: next((i for i, y in enumerate(pt.get("betas") or []) if math.isclose(x, y)), None)
        for x in betas
    }
    cols = []
    for x in betas:
        cols.append(f"β = {fmt_beta(x)}")
        if pub is not None and at[x] is not None:
            cols.append(f"β = {fmt_beta(x)}, published")
    t = Table("sb-expression-by-beta", ["Value", *cols, "Models"])
    t.caption = f"Judge: {c.judge(EXPRESSION_BENCH)}"
    for v in c.value_order(s["value"].astype(str)):
        part = s[s["value"] == v].set_index("beta")
        cells = []
        for x in betas:
            cells.append(pct(part.at[x, "share"], 2) if x in part.index else DASH)
            if pub is not None and at[x] is not None:
                p = pub.get(v)
                cells.append(pct(p["shares"][at[x]], 2) if p else DASH)
        t.add([v, *cells, str(int(part["n_models"].max()))])
    b.table = t
    return b


def _table7(c: _Context) -> Block:
    s = c.t["top_values"]
    b = Block(
        "sec-sb-top-values",
        "Most expressed values per induced value (Table 7)",
        f"Top {TOP_K} values expressed in the pooled "
        f"both-setting responses of each model kind ({c.setup()}); share of responses in "
        "percent in brackets.",
    )
    b.published = c.published_lines("table_7")
    if s.empty:
        b.note = c.missing(EXPRESSION_BENCH, "no both-setting subjects with extracted responses")
        return b
    kinds = [k for k in KIND_ORDER if k in set(s["kind"])]
    kinds += sorted(set(s["kind"].astype(str)) - set(kinds))
    pub = c.published_rows("table_7", "value")
    cols = []
    for k in kinds:
        cols.append(KIND_NAMES.get(k, k))
        if pub is not None and k in KIND_ORDER:
            cols.append(f"{KIND_NAMES[k]}, published")
    t = Table("sb-top-values", ["Induced value", *cols])
    t.caption = f"Judge: {c.judge(EXPRESSION_BENCH)}"
    for v in c.value_order(s["value"].astype(str)):
        cells = []
        for k in kinds:
            part = s[(s["value"] == v) & (s["kind"] == k)].sort_values("rank")
            top = [f"{r.expressed} ({pct(r.share)})" for r in part.itertuples()]
            cells.append(", ".join(top) if top else DASH)
            if pub is not None and k in KIND_ORDER:
                cells.append(", ".join((pub.get(v) or {}).get(k) or []) or DASH)
        t.add([v, *cells])
    b.table = t
    return b


def _diversity_plot(main: pd.DataFrame, models: list[str], settings: list[str]) -> str:
    fig = Figure(figsize=(max(5.0, 0.9 * len(models) * len(settings) / 2 + 2), 3.4))
    ax = fig.add_subplot()
    width = 0.8 / len(settings)
    for i, x in enumerate(settings):
        part = main[main["setting"] == x].set_index("model").reindex(models)
        pos = np.arange(len(models)) + (i - (len(settings) - 1) / 2) * width
        ax.bar(pos, part["mean_unique"], width, yerr=part["se"].fillna(0), label=SETTING_NAMES[x])
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("distinct values expressed")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _diversity(c: _Context) -> Block:
    s = c.t["diversity"]
    b = Block(
        "sec-sb-diversity",
        "Value diversity by model and setting (Figure 7, App. D)",
        "Number of distinct values expressed in all of a subject's IssueBench responses, mean "
        f"± s.e. over the target values; {c.setup()}. The count grows with the number of "
        "responses (last column: mean extracted responses per subject).",
    )
    beta = float(c.main_beta) if c.main_beta is not None else math.nan
    main = main_rows(s, beta, c.default_t)
    if main.empty:
        b.note = c.missing(EXPRESSION_BENCH, "no extracted IssueBench responses")
        return b
    settings = [x for x in SETTINGS if x in set(main["setting"])]
    models = c.model_order(main["model"].astype(str))
    t = Table(
        "sb-diversity",
        ["Model", "Kind", *(SETTING_NAMES[x] for x in settings), "Responses per subject"],
    )
    t.caption = f"Judge: {c.judge(EXPRESSION_BENCH)}"
    for m in models:
        part = main[main["model"] == m].set_index("setting")
        cells = [
            f"{fmt_num(part.at[x, 'mean_unique'], 1)} ± {fmt_num(part.at[x, 'se'], 1)}"
            if x in part.index
            else DASH
            for x in settings
        ]
        t.add([m, str(part["kind"].iat[0]), *cells, fmt_num(part["mean_n"].mean(), 1)])
    b.table = t
    b.png = _diversity_plot(main, models, settings)
    b.png_alt = "Mean number of distinct values expressed per model and setting"
    return b


def _run_label(setting: str, beta: float) -> str:
    name = SETTING_NAMES.get(setting, setting)
    return name if setting in UNINDUCED else f"{name} (β {fmt_beta(beta)})"


def _run_matrix(c: _Context, vm: pd.DataFrame, e: pd.DataFrame, run: tuple[str, float]) -> Any:
    """One (setting, beta) of a model: expressed value x target value shares, and the
    columns without extracted responses (n = 0: undefined, not 0)."""
    setting, beta = run

    def pick(d: pd.DataFrame) -> pd.DataFrame:
        d = d[d["setting"] == setting]
        return d if setting in UNINDUCED else d[np.isclose(d["beta"].to_numpy(float), beta)]

    subj, rows = pick(e), pick(vm)
    if setting == "none":  # the same vanilla responses for every target value
        subj = subj.assign(value="vanilla").drop_duplicates("value")
        rows = rows.assign(value="vanilla")
    cols = c.value_order(subj["value"].astype(str))
    mat = rows.pivot_table(index="expressed", columns="value", values="share", aggfunc="first")
    dead = set(subj.loc[subj["n"] == 0, "value"].astype(str))
    return mat.reindex(columns=cols), dead


def _matrix_plot(full: pd.DataFrame, labels: list[str], induced: set[str], title: str) -> str:
    widths = [full[x].shape[1] for x in labels]
    n_cols = sum(widths)
    fig = Figure(
        figsize=(min(3.2 + 0.24 * n_cols + 0.35 * len(labels), 40), 1.8 + 0.19 * len(full)),
        layout="constrained",
    )
    axes = fig.subplots(1, len(labels), squeeze=False, sharey=True, width_ratios=widths)[0]
    norm = PowerNorm(0.5, vmin=0.0, vmax=1.0)  # spreads the many small shares
    im = None
    for ax, lab in zip(axes, labels, strict=True):
        arr = full[lab].to_numpy(float)
        ax.set_facecolor("0.85")  # a column without responses stays grey
        im = ax.imshow(arr, cmap="Blues", norm=norm, aspect="auto")
        ax.set_xticks(range(arr.shape[1]), list(full[lab].columns), rotation=90, fontsize=6)
        ax.set_title(lab, fontsize=8)
        if n_cols <= 24 and len(full) <= MATRIX_TOP_K:
            for (i, j), x in np.ndenumerate(arr):
                if np.isfinite(x) and x > 0:
                    colour = "white" if x > 0.5 else "black"
                    ax.text(
                        j, i, f"{100 * x:.0f}", ha="center", va="center", fontsize=5, color=colour
                    )
    axes[0].set_yticks(range(len(full)), list(full.index), fontsize=6)
    for tick in axes[0].get_yticklabels():  # induced values on grey, as in Figure 2
        if tick.get_text() in induced:
            tick.set_bbox({"facecolor": "0.8", "edgecolor": "none", "pad": 1})
    ticks = [0, 0.05, 0.1, 0.25, 0.5, 1.0]
    bar = fig.colorbar(im, ax=list(axes), shrink=0.8, ticks=ticks)
    bar.ax.set_yticklabels([f"{100 * x:g}" for x in ticks], fontsize=6)
    bar.set_label("responses expressing the value (%)", fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def _matrix_figure(
    c: _Context,
    model: str,
    runs: list[tuple[str, float]],
    frames: tuple[pd.DataFrame, ...],
    table_id: str,
) -> FigureItem | None:
    """One model's heat-map over `runs`: the MATRIX_TOP_K values most expressed on average
    over its columns, and the table of those numbers."""
    parts = {_run_label(*r): _run_matrix(c, *frames, r) for r in runs}
    parts = {k: v for k, v in parts.items() if v[0].shape[1]}
    if not parts:
        return None
    full = pd.concat({k: m for k, (m, _) in parts.items()}, axis=1).fillna(0.0)
    for k, (_, dead) in parts.items():
        for v in dead:
            full[(k, v)] = np.nan
    if full.empty:
        return None
    score = full.mean(axis=1, skipna=True).rename("score").to_frame()
    score["name"] = score.index.astype(str)
    order = score.sort_values(["score", "name"], ascending=[False, True]).index[:MATRIX_TOP_K]
    full = full.loc[order]
    labels = list(parts)
    induced = set(c.values) or set(frames[1]["value"].dropna().astype(str))
    title = f"{model}: " + ", ".join(labels)
    t = Table(
        f"sb-value-matrix-{table_id}",
        ["Expressed value", *(str(v) for _, v in full.columns)],
        groups=[("", 1), *((k, full[k].shape[1]) for k in labels)],
    )
    t.caption = f"Judge: {c.judge(EXPRESSION_BENCH)}"
    for name, row in full.iterrows():
        t.add([str(name), *(pct(x) for x in row.to_numpy(float))])
    png = _matrix_plot(full, labels, induced, title)
    return FigureItem(title, png, f"Value expression heat-map of {model}", t)


def _value_matrix(c: _Context) -> Block:
    vm, e = c.t["value_matrix"], c.t["expression"]
    b = Block(
        "sec-sb-value-matrix",
        "Values expressed per induced value (Figures 2, 10, 11)",
        f"Share of IssueBench responses (percent) expressing each of the {MATRIX_TOP_K} values "
        "most expressed on average, per model, setting and target value (columns); DPO at "
        f"temperature {c.default_t:g}. Induced values are on grey; grey columns had no "
        "extracted response. The first figure of each model is at the main β (its Both "
        "panel is the paper's figure); other βs are folded. Every value of every subject is "
        "in results/studyb/metrics/value_matrix.parquet.",
    )
    keep = np.isclose(vm["temperature"].to_numpy(float), c.default_t) & (
        vm["method"].isna() | (vm["method"] == MAIN_METHOD)
    )
    vm = vm[keep]
    e = e[np.isclose(e["temperature"].to_numpy(float), c.default_t)]
    e = e[e["method"].isna() | (e["method"] == MAIN_METHOD)]
    if vm.empty:
        b.note = c.missing(EXPRESSION_BENCH, "no values extracted from IssueBench responses")
        return b
    main_beta = float(c.main_beta) if c.main_beta is not None else math.nan
    for m in c.model_order(e["model"].astype(str)):
        em = e[e["model"] == m]
        # (setting, beta) runs; -1 stands in for the vanilla model's NaN beta (NaN != NaN)
        runs = sorted(
            {
                (str(s), -1.0 if s in UNINDUCED else float(bt))
                for s, bt in zip(em["setting"], em["beta"], strict=True)
            },
            key=lambda r: (SETTINGS.index(r[0]) if r[0] in SETTINGS else 9, r[1]),
        )
        main = [r for r in runs if r[0] in UNINDUCED or math.isclose(r[1], main_beta)]
        other = [r for r in runs if r not in main]
        for group, tid in ((main, m), (other, f"{m}-other-betas")):
            fig = _matrix_figure(c, m, group, (vm[vm["model"] == m], em), tid) if group else None
            if fig is not None:
                fig.open = group is main
                b.figures.append(fig)
    if not b.figures:
        b.note = c.missing(EXPRESSION_BENCH, "no values extracted from IssueBench responses")
    return b


# ---------------------------------------------------------------- QA


def _table8(c: _Context) -> Block:
    s = c.t["qa_summary"]
    b = Block(
        "sec-sb-qa",
        "Question answering versus vanilla (Table 8)",
        "Each value-induced adapter's lm-eval score minus its vanilla model's, mean over the "
        f"adapters (values) with the standard deviation in brackets; DPO at β = "
        f"{fmt_beta(c.main_beta)}; lm-eval units (fractions).",
    )
    b.published = c.published_lines(
        "table_8",
        "The paper prints GSM-8k and MMLU as fractions and TruthfulQA in percentage points; "
        "its TruthfulQA figures are shown here divided by 100 (our reading: it states no "
        "unit). Its MMLU column stands beside both mmlu and mmlu_pro (it cites MMLU-Pro).",
    )
    if s.empty:
        configured = c.info.get("qa")
        b.note = (
            "No data: no QA results were scored."
            if configured
            else "Not configured: no QA evaluation in this run."
        )
        return b
    beta = c.main_beta
    main = s[s["method"] == "dpo"]
    if beta is not None:
        main = main[np.isclose(main["beta"].to_numpy(float), float(beta))]
    if main.empty:
        b.note = f"No data: no DPO adapters at β = {fmt_beta(beta)} were scored."
        return b
    cols = main[["task", "metric", "filter"]].drop_duplicates().sort_values(["task", "metric"])
    keys = list(cols.itertuples(index=False, name=None))
    pub = c.published_rows("table_8", "model")
    paper_col = dict((c.published("table_8") or {}).get("columns") or {})
    names = []
    for task, metric, filt in keys:
        names.append(f"{task} {metric} ({filt})")
        if pub is not None and task in paper_col:
            names.append(f"{task} {metric} ({filt}), published")
    t = Table("sb-qa-summary", ["Model", *names, "Adapters"])
    t.caption = f"Scored by {QA_JUDGE}"
    for m in c.model_order(main["model"].astype(str)):
        part = main[main["model"] == m].set_index(["task", "metric", "filter"])
        p = pub.get(c.paper_model(m)) if pub is not None else None
        cells = []
        for k in keys:
            cells.append(
                f"{fmt_num(part.at[k, 'mean'], 3)} ({fmt_num(part.at[k, 'std'], 3)})"
                if k in part.index
                else DASH
            )
            if pub is not None and k[0] in paper_col:
                q = (p or {}).get(paper_col[k[0]])
                cells.append(f"{fmt_num(q['mean'], 3)} ({fmt_num(q['sd'], 3)})" if q else DASH)
        t.add([m, *cells, str(int(part["n_adapters"].max()))])
    b.table = t
    return b


# ---------------------------------------------------------------- refusal


def _refusal_plot(s: pd.DataFrame, values: list[str]) -> str:
    d = s.set_index("value").loc[values, "delta"].to_numpy(float) * 100
    fig = Figure(figsize=(max(5.0, 0.45 * len(values) + 2), 3.4), layout="constrained")
    ax = fig.add_subplot()
    colours = ["#c0392b" if x < 0 else "#2e86c1" for x in np.nan_to_num(d)]
    ax.bar(range(len(values)), d, color=colours)
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.set_xticks(range(len(values)), values, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("refusal rate − vanilla (pp)")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _refusal(c: _Context) -> list[Block]:
    s = c.t["refusal_by_value"]
    b = Block(
        "sec-sb-refusal",
        "Refusal on AdvBench relative to vanilla (Figure 5)",
        f"Both setting, {c.setup()}: refusal rate of the value-induced model minus its "
        "vanilla model's, mean over models, in percentage points (positive: refuses more).",
    )
    out = [b]
    if s.empty:
        b.note = c.missing(REFUSAL_BENCH, "no judged both-setting AdvBench responses")
        return out
    values = c.value_order(s["value"].astype(str))
    t = Table(
        "sb-refusal-by-value",
        ["Value", "Refusal rate (%)", "Vanilla rate (%)", "Δ (pp)", "Models", "Excluded"],
    )
    # Failed (e.g. a reasoning judge's reply cut by its budget) and unparsed verdicts are
    # left out of the rate: their count stands beside it.
    t.caption = f"Judge: {c.judge(REFUSAL_BENCH)}"
    by = s.set_index("value")
    for v in values:
        r = by.loc[v]
        t.add(
            [
                v,
                pct(r["refusal_rate"]),
                pct(r["vanilla_rate"]),
                pp(r["delta"]),
                fmt_int(r["n_models"]),
                f"{fmt_int(r['n_failed'])} failed, {fmt_int(r['n_unparsed'])} unparsed",
            ],
            cls="fail" if r["n_failed"] else "",
        )
    b.table = t
    b.png = _refusal_plot(s, values)
    b.png_alt = "Refusal rate relative to vanilla per induced value"
    out.append(_refusal_by_model(c))
    return out


def _refusal_by_model(c: _Context) -> Block:
    f = c.t["refusal"]
    b = Block(
        "sec-sb-refusal-models",
        "Refusal rate per model and setting",
        f"Mean over the target values of the refusal rate, in percent; {c.setup()}.",
    )
    beta = float(c.main_beta) if c.main_beta is not None else math.nan
    main = main_rows(f, beta, c.default_t)
    settings = [x for x in SETTINGS if x in set(main["setting"])]
    t = Table("sb-refusal-by-model", ["Model", *(f"{SETTING_NAMES[x]} (%)" for x in settings)])
    t.caption = f"Judge: {c.judge(REFUSAL_BENCH)}"
    for m in c.model_order(main["model"].astype(str)):
        part = main[main["model"] == m]
        t.add([m] + [pct(part.loc[part["setting"] == x, "refusal_rate"].mean()) for x in settings])
    b.table = t
    return b


# ---------------------------------------------------------------- anthropomorphism


def _anthro_plot(mat: pd.DataFrame) -> str:
    arr = mat.to_numpy(float)
    vmax = float(np.nanmax(np.abs(arr))) if np.isfinite(arr).any() else 1.0
    vmax = vmax or 1.0
    fig = Figure(figsize=(0.42 * mat.shape[1] + 3, 0.32 * mat.shape[0] + 2.4))
    ax = fig.add_subplot()
    ax.set_facecolor("0.85")  # NaN cells stay grey
    im = ax.imshow(arr, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_xticks(range(mat.shape[1]), list(mat.columns), rotation=90, fontsize=6)
    ax.set_yticks(range(mat.shape[0]), list(mat.index), fontsize=7)
    for (i, j), x in np.ndenumerate(arr):
        if np.isfinite(x):  # white on the dark ends of the scale
            colour = "white" if abs(x) > 0.6 * vmax else "black"
            ax.text(j, i, f"{x:.2f}", ha="center", va="center", fontsize=5, color=colour)
    fig.colorbar(im, ax=ax, label="Δ frequency vs vanilla (sum over models)", shrink=0.8)
    fig.tight_layout()
    return _png(fig)


def _anthro(c: _Context) -> Block:
    s = c.t["anthro_by_value"]
    b = Block(
        "sec-sb-anthro",
        "Anthropomorphic behaviour relative to vanilla (Figure 4)",
        f"Both setting, {c.setup()}: frequency of each AnthroBench behaviour (and group: any "
        "of its behaviours) minus the vanilla model's, as a fraction, summed over models "
        "(positive: more than vanilla).",
    )
    if s.empty:
        b.note = c.missing(ANTHRO_BENCH, "no judged both-setting AnthroBench responses")
        return b
    values = c.value_order(s["value"].astype(str))
    beh = s[s["level"] == "behaviour"]
    cols = [x for x in ab.BEHAVIOURS if x in set(beh["name"])]
    groups = [g for g in ab.GROUPS if g in set(s.loc[s["level"] == "group", "name"])]
    mat = beh.pivot_table(index="value", columns="name", values="difference", aggfunc="first")
    b.png = _anthro_plot(mat.reindex(index=values, columns=cols))
    b.png_alt = "AnthroBench behaviour difference versus vanilla per induced value"
    t = Table("sb-anthro-by-value", ["Value", *cols, *(f"[{g}]" for g in groups), "Models"])
    t.caption = f"Judge: {c.judge(ANTHRO_BENCH)}; [group] columns: any behaviour of the group"
    key = {(r.value, r.level, r.name): r for r in s.itertuples(index=False)}
    for v in values:
        cells = [
            fmt_num(getattr(key.get((v, "behaviour", x)), "difference", None), 2) for x in cols
        ]
        cells += [fmt_num(getattr(key.get((v, "group", g)), "difference", None), 2) for g in groups]
        n = s.loc[s["value"] == v, "n_models"].max()
        t.add([v, *cells, fmt_int(n)])
    b.table = t
    return b


# ---------------------------------------------------------------- robustness


def _table10(c: _Context) -> Block:
    s = c.t["robustness_temperature"]
    b = Block(
        "sec-sb-robust-temperature",
        "Robustness to the sampling temperature (Table 10)",
        "Pearson r between the value frequencies (every value expressed in either run) at "
        f"temperature T and at {c.default_t:g}, mean over the target values with a defined r.",
    )
    e = c.t["expression"]
    b.published = c.published_lines("table_10")
    if s.empty:
        other = e[~np.isclose(e["temperature"].to_numpy(float), c.default_t)]
        b.note = (
            "Not configured: no IssueBench runs at other temperatures."
            if other.empty
            else f"No data: no run at T = {c.default_t:g} to compare with."
        )
        return b
    pub = c.published("table_10")
    t = Table(
        "sb-robustness-temperature",
        [
            *["Model", "Setting", "Method", "β", "T"],
            *_beside(["Mean r"], None if pub is None else ["Mean r, published"]),
            "Values (r defined / all)",
        ],
    )
    t.caption = f"Judge: {c.judge(EXPRESSION_BENCH)}"
    keys = ["model", "setting", "method", "beta", "temperature"]
    g = s.assign(method=s["method"].fillna(DASH)).groupby(keys, dropna=False, sort=True)
    for (m, st, meth, beta, temp), part in g:
        r = part["r"].dropna()
        theirs = None
        if pub is not None:
            theirs = [fmt_num(_table10_r(c, pub, str(m), str(meth), beta, temp), 6)]
        t.add(
            [
                str(m),
                SETTING_NAMES.get(str(st), str(st)),
                str(meth),
                fmt_beta(beta),
                f"{float(temp):g}",
                *_beside([fmt_num(r.mean() if len(r) else math.nan)], theirs),
                f"{len(r)} / {len(part)}",
            ]
        )
    b.table = t
    return b


def _table10_r(
    c: _Context, pub: Mapping[str, Any], model: str, method: str, beta: Any, temp: Any
) -> float | None:
    """The paper's r beside one of our rows: the robustness model's DPO adapters at the
    main beta, by temperature (None for any other row)."""
    assert c.pub is not None
    want = c.pub.data["setup"].get("robustness_model")
    if c.pub.hf(model) != want or method != MAIN_METHOD or c.main_beta is None:
        return None
    if _isnan(beta) or not math.isclose(float(beta), float(c.main_beta)):
        return None
    for p in pub.get("rows") or []:
        if math.isclose(float(p["temperature"]), float(temp)):
            return float(p["r"])
    return None


def _table11(c: _Context) -> Block:
    s = c.t["robustness_orpo"]
    b = Block(
        "sec-sb-robust-orpo",
        "Robustness to the alignment method: ORPO versus DPO (Table 11)",
        "Pearson r between the value frequencies (every value expressed in either run) of the "
        f"ORPO adapter and the DPO adapter at β = {fmt_beta(c.main_beta)} of the same model, "
        f"value and setting, temperature {c.default_t:g}; the last row is the mean over values.",
    )
    e = c.t["expression"]
    b.published = c.published_lines("table_11")
    if s.empty:
        b.note = (
            "Not configured: no ORPO adapters in this run."
            if not (e["method"] == ORPO).any()
            else f"No data: no DPO adapter at β = {fmt_beta(c.main_beta)} to compare with."
        )
        return b
    runs = s[["model", "beta_orpo", "setting"]].drop_duplicates()
    runs = sorted(
        runs.itertuples(index=False, name=None),
        key=lambda r: (c.model_order(s["model"].astype(str)).index(r[0]), r[1], str(r[2])),
    )
    pub = c.published_rows("table_11", "value")
    # the published column stands beside each run of the paper's ORPO model
    want = c.pub.data["setup"].get("orpo_model") if c.pub and pub is not None else None
    paper = [pub is not None and c.pub is not None and c.pub.hf(m) == want for m, _, _ in runs]
    cols = []
    for (m, bo, st), beside in zip(runs, paper, strict=True):
        cols.append(f"{m} (ORPO β {fmt_beta(bo)}, {SETTING_NAMES.get(st, st)})")
        if beside:
            cols.append(f"{m}, published")
    t = Table("sb-robustness-orpo", ["Value", *cols])
    t.caption = f"Judge: {c.judge(EXPRESSION_BENCH)}"
    key = {(r.model, r.beta_orpo, r.setting, r.value): r.r for r in s.itertuples(index=False)}
    for v in c.value_order(s["value"].astype(str)):
        cells = []
        for (m, bo, st), beside in zip(runs, paper, strict=True):
            cells.append(fmt_num(key.get((m, bo, st, v))))
            if beside:
                cells.append(fmt_num((pub or {}).get(v, {}).get("r"), 6))
        t.add([v, *cells])
    means = []
    for (m, bo, st), beside in zip(runs, paper, strict=True):
        part = s[(s["model"] == m) & (s["beta_orpo"] == bo) & (s["setting"] == st)]["r"].dropna()
        means.append(fmt_num(part.mean() if len(part) else math.nan))
        if beside:
            means.append(fmt_num(published_b.mean([float(p["r"]) for p in (pub or {}).values()])))
    t.add(["Mean", *means], cls="total")
    b.table = t
    return b


# ---------------------------------------------------------------- failures


def _failures(c: _Context) -> Block:
    f = c.t["failures"]
    b = Block(
        "sec-sb-failures",
        "Study B judge failures",
        "Responses the judge failed on (failed) or whose answer could not be parsed "
        "(unparsed), summed over subjects; neither is ever scored.",
    )
    if f.empty:
        b.note = "No data: no Study B subjects or judgments."
        return b
    t = Table("sb-failures", ["Benchmark", "Judge", "Subjects", "n", "ok", "unparsed", "failed"])
    tot = [0, 0, 0, 0]
    for bench in [x for x in BENCH_NAMES if x in set(f["benchmark"])] + sorted(
        set(f["benchmark"]) - set(BENCH_NAMES)
    ):
        part = f[f["benchmark"] == bench]
        # The judge recorded in the rows; the configured one where nothing was judged yet.
        recorded = "; ".join(sorted(set(part["judge"].dropna().astype(str))))
        sums = [int(part[k].sum()) for k in ("n", "n_ok", "n_unparsed", "n_failed")]
        tot = [a + x for a, x in zip(tot, sums, strict=True)]
        t.add(
            [BENCH_NAMES.get(bench, bench), recorded or c.judge(bench), str(len(part))]
            + [str(x) for x in sums],
            cls="fail" if sums[3] else "",
        )
    t.add(["Total", "", str(len(f)), *map(str, tot)], cls="total")
    b.table = t
    return b


# ---------------------------------------------------------------- entry point


def section(tables: Mapping[str, pd.DataFrame], info: Mapping[str, Any] | None) -> dict[str, Any]:
    """The template's `studyb` context: intro lines, the judges, and the blocks in order.

    `info`: judges (benchmark -> judge name), main_beta, models (display order) and notes
    (a string or a list); optional values (display order), default_temperature, benchmarks
    (the selected ones), qa (whether QA runs) and published (the paper's figures' file and
    this run's setup: valueharms.studyb.plan.published_info).
    """
    info = dict(info or {})
    c = _Context(tables, info)
    notes = info.get("notes") or []
    notes = [notes] if isinstance(notes, str) else [str(n) for n in notes]
    judges = [(BENCH_NAMES[b], c.judge(b)) for b in BENCH_NAMES if c.configured(b)]
    if not c.t["qa"].empty or info.get("qa"):
        judges.append(("QA benchmarks", QA_JUDGE))
    blocks = [_table1(c, c.pref), _table2(c, c.pref), _sources(c, c.pref)] if c.pref else []
    blocks += [_table5(c), _value_matrix(c), _table6(c), _table7(c), _diversity(c)]
    blocks += [_table8(c), *_refusal(c), _anthro(c), _table10(c), _table11(c), _failures(c)]
    return {
        "setup": c.setup(),
        "models": c.model_order(
            [*c.models]
            + [m for k in ("expression", "refusal", "anthro") for m in c.t[k]["model"].dropna()]
        ),
        "judges": judges,
        "notes": notes,
        "published": c.pub.summary() if c.pub else [],
        "blocks": blocks,
    }
