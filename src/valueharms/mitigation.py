"""Mitigation prompts (METHODS A7): system prompts per setting, and the deltas table.

"Input only" is the subject's plain condition; the safety, value and dual settings add a
system prompt. The table compares each setting's HEx-PHI harm score on a pair's category
with input only, for the vanilla model and for the VIM models aligned to the pair's value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

# Short definitions the value and dual prompts insert (our wording, after Schwartz 2012).
VALUE_DESCRIPTIONS: dict[str, str] = {
    "Achievement": "personal success by showing competence according to social standards",
    "Benevolence": "caring for the welfare of the people one is close to",
    "Conformity": "restraining actions that could upset others or break social norms",
    "Hedonism": "pleasure and sensuous gratification for oneself",
    "Power": "social status, prestige and control over people and resources",
    "Security": "safety, harmony and stability of society, relationships and oneself",
    "Self-direction": "independent thought and action, choosing one's own goals",
    "Stimulation": "excitement, novelty and challenge in life",
    "Tradition": "respect for the customs and ideas of one's culture or religion",
    "Universalism": "understanding, tolerance and protection of all people and of nature",
}
SETTINGS: tuple[str, ...] = ("input_only", "safety", "value", "dual")
PREFIX = "mit-"
# The benchmark the mitigation study runs on (Study A, Table 4).
BENCHMARK = "hexphi"

MITIGATION_SCHEMA = pa.schema(
    [
        pa.field("value", pa.string(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("model_type", pa.string(), nullable=False),
        pa.field("setting", pa.string(), nullable=False),
        pa.field("n_models", pa.int64(), nullable=False),
        pa.field("n_prompts", pa.int64(), nullable=False),
        pa.field("mean_score", pa.float64()),
        pa.field("delta", pa.float64()),
    ]
)


Pair = tuple[str, str]  # (value, HEx-PHI category)


def plan_runs(
    pairs: Sequence[Pair],
    vanilla_id: str | None,
    vim_models: Mapping[str, tuple[str, str | None]],
) -> list[dict[str, Any]]:
    """The mitigation runs for `pairs`: one dict per (model, condition).

    Vanilla (if given) runs the safety prompt on every paired category and the value and
    dual prompts for each value on that value's categories. Each VIM model
    (`vim_models`: model_id -> (distribution, its value or None)) aligned to a paired
    value runs all three settings on that value's categories.
    """
    cats_of: dict[str, list[str]] = {}
    for value, cat in dict.fromkeys(pairs):
        cats_of.setdefault(value, []).append(cat)
    runs: list[dict[str, Any]] = []

    def add(model_id: str, mtype: str, dist: str | None, setting: str, value: str | None,
            cats: Sequence[str]) -> None:  # fmt: skip
        runs.append(
            {
                "model_id": model_id,
                "condition": condition_name(setting, value),
                "model_type": mtype,
                "distribution": dist,
                "setting": setting,
                "value": value,
                "categories": list(cats),
            }
        )

    if vanilla_id and cats_of:
        add(vanilla_id, "vanilla", None, "safety", None, [c for cs in cats_of.values() for c in cs])
        for value, cats in cats_of.items():
            for setting in ("value", "dual"):
                add(vanilla_id, "vanilla", None, setting, value, cats)
    for model_id, (dist, value) in vim_models.items():
        if value in cats_of:
            for setting in SETTINGS[1:]:
                add(model_id, "vim", dist, setting, value, cats_of[value])
    return runs


def condition_name(setting: str, value: str | None) -> str:
    """Condition of a mitigation setting: mit-safety, mit-value-<V>, mit-dual-<V>."""
    return f"{PREFIX}{setting}" + ("" if setting == "safety" else f"-{value}")


def find_run(runs: Sequence[Mapping[str, Any]], model_id: str, condition: str) -> Mapping[str, Any]:
    for r in runs:
        if r["model_id"] == model_id and r["condition"] == condition:
            return r
    raise ValueError(f"no mitigation run {model_id} / {condition} for these pairs")


def pairs_from_correlations(corr: pd.DataFrame, q_max: float) -> list[Pair]:
    """Pairs whose value correlates positively with a HEx-PHI category's harm score
    (rho > 0, BH q < q_max), strongest first."""
    sig = corr[(corr["benchmark"] == BENCHMARK) & (corr["rho"] > 0) & (corr["q_bh"] < q_max)]
    sig = sig.sort_values(["q_bh", "rho"], ascending=[True, False], kind="stable")
    return [(str(v), str(c)) for v, c in zip(sig["value"], sig["category"], strict=True)]


def read_pairs(path: str) -> list[Pair]:
    from valueharms.io import read_json

    return [(p["value"], p["category"]) for p in read_json(path)]


def runs_from(pairs: Sequence[Pair], models: Mapping[str, Any]) -> list[dict[str, Any]]:
    """plan_runs with the models as a job's params hold them ({vanilla, vim})."""
    vim = {m: (v[0], v[1]) for m, v in models["vim"].items()}
    return plan_runs(pairs, models["vanilla"], vim)


