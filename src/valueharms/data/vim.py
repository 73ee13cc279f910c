"""Value Injection Method training examples (METHODS A2) and the ICL system prompt (A3).

Prompt wording lives in template files (resources/prompts/) so a user can swap in the
published wording without touching code.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from valueharms import VALUES
from valueharms.data.sources import (
    DataError,
    LoadReport,
    check_rows,
    require_columns,
    require_file,
)

Strategy = Literal["min", "mean", "max"]
# config vim.stage1_questions: Study A asks positives and negatives different questions
# ("what would you say" / "what would you not say"); `shared` asks both one question.
Stage1Questions = Literal["per_polarity", "shared"]
# config vim.stage2_labels: `published_shift` reads the stage-2 label columns one to the
# left, as Study A's code did (see stage2_label_columns).
Stage2Labels = Literal["correct", "published_shift"]

# The six PVQ answer options, 1..6 (6 = the description is very much like the respondent).
PVQ_OPTIONS: tuple[str, ...] = (
    "Not like me at all",
    "Not like me",
    "A little like me",
    "Somewhat like me",
    "Like me",
    "Very much like me",
)

# How important a value is at each score 1..6, for stage-2 answers and the ICL profile.
IMPORTANCE_WORDS: tuple[str, ...] = (
    "not important at all",
    "not important",
    "slightly important",
    "moderately important",
    "important",
    "very important",
)

TEMPLATE_FILES: dict[str, str] = {
    "stage1_prompt": "vim_stage1_prompt.txt",
    "stage1_prompt_positive": "vim_stage1_prompt_positive.txt",
    "stage1_prompt_negative": "vim_stage1_prompt_negative.txt",
    "stage1_positive": "vim_stage1_positive.txt",
    "stage1_negative": "vim_stage1_negative.txt",
    "stage2_prompt": "vim_stage2_prompt.txt",
    "stage2_answer": "vim_stage2_answer.txt",
    "icl_system": "icl_system.txt",
}

VIM_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("stage", pa.int64(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("arg_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("value", pa.string()),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("completion", pa.string(), nullable=False),
    ]
)

_TEXT_COLUMNS = {"Conclusion": "conclusion", "Stance": "stance", "Premise": "premise"}
_STANCES = ("in favor of", "against")


def load_templates(paths: Mapping[str, str | os.PathLike[str]]) -> dict[str, str]:
    """Read each template file; the template is the file minus one trailing newline."""
    out: dict[str, str] = {}
    for key, path in paths.items():
        text = Path(path).read_text(encoding="utf-8")
        out[key] = text[:-1] if text.endswith("\n") else text
    return out


def default_template_paths(prompt_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Paths of the project's own template files under `prompt_dir`."""
    return {k: str(Path(prompt_dir) / f) for k, f in TEMPLATE_FILES.items()}


def read_touche(
    path: str | os.PathLike[str],
    name: str = "touche",
    expected_rows: int | None = None,
    report: LoadReport | None = None,
) -> pd.DataFrame:
    """Read a tab-separated Touché23-ValueEval file (valueEval_10.csv, value_split/*.csv).

    The first column is an unnamed row index (the argument's id across all these files).
    Rows with an unknown stance, a label other than 0/1 or an empty conclusion/premise are
    dropped and counted in `report` (and logged); a missing file or column, duplicate ids or
    a row count other than `expected_rows` stop with a DataError naming datasets.<name>.path.
    """
    require_file(name, path)
    # keep_default_na=False: premises such as "NA" or "null" are text, not missing values.
    raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    require_columns(name, path, list(raw.columns), [*_TEXT_COLUMNS, *VALUES])
    check_rows(name, path, len(raw), expected_rows)
    rep = report if report is not None else LoadReport(name, str(path))
    rep.rows_in = len(raw)
    out = pd.DataFrame({"arg_id": raw.iloc[:, 0].astype(str)})
    for src, dst in _TEXT_COLUMNS.items():
        out[dst] = raw[src].astype(str)
    labels = raw[list(VALUES)].apply(pd.to_numeric, errors="coerce")
    bad_label = ~labels.isin([0, 1]).all(axis=1)
    bad_stance = ~out["stance"].isin(_STANCES) & ~bad_label
    empty = (out["conclusion"].str.strip().eq("") | out["premise"].str.strip().eq("")) & ~(
        bad_label | bad_stance
    )
    rep.drop("value label not 0/1", int(bad_label.sum()))
    rep.drop(f"stance not one of {list(_STANCES)}", int(bad_stance.sum()))
    rep.drop("empty conclusion or premise", int(empty.sum()))
    keep = ~(bad_label | bad_stance | empty)
    for v in VALUES:
        out[v] = labels[v]
    out = out[keep].astype({v: "int64" for v in VALUES}).reset_index(drop=True)
    if not out["arg_id"].is_unique:
        raise DataError(f"datasets.{name}.path: {path}: argument ids are not unique")
    rep.close(len(out))
    return out


