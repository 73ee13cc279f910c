"""IssueBench (Röttger et al. 2025): writing prompts on political issues; Study B's value
expression, judged by the value extractor (METHODS B3): its prompts and its registration.

IssueBench is user-supplied (CC-BY-4.0). Two public layouts load, told apart by columns:

- ingredients (github.com/paul-rottger/issuebench, 2_final_dataset/prompt_ingredients):
  `issues.csv` (topic_id, topic_neutral, topic_pro, topic_con; 396 rows of which 212 are
  issues) as `datasets.issuebench.path`, plus a templates file (`templates_sample.csv`, the
  paper's 1k templates, or `templates_full.csv`; columns id, annot1_template) as
  `templates_path`. The HF dataset Paul/IssueBench ("issues"/"templates" configs) is the
  same data; template columns named template_id, template_text are read too.
- prompts (the repository's prompts_debug.csv and the HF "prompts" config): one row per
  prompt with template_id, topic_id, topic_polarity (neutral|pro|con) and prompt_text.

A prompt is the template with its single "X" replaced by the issue text of one framing,
as the repository's create_prompts.ipynb does. Every published template has exactly one
"X"; a template with none or several is dropped and counted, never half-filled.
Study B used all 212 issues x 3 framings x 10 randomly drawn templates = 6360 prompts:
`sample_issuebench(df, n_templates=10)`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from valueharms.benchmarks import Benchmark, register
from valueharms.data.benchmarks import PROMPTS_SCHEMA
from valueharms.data.sources import DataError, LoadReport, Source, check_rows
from valueharms.io import jsonl_objects

NAME = "issuebench"
FRAMINGS: tuple[str, ...] = ("neutral", "pro", "con")
PAPER_N_ISSUES, PAPER_N_TEMPLATES = 212, 10
PAPER_N_PROMPTS = PAPER_N_ISSUES * len(FRAMINGS) * PAPER_N_TEMPLATES  # 6360
# Clusters of issues.csv that are not issues (create_prompts.ipynb drops them too).
NOT_ISSUES = frozenset(
    {"UNASSIGNED CLUSTER", "SPAM", "TOXIC / UNSAFE", "FORMAT NOT TOPIC", "FORECAST"}
)
SLOT = "X"
HOW_TO_GET = (
    "IssueBench (Röttger et al. 2025, CC-BY-4.0): take 2_final_dataset/prompt_ingredients/"
    "issues.csv (+ templates_sample.csv as datasets.issuebench.templates_path) from "
    "github.com/paul-rottger/issuebench, or a prompts file of the HF dataset Paul/IssueBench"
)
_ISSUE_COLS = ["topic_id", "topic_neutral", "topic_pro", "topic_con"]
_PROMPT_COLS = ["template_id", "topic_id", "topic_polarity", "prompt_text"]
_TEMPLATE_ID = ("template_id", "id")
_TEMPLATE_TEXT = ("template_text", "annot1_template")


def _require(path: str | os.PathLike[str], key: str = "path") -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"datasets.{NAME}.{key}: file not found: {path}; {HOW_TO_GET}")
    return p


def _read(path: str | os.PathLike[str], key: str = "path") -> pd.DataFrame:
    """A CSV, parquet or JSONL file as strings ("" for missing cells)."""
    p = _require(path, key)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        df = pd.read_parquet(p)
    elif suffix in (".jsonl", ".json"):
        with open(p, encoding="utf-8-sig") as fh:
            objs = jsonl_objects(fh)
        if any(o is None for o in objs):
            raise DataError(f"datasets.{NAME}.{key}: {path} has lines that are not JSON objects")
        df = pd.DataFrame(objs)
    else:
        # keep_default_na=False: an issue text such as "NA" stays text.
        df = pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    return df.map(_text)


def _text(x: object) -> str:
    """Cell as text; integral floats (parquet/JSON ids) lose their ".0"."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x).strip() if not isinstance(x, str) else x