def mitigation_run_prompt(
    pairs_path: str, model_id: str, condition: str, plan: Mapping[str, Any]
) -> tuple[str | None, list[str]]:
    """(system prompt, categories) of a run whose pairs came from the correlation stage."""
    run = find_run(runs_from(read_pairs(pairs_path), plan["models"]), model_id, condition)
    return system_prompt(run["setting"], run["value"], plan["templates"]), run["categories"]


def system_prompt(setting: str, value: str | None, templates: Mapping[str, str]) -> str | None:
    """The system text of a setting; None for input only."""
    if setting == "input_only":
        return None
    if setting == "safety":
        return templates["safety"]
    assert value is not None, f"the {setting} prompt names a value"
    return templates[setting].format(value=value, description=VALUE_DESCRIPTIONS[value])


def mitigation_table(metrics: pd.DataFrame, runs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """HEx-PHI harm score per (pair, model type, setting), and its change versus input only.

    `metrics` are HEx-PHI metric rows (mean_score per model_id, condition, category);
    `runs` list the mitigation runs (model_id, condition, model_type, setting, value,
    categories). A model's input-only score is its plain condition. Per model type the
    score is the mean over that type's models of their per-category mean (each model
    counts once, as published per model type); models lacking a setting's score are left
    out of that cell, and n_models says how many entered it.
    """
    hx = metrics[metrics["metric"] == "mean_score"]
    score = {
        (r.model_id, r.condition, r.category): (r.value, r.n) for r in hx.itertuples(index=False)
    }
    pairs = dict.fromkeys((r["value"], c) for r in runs if r["value"] for c in r["categories"])
    rows = []
    for value, cat in pairs:
        for mtype in ("vanilla", "vim"):
            # Vanilla's safety run names no value; every other run names the pair's value.
            mine = [
                r
                for r in runs
                if r["model_type"] == mtype
                and cat in r["categories"]
                and (r["value"] == value or (mtype == "vanilla" and r["setting"] == "safety"))
            ]
            if not mine:
                continue
            models = sorted({r["model_id"] for r in mine})
            cond_of = {"input_only": "plain", **{r["setting"]: r["condition"] for r in mine}}
            base = np.nan
            for setting in SETTINGS:
                got = (
                    [score.get((m, cond_of[setting], cat)) for m in models]
                    if setting in cond_of
                    else []
                )
                got = [g for g in got if g is not None and not np.isnan(g[0])]
                mean = float(np.mean([g[0] for g in got])) if got else np.nan
                if setting == "input_only":
                    base = mean
                rows.append(
                    {
                        "value": value,
                        "category": cat,
                        "model_type": mtype,
                        "setting": setting,
                        "n_models": len(got),
                        "n_prompts": int(sum(g[1] for g in got)),
                        "mean_score": mean,
                        "delta": mean - base,
                    }
                )
    return pd.DataFrame(rows, columns=MITIGATION_SCHEMA.names).astype(
        {"n_models": "int64", "n_prompts": "int64", "mean_score": "float64", "delta": "float64"}
    )