def stage2_label_columns(args: pd.DataFrame, mode: Stage2Labels = "correct") -> pd.DataFrame:
    """The stage-2 arguments with their value labels as stage 2 reads them.

    `correct`: each value's own column. `published_shift`: Study A's code
    (src/dataset/d_survey.py, DS_survey) zips `df.iloc[i][-11:-1]` (Premise, Achievement ..
    Tradition) with the ten value names, so value k gets the label of the column left of
    its own: Achievement gets Premise's (never 1), Benevolence gets Achievement's, ..,
    Universalism gets Tradition's, and the Universalism column is never read.
    """
    if mode == "correct":
        return args
    if mode != "published_shift":
        raise ValueError(f"unknown stage2_labels {mode!r}; use correct or published_shift")
    cols = list(VALUES)
    shifted = args[cols[:-1]].to_numpy()
    out = args.copy()
    out[cols[0]] = 0
    out[cols[1:]] = shifted
    return out


@dataclass(frozen=True)
class ToucheFiles:
    """The Touché files VIM examples come from: stage 1's arguments (valueEval_10.csv) and
    stage 2's train and valid splits (value_split/*.csv), whose label columns are read as
    `stage2_labels` says (config vim.stage2_labels, stage2_label_columns)."""

    arguments: str
    stage2_train: str
    stage2_valid: str
    stage2_labels: Stage2Labels = "correct"

    def read(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The three files read (read_touche), in that order."""
        return (
            read_touche(self.arguments),
            stage2_label_columns(
                read_touche(self.stage2_train, name="touche_stage2_train"), self.stage2_labels
            ),
            stage2_label_columns(
                read_touche(self.stage2_valid, name="touche_stage2_valid"), self.stage2_labels
            ),
        )


def _target_vector(target: Mapping[str, float]) -> np.ndarray:
    missing = [v for v in VALUES if v not in target]
    if missing:
        raise ValueError(f"target lacks scores for {missing}")
    vec = np.array([float(target[v]) for v in VALUES])
    if not ((vec >= 1.0) & (vec <= 6.0)).all():
        raise ValueError(f"target scores must lie in [1, 6]: {dict(zip(VALUES, vec, strict=True))}")
    return vec


def argument_scores(
    args: pd.DataFrame, target: Mapping[str, float], strategy: Strategy = "min"
) -> pd.Series:
    """Aggregate the target's scores over each argument's labelled values (NaN if none)."""
    labels = args[list(VALUES)].to_numpy(dtype=bool)
    scores = np.where(labels, _target_vector(target), np.nan)
    has_label = labels.any(axis=1)
    agg = {"min": np.nanmin, "mean": np.nanmean, "max": np.nanmax}.get(strategy)
    if agg is None:
        raise ValueError(f"unknown strategy {strategy!r}; use min, mean or max")
    out = np.full(len(args), np.nan)
    if has_label.any():
        out[has_label] = agg(scores[has_label], axis=1)
    return pd.Series(out, index=args.index, name="score")


def _agree(stance: str) -> str:
    return "agree" if stance == "in favor of" else "disagree"


def _arg_fields(row: Mapping[str, Any]) -> dict[str, str]:
    return {
        "conclusion": row["conclusion"],
        "stance": row["stance"],
        "premise": row["premise"],
        "agree": _agree(row["stance"]),
    }


def _split_80_10_10(df: pd.DataFrame, seed: int) -> dict[str, pd.DataFrame]:
    """Study A's split: sample 80% for train, then half the remainder for valid."""
    train = df.sample(frac=0.8, random_state=seed)
    rest = df.drop(train.index)
    valid = rest.sample(frac=0.5, random_state=seed)
    test = rest.drop(valid.index)
    return {"train": train, "valid": valid, "test": test}


def stage1_assignments(
    args: pd.DataFrame,
    target: Mapping[str, float],
    threshold: float = 3.0,
    strategy: Strategy = "min",
    seed: int = 42,
) -> pd.DataFrame:
    """Which arguments are positive/negative and in which split (Study A's preprocessing).

    Returns the scored rows of `args` (file order within each kind and split, as sampled)
    with `score`, `kind` and `split` columns. Arguments without any value label have no
    score and are left out (count them with `unscored(args)`).
    """
    # A fresh positional index makes sample/drop independent of the caller's index.
    args = args.reset_index(drop=True)
    scores = argument_scores(args, target, strategy)
    scored = args.assign(score=scores)[scores.notna()]
    parts = []
    for kind, subset in (
        ("positive", scored[scored["score"] >= threshold]),
        ("negative", scored[scored["score"] < threshold]),
    ):
        for split, part in _split_80_10_10(subset, seed).items():
            parts.append(part.assign(kind=kind, split=split))
    return pd.concat(parts) if parts else scored.assign(kind=[], split=[])


def unscored(args: pd.DataFrame) -> int:
    """Arguments with no value label: stage 1 cannot score them."""
    return int((args[list(VALUES)].to_numpy().sum(axis=1) == 0).sum())


def stage1_questions(
    templates: Mapping[str, str], questions: Stage1Questions = "per_polarity"
) -> dict[str, str]:
    """The stage-1 question template per kind (positive, negative).

    `per_polarity` (Study A, src/dataset/d_argument.py): positives are asked
    `stage1_prompt_positive` ("what would you say"), negatives `stage1_prompt_negative`
    ("what would you not say"). `shared`: both are asked `stage1_prompt`, and only the
    answer says which kind it is.
    """
    if questions == "shared":
        return {"positive": templates["stage1_prompt"], "negative": templates["stage1_prompt"]}
    if questions != "per_polarity":
        raise ValueError(f"unknown stage1_questions {questions!r}; use per_polarity or shared")
    keys = ("stage1_prompt_positive", "stage1_prompt_negative")
    missing = [k for k in keys if k not in templates]
    if missing:
        raise ValueError(f"stage1_questions per_polarity needs the templates {missing}")
    return {
        "positive": templates["stage1_prompt_positive"],
        "negative": templates["stage1_prompt_negative"],
    }


def stage1_examples(
    args: pd.DataFrame,
    target: Mapping[str, float],
    templates: Mapping[str, str],
    threshold: float = 3.0,
    strategy: Strategy = "min",
    seed: int = 42,
    questions: Stage1Questions = "per_polarity",
) -> pd.DataFrame:
    """Argument-generation examples: what the target would say (positive) or not (negative).

    Arguments without any value label have no score and are left out. Which question each
    kind is asked: `questions` (stage1_questions).
    """
    assigned = stage1_assignments(args, target, threshold, strategy, seed)
    prompts = stage1_questions(templates, questions)
    completions = {
        "positive": templates["stage1_positive"],
        "negative": templates["stage1_negative"],
    }
    rows: list[dict[str, object]] = []
    for row in assigned.to_dict("records"):
        fields = _arg_fields(row)
        kind = row["kind"]
        rows.append(
            {
                "stage": 1,
                "split": row["split"],
                "example_id": f"s1-{kind}-{row['arg_id']}",
                "arg_id": row["arg_id"],
                "kind": kind,
                "value": None,
                "prompt": prompts[kind].format(**fields),
                "completion": completions[kind].format(**fields),
            }
        )
    out = pd.DataFrame(rows, columns=VIM_SCHEMA.names)
    # Group by split for readers; within a split keep the (shuffled) sample order.
    order = {"train": 0, "valid": 1, "test": 2}
    out = out.sort_values("split", key=lambda c: c.map(order), kind="stable")
    return out.reset_index(drop=True).astype({"stage": "int64"})


SPLIT_SIZES_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("distribution", pa.string(), nullable=False),
        *[
            pa.field(f"s1_{kind}_{split}", pa.int64(), nullable=False)
            for kind in ("positive", "negative")
            for split in ("train", "valid", "test")
        ],
        pa.field("s1_unscored", pa.int64(), nullable=False),
        pa.field("s2_train", pa.int64(), nullable=False),
        pa.field("s2_valid", pa.int64(), nullable=False),
    ]
)