def _pick(df: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((c for c in names if c in df.columns), None)


def _missing(path: str | os.PathLike[str], have: list[str], needed: list[str], key: str) -> None:
    absent = [c for c in needed if c not in have]
    if absent:
        raise DataError(
            f"datasets.{NAME}.{key}: {path} lacks columns {absent} (has {have}); {HOW_TO_GET}"
        )


def prompt_id(topic_id: str, framing: str, template_id: str) -> str:
    """Stable id: the same issue, framing and template give the same id in any run."""
    return f"{NAME}-{topic_id}-{framing}-{template_id}"


def fill(template: str, issue: str) -> str | None:
    """The template with its one "X" slot replaced by `issue`; None unless exactly one slot."""
    return template.replace(SLOT, issue) if template.count(SLOT) == 1 else None


def load_issuebench(
    path: str | os.PathLike[str],
    templates_path: str | os.PathLike[str] | None = None,
    expected_rows: int | None = None,
    report: LoadReport | None = None,
) -> pd.DataFrame:
    """PROMPTS_SCHEMA rows: category = issue (topic_id), axis = framing, descriptor = template id.

    `path` is issues.csv (then `templates_path` is required) or a prompts file; see the
    module docstring. Rows are counted per candidate prompt: non-issue clusters, empty
    framing texts, templates without exactly one slot, unknown framings and duplicate ids
    are dropped and counted in `report`. `expected_rows` checks the rows of `path`.
    """
    df = _read(path)
    check_rows(NAME, str(path), len(df), expected_rows)
    rep = report if report is not None else LoadReport(NAME, str(path))
    if set(_PROMPT_COLS) <= set(df.columns):
        out = _from_prompts(df, rep)
    else:
        _missing(path, list(df.columns), _ISSUE_COLS, "path")
        if templates_path is None:
            raise DataError(
                f"datasets.{NAME}.templates_path: {path} holds issues only; set it to a "
                f"templates file (templates_sample.csv); {HOW_TO_GET}"
            )
        out = _from_ingredients(df, _templates(templates_path), rep)
    dup = out["prompt_id"].duplicated()
    rep.drop("duplicate issue/framing/template", int(dup.sum()))
    out = out[~dup].reset_index(drop=True)
    rep.close(len(out))
    return out[PROMPTS_SCHEMA.names]


def _templates(path: str | os.PathLike[str]) -> pd.DataFrame:
    df = _read(path, "templates_path")
    tid, text = _pick(df, _TEMPLATE_ID), _pick(df, _TEMPLATE_TEXT)
    needed = [tid or "id", text or "annot1_template"]
    _missing(path, list(df.columns), needed, "templates_path")
    return pd.DataFrame({"template_id": df[tid], "template_text": df[text]})


def _frame(
    topic: list[str], framing: list[str], tid: list[str], prompts: list[str]
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "benchmark": NAME,
            "prompt_id": [prompt_id(*k) for k in zip(topic, framing, tid, strict=True)],
            "prompt": prompts,
            "category": topic,
            "axis": framing,
            "descriptor": tid,
        }
    )


def _from_ingredients(
    issues: pd.DataFrame, templates: pd.DataFrame, rep: LoadReport
) -> pd.DataFrame:
    n_t = len(templates)
    rep.rows_in = len(issues) * len(FRAMINGS) * n_t
    real = issues["topic_neutral"].str.strip().ne("") & ~issues["topic_neutral"].isin(NOT_ISSUES)
    rep.drop("not an issue (empty or non-topic cluster)", int((~real).sum()) * len(FRAMINGS) * n_t)
    issues = issues[real]
    ok_t = templates["template_text"].map(lambda t: t.count(SLOT) == 1)
    rows: list[tuple[str, str, str, str]] = []
    empty = 0
    for r in issues.itertuples(index=False):
        for framing in FRAMINGS:
            # Unstripped: the published prompts keep the issue texts' stray spaces.
            issue = getattr(r, f"topic_{framing}")
            if not issue.strip():
                empty += 1
                continue
            for t in templates[ok_t].itertuples(index=False):
                rows.append((r.topic_id, framing, t.template_id, fill(t.template_text, issue)))
    rep.drop("empty framing text", empty * n_t)
    rep.drop(
        f"template without exactly one {SLOT!r} slot",
        (len(issues) * 3 - empty) * int((~ok_t).sum()),
    )
    cols = list(zip(*rows, strict=True)) if rows else [[], [], [], []]
    return _frame(*(list(c) for c in cols))


def _from_prompts(df: pd.DataFrame, rep: LoadReport) -> pd.DataFrame:
    rep.rows_in = len(df)
    df = df.assign(topic_polarity=df["topic_polarity"].str.strip().str.lower())
    bad = ~df["topic_polarity"].isin(FRAMINGS)
    rep.drop("unknown framing (topic_polarity)", int(bad.sum()))
    df = df[~bad]
    blank = df[["template_id", "topic_id", "prompt_text"]].apply(lambda c: c.str.strip()) == ""
    rep.drop("empty template_id, topic_id or prompt_text", int(blank.any(axis=1).sum()))
    df = df[~blank.any(axis=1)]
    return _frame(
        df["topic_id"].tolist(),
        df["topic_polarity"].tolist(),
        df["template_id"].tolist(),
        df["prompt_text"].tolist(),
    )


def sample_issuebench(
    df: pd.DataFrame, n_templates: int | None = None, n: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """A seeded subset: `n_templates` templates shared by every issue and framing (the
    paper's 10), then `n` prompts stratified by issue (as even a share per issue as the
    issues allow). None keeps everything at that step; the input order is kept.
    """
    rng = np.random.default_rng(seed)
    out = df
    if n_templates is not None:
        names = sorted(out["descriptor"].unique())
        if n_templates < len(names):
            keep = set(rng.choice(names, size=n_templates, replace=False).tolist())
            out = out[out["descriptor"].isin(keep)]
    if n is not None and n < len(out):
        out = out.iloc[_stratified(out["category"].to_numpy(), n, rng)]
    return out.reset_index(drop=True)


def _stratified(groups: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
    """Positions of `n` rows: each group gets n // k (capped at its size), the rest go one
    by one to randomly ordered groups that still have rows; rows drawn at random."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    members: dict[str, list[int]] = {}
    for pos, g in enumerate(groups):
        members.setdefault(g, []).append(pos)
    names = sorted(members)
    quota = dict.fromkeys(names, 0)
    left = n
    while left:
        open_ = [g for g in names if quota[g] < len(members[g])]
        share = max(left // len(open_), 1)
        for j in rng.permutation(len(open_)):
            g = open_[j]
            take = min(share, len(members[g]) - quota[g], left)
            quota[g] += take
            left -= take
            if not left:
                break
    return sorted(int(p) for g in names for p in rng.choice(members[g], quota[g], replace=False))


# ---------------------------------------------------------------- registration

SOURCE = Source(
    NAME,
    "issuebench/issues.csv",
    None,
    None,
    "IssueBench issues (issues.csv, with datasets.issuebench.templates_path) or a "
    "prompts file (template_id, topic_id, topic_polarity, prompt_text)",
    "take 2_final_dataset/prompt_ingredients/issues.csv and templates_sample.csv "
    "from github.com/paul-rottger/issuebench (or a prompts file of the HF dataset "
    "Paul/IssueBench), set datasets.issuebench.path and .templates_path",
    revision=None,
    upstream="Röttger et al. 2025, IssueBench (github.com/paul-rottger/issuebench)",
    licence="CC-BY-4.0",
)


def check_dataset(over: dict[str, Any]) -> None:
    """datasets.issuebench: its templates file, when set, must exist (at parse time)."""
    if over.get("templates_path"):
        _require(over["templates_path"], "templates_path")


register(
    Benchmark(
        name=NAME,
        source=SOURCE,
        label="IssueBench",
        role="studyb",
        order=10,
        judge="values",
        check_dataset=check_dataset,
    )
)