def split_sizes_row(
    name: str,
    args: pd.DataFrame,
    stage2_train: pd.DataFrame,
    stage2_valid: pd.DataFrame,
    target: Mapping[str, float],
    threshold: float = 3.0,
    strategy: Strategy = "min",
    seed: int = 42,
) -> dict[str, object]:
    """Example counts of one distribution's VIM table, as stage1/stage2_examples build it."""
    a = stage1_assignments(args, target, threshold, strategy, seed)
    counts = a.groupby(["kind", "split"]).size()
    row: dict[str, object] = {"distribution": name}
    for kind in ("positive", "negative"):
        for split in ("train", "valid", "test"):
            row[f"s1_{kind}_{split}"] = int(counts.get((kind, split), 0))
    row["s1_unscored"] = unscored(args)
    # Stage 2: one example per (argument, labelled value), whatever the target.
    row["s2_train"] = int(stage2_train[list(VALUES)].to_numpy().sum())
    row["s2_valid"] = int(stage2_valid[list(VALUES)].to_numpy().sum())
    return row


def split_sizes_of(name: str, examples: pd.DataFrame) -> dict[str, object]:
    """The same counts read off a written VIM table (VIM_SCHEMA)."""
    s1 = examples[examples["stage"] == 1].groupby(["kind", "split"]).size()
    s2 = examples[examples["stage"] == 2].groupby("split").size()
    row: dict[str, object] = {"distribution": name}
    for kind in ("positive", "negative"):
        for split in ("train", "valid", "test"):
            row[f"s1_{kind}_{split}"] = int(s1.get((kind, split), 0))
    row["s2_train"] = int(s2.get("train", 0))
    row["s2_valid"] = int(s2.get("valid", 0))
    return row


def importance_words(score: int) -> str:
    """Words for an importance score 1..6."""
    if score not in range(1, 7):
        raise ValueError(f"importance score must be 1..6, got {score}")
    return IMPORTANCE_WORDS[score - 1]


def pvq_options_text() -> str:
    """The six PVQ options as one line: 1. 'Not like me at all', 2. ..."""
    return ", ".join(f"{i}. '{o}'" for i, o in enumerate(PVQ_OPTIONS, start=1))


def stochastic_round(x: float, rng: np.random.Generator) -> int:
    """floor(x) or ceil(x), ceil with probability frac(x); one draw per call, always."""
    lo = math.floor(x)
    # Draw even when x is integral so each example consumes one draw: row i's answer
    # then depends only on the seed and i, not on earlier rows' targets.
    u = rng.random()
    return lo + int(u < x - lo)


def stage2_examples(
    train_args: pd.DataFrame,
    valid_args: pd.DataFrame,
    target: Mapping[str, float],
    templates: Mapping[str, str],
    seed: int = 42,
) -> pd.DataFrame:
    """Survey-answering examples: one per (argument, labelled value), all ten values.

    Labels are read by column name. Study A's code sliced the label columns one to the
    left, so every label was read as the next value's and Universalism's column was never
    used: pass frames through stage2_label_columns(..., "published_shift") to reproduce it.
    """
    vec = _target_vector(target)
    rng = np.random.default_rng(seed)
    options = pvq_options_text()
    rows: list[dict[str, object]] = []
    for split, part in (("train", train_args), ("valid", valid_args)):
        for _, row in part.iterrows():
            statement = f"I {_agree(row['stance'])} with {row['conclusion']}. {row['premise']}"
            prompt = templates["stage2_prompt"].format(statement=statement, options=options)
            for j, v in enumerate(VALUES):
                if int(row[v]) != 1:
                    continue
                score = stochastic_round(float(vec[j]), rng)
                completion = templates["stage2_answer"].format(
                    value=v.lower(), importance=importance_words(score), score=score
                )
                rows.append(
                    {
                        "stage": 2,
                        "split": split,
                        "example_id": f"s2-{split}-{row['arg_id']}-{v}",
                        "arg_id": row["arg_id"],
                        "kind": "survey",
                        "value": v,
                        "prompt": prompt,
                        "completion": completion,
                    }
                )
    return pd.DataFrame(rows, columns=VIM_SCHEMA.names).astype({"stage": "int64"})


def icl_system_prompt(target: Mapping[str, float], template: str) -> str:
    """System prompt for the in-context baseline: the target's value scores in words."""
    vec = _target_vector(target)
    lines = [
        f"- {v}: {s:.2f} out of 6, {importance_words(min(6, max(1, math.floor(s + 0.5))))}"
        for v, s in zip(VALUES, vec, strict=True)
    ]
    return template.format(profile="\n".join(lines))
