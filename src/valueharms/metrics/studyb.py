"""Study B's judged outputs as the paper's tables (METHODS B3; seed 004 Tables 5-8, 10, 11,
Figures 2, 4-5, 7, 10, 11), and the preference data's (METHODS B1; Tables 1-2, Figure 9:
PREFERENCE_TABLES, built by preference_tables from the extraction and verification outputs).

Inputs (the report stage's contract):

- `subjects`: one row per (benchmark, subject role) with benchmark, model, kind
  (base|post-trained), setting (none|prompt|train|both), value, method (dpo|orpo, None for
  none/prompt), beta (NaN for none/prompt), temperature, model_id and condition. In the
  none setting there is one row per target value, all pointing at the same vanilla
  responses.
- `judgments`: benchmark -> JUDGMENTS_SCHEMA rows of every subject of that benchmark.
- `qa` (QA_SCHEMA, may be None) and `qa_subjects` (model, model_id, value, method, beta).

Every table of TABLES is returned, empty (with its columns) where nothing feeds it. Shares,
rates and frequencies are fractions. A judge row that is unparsed or failed is counted
(n_unparsed, n_failed) and never scored. Judgment rows repeated on (model_id, condition,
prompt_id, sample), as the none setting's may be, count once.

Choices where the paper is silent:
- main results (Tables 5, 7, Figures 4-5) are DPO at `main_beta` and the default
  temperature; the none/prompt settings have no beta and are taken as they are;
- refusal and anthropomorphism are compared with the model's none subject at the same
  temperature, else at the default one;
- the Pearson r of Tables 10-11 runs over every value expressed in either run (a value
  absent from one run has share 0 there); it is NaN when a run's shares are all equal;
- AnthroBench frequencies count every judged answer for every behaviour
  (ANTHRO_PROBED_ONLY), since the judge marks all 14 in each answer;
- in `qa`, `value` is the adapter's target value and `score` lm-eval's number; Table 8
  (`qa_summary`) is kept per method and beta (the report shows DPO at main beta);
- value diversity (Figure 7) counts the distinct values in all of a subject's extracted
  responses, pooled over prompts and samples, then averages over target values; the count
  grows with the number of responses, so only runs on the same prompts compare;
- `value_matrix` (Figures 2, 10, 11) lists every expressed value of every subject, the
  none setting's vanilla responses once (value null);
- Figure 9 counts responses per side, with the synonym map applied as for the subsets, and
  one release's shards (`<dataset>_1of3`, ...) as one dataset.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from valueharms import benchmarks
from valueharms.io import conform, read_json, read_table, write_table
from valueharms.judge.schema import STATUS_FAILED, STATUS_OK, STATUS_UNPARSED
from valueharms.studyb import expression as ex
from valueharms.studyb import qa_eval as qe
from valueharms.studyb import verify as vf
from valueharms.studyb.extract import (
    EXTRACTIONS_SCHEMA,
    FAILED,
    NONE,
    OK,
    PARSED,
    UNPARSED,
    normalise,
    reparse,
    value_counts,
)
from valueharms.studyb.subsets import SUBSET_SIZES_SCHEMA

if TYPE_CHECKING:
    from valueharms.job import Job

log = logging.getLogger(__name__)

# Study B's tables are defined per judge kind: the benchmark the value extractor judges
# (expression), the refusal judge's and the anthropomorphism judge's (valueharms.benchmarks).
EXPRESSION_BENCH, REFUSAL_BENCH, ANTHRO_BENCH = (
    benchmarks.by_judge(kind) for kind in ("values", "refusal", "anthro")
)
BENCHMARKS: tuple[str, ...] = benchmarks.names("studyb")  # the published order
ab = benchmarks.module(ANTHRO_BENCH)  # the anthropomorphism measure: behaviours, frequencies
rf = benchmarks.module(REFUSAL_BENCH)  # the refusal judge: rates and their deltas
SETTINGS: tuple[str, ...] = ("none", "prompt", "train", "both")  # studyb.induction.SETTINGS
UNINDUCED = frozenset({"none", "prompt"})  # the vanilla model: no method, no beta
MAIN_METHOD, ORPO = "dpo", "orpo"
KEYS = ["model_id", "condition"]
JUDGMENT_KEYS = ["model_id", "condition", "prompt_id", "sample"]
TOP_K = 5
# AnthroBench frequencies count every judged response for every behaviour (the judge marks
# all 14 in each answer), not only the answers to prompts probing that behaviour.
ANTHRO_PROBED_ONLY = False

_S, _F, _I = pa.string(), pa.float64(), pa.int64()
SUBJECT_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("model", _S),
    ("kind", _S),
    ("setting", _S),
    ("value", _S),
    ("method", _S),
    ("beta", _F),
    ("temperature", _F),
    ("model_id", _S),
    ("condition", _S),
]


def _schema(*cols: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(n, t) for n, t in cols])


TABLES: dict[str, pa.Schema] = {
    "expression": _schema(
        *SUBJECT_COLUMNS,
        ("n", _I),
        ("n_expressing", _I),
        ("share", _F),
        ("n_unparsed", _I),
        ("n_failed", _I),
    ),
    "expression_summary": _schema(
        ("model", _S),
        ("kind", _S),
        ("setting", _S),
        ("mean", _F),
        ("se", _F),
        ("n_values", _I),
    ),
    "expression_by_beta": _schema(("value", _S), ("beta", _F), ("share", _F), ("n_models", _I)),
    "top_values": _schema(
        ("value", _S),
        ("kind", _S),
        ("rank", _I),
        ("expressed", _S),
        ("n_expressing", _I),
        ("n", _I),
        ("share", _F),
    ),
    "value_matrix": _schema(
        *SUBJECT_COLUMNS,
        ("expressed", _S),
        ("n_expressing", _I),
        ("n", _I),
        ("share", _F),
    ),
    "diversity": _schema(
        ("model", _S),
        ("kind", _S),
        ("setting", _S),
        ("method", _S),
        ("beta", _F),
        ("temperature", _F),
        ("mean_unique", _F),
        ("se", _F),
        ("n_values", _I),
        ("mean_n", _F),
    ),
    "robustness_orpo": _schema(
        ("model", _S),
        ("value", _S),
        ("setting", _S),
        ("beta_dpo", _F),
        ("beta_orpo", _F),
        ("model_id_dpo", _S),
        ("condition_dpo", _S),
        ("model_id_orpo", _S),
        ("condition_orpo", _S),
        ("r", _F),
        ("n_values", _I),
    ),
    "robustness_temperature": _schema(
        ("model", _S),
        ("value", _S),
        ("setting", _S),
        ("method", _S),
        ("beta", _F),
        ("temperature", _F),
        ("reference_temperature", _F),
        ("model_id", _S),
        ("condition", _S),
        ("model_id_ref", _S),
        ("condition_ref", _S),
        ("r", _F),
        ("n_values", _I),
    ),
    "refusal": _schema(
        *SUBJECT_COLUMNS,
        ("n", _I),
        ("n_ok", _I),
        ("n_unparsed", _I),
        ("n_failed", _I),
        ("n_refusal", _I),
        ("refusal_rate", _F),
        ("vanilla_model_id", _S),
        ("vanilla_condition", _S),
        ("vanilla_rate", _F),
        ("delta", _F),
    ),
    "refusal_by_value": _schema(
        ("value", _S),
        ("refusal_rate", _F),
        ("vanilla_rate", _F),
        ("delta", _F),
        ("n_models", _I),
        ("n_failed", _I),  # the induced models' responses left out of the rate
        ("n_unparsed", _I),
    ),
    "anthro": _schema(
        *SUBJECT_COLUMNS,
        ("level", _S),
        ("name", _S),
        ("group", _S),
        ("n", _I),
        ("n_present", _I),
        ("frequency", _F),
        ("n_unparsed", _I),
        ("n_failed", _I),
        ("vanilla_model_id", _S),
        ("vanilla_condition", _S),
        ("vanilla_frequency", _F),
        ("n_vanilla", _I),
        ("n_unparsed_vanilla", _I),
        ("difference", _F),
    ),
    "anthro_by_value": _schema(
        ("value", _S),
        ("level", _S),
        ("name", _S),
        ("group", _S),
        ("difference", _F),
        ("n_models", _I),
    ),
    "qa": _schema(
        ("model", _S),
        ("adapter", _S),
        ("value", _S),
        ("method", _S),
        ("beta", _F),
        ("task", _S),
        ("metric", _S),
        ("filter", _S),
        ("score", _F),
        ("vanilla", _F),
        ("delta", _F),
    ),
    "qa_summary": _schema(
        ("model", _S),
        ("method", _S),
        ("beta", _F),
        ("task", _S),
        ("metric", _S),
        ("filter", _S),
        ("mean", _F),
        ("std", _F),
        ("n_adapters", _I),
    ),
    "failures": _schema(
        ("benchmark", _S),
        ("model_id", _S),
        ("condition", _S),
        ("judge", _S),
        ("n", _I),
        ("n_ok", _I),
        ("n_unparsed", _I),
        ("n_failed", _I),
    ),
}


# Tables of the preference data and its value subsets (seed 004 Section 4, App. E), built
# by preference_tables from the extraction, subset and verification outputs: they need no
# evaluation run. The report shows them when it is given them.
PREFERENCE_TABLES: dict[str, pa.Schema] = {
    # Table 1: pairs with the value only in the chosen / only in the rejected response.
    "subset_sizes": _schema(("value", _S), ("chosen", _I), ("rejected", _I), ("total", _I)),
    # Figure 9: per source, responses of each side in which a value is extracted.
    "source_values": _schema(
        ("source", _S),
        ("value", _S),
        ("rank", _I),
        ("n_chosen", _I),
        ("n_rejected", _I),
        ("n_responses", _I),
        ("share_chosen", _F),
        ("share_rejected", _F),
        ("chosen_extracted", _I),
        ("rejected_extracted", _I),
    ),
    # Table 2, per value: the verifier's precision of the target value.
    "verification_by_value": _schema(
        ("verifier", _S),
        ("value", _S),
        ("n", _I),
        ("n_verified", _I),
        ("n_hit", _I),
        ("precision", _F),
        ("n_unparsed", _I),
        ("n_failed", _I),
    ),
    # Table 2: averaged precision of the random baselines and the verifier.
    "verification": _schema(
        ("annotator", _S),
        ("kind", _S),
        ("labels_per_sample", _F),
        ("precision", _F),
        ("micro", _F),
        ("n_values", _I),
        ("n_verified", _I),
    ),
}
SCHEMAS: dict[str, pa.Schema] = {**TABLES, **PREFERENCE_TABLES}
SOURCE_TOP_K = 20  # Figure 9 shows each source's top 20 values
MATRIX_TOP_K = 30  # Figure 2 shows the 30 most frequent values


# ---------------------------------------------------------------- frame helpers


def empty(name: str) -> pd.DataFrame:
    """The empty table `name` with its declared columns and dtypes."""
    return SCHEMAS[name].empty_table().to_pandas()


def finish(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """`df` as table `name`: its columns in schema order and types, exactly as read_table
    gives it back from Parquet (so a table in memory and on disk compare equal)."""
    schema = SCHEMAS[name]
    if df.empty:
        return empty(name)
    out = df.loc[:, schema.names].reset_index(drop=True)
    for f in schema:
        if pa.types.is_integer(f.type):
            out[f.name] = out[f.name].astype("int64")
        elif pa.types.is_floating(f.type):
            out[f.name] = pd.to_numeric(out[f.name], errors="raise").astype("float64")
        else:  # null, never the string "nan", where a string is missing
            out[f.name] = out[f.name].astype(object).where(out[f.name].notna(), None)
    return conform(out, schema).to_pandas()


def _close(x: pd.Series, y: float) -> pd.Series:
    return pd.Series(np.isclose(x.to_numpy(float), float(y)), index=x.index)


def prepare_subjects(subjects: pd.DataFrame | Iterable[Mapping[str, Any]] | None) -> pd.DataFrame:
    """The subject table with every contract column, values normalised, beta/temperature
    as floats, and the none/prompt rows stripped of method and beta."""
    cols = ["benchmark", *(c for c, _ in SUBJECT_COLUMNS)]
    df = subjects.copy() if isinstance(subjects, pd.DataFrame) else pd.DataFrame(subjects or [])
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"Study B subjects lack columns {missing}")
    df = df[cols].astype({c: object for c in cols})
    df["value"] = df["value"].map(normalise)
    df["beta"] = pd.to_numeric(df["beta"]).astype(float)
    df["temperature"] = pd.to_numeric(df["temperature"]).astype(float)
    unind = df["setting"].isin(UNINDUCED)
    df.loc[unind, "method"] = None
    df.loc[unind, "beta"] = np.nan
    return df.reset_index(drop=True)


def _judgments(judgments: Mapping[str, pd.DataFrame] | None, benchmark: str) -> pd.DataFrame:
    """One benchmark's judgments, each (subject, prompt, sample) once: the none setting's
    rows may arrive once per target value, and must count once."""
    j = (judgments or {}).get(benchmark)
    if j is None or j.empty:
        return pd.DataFrame(
            columns=[*JUDGMENT_KEYS, "category", "axis", "judge", "status", "score", "label"]
        )
    bad = set(j["status"].dropna()) - {STATUS_OK, STATUS_UNPARSED, STATUS_FAILED}
    if bad or j["status"].isna().any():
        raise ValueError(f"{benchmark} judgments have unknown statuses {sorted(map(str, bad))}")
    return j.drop_duplicates(JUDGMENT_KEYS).reset_index(drop=True)


def main_rows(subj: pd.DataFrame, main_beta: float, default_temperature: float) -> pd.DataFrame:
    """The rows of main-result subjects: DPO at main beta (none/prompt as they are) and
    the default temperature; any table with setting, method, beta and temperature."""
    induced = ~subj["setting"].isin(UNINDUCED)
    keep = _close(subj["temperature"], default_temperature) & (
        ~induced | ((subj["method"] == MAIN_METHOD) & _close(subj["beta"], main_beta))
    )
    return subj[keep]


def _order_values(
    df: pd.DataFrame, values: Sequence[str], extra: Sequence[str] = ()
) -> pd.DataFrame:
    """Rows in config value order (unknown values after, by name), then by `extra`."""
    rank = {v: i for i, v in enumerate(values)}
    key = df["value"].map(lambda v: (rank.get(v, len(rank)), str(v)))
    return (
        df.assign(_k=key)
        .sort_values(["_k", *extra], kind="stable")
        .drop(columns="_k")
        .reset_index(drop=True)
    )


# ---------------------------------------------------------------- value expression


def expression_frame(judgments: pd.DataFrame) -> pd.DataFrame:
    """IssueBench value-extractor judgments -> the table expression.value_frequencies reads.

    Columns model_id, condition, prompt_id, sample, status (ok|none|unparsed|failed) and
    values (a list, None unless extracted). An ok row with an empty label is the extractor's
    `none`: extracted, with no value.
    """
    cols = [*JUDGMENT_KEYS, "status", "values"]
    if judgments is None or judgments.empty:
        return pd.DataFrame(columns=cols)
    ok = judgments["status"] == STATUS_OK
    labels = judgments["label"].astype(object).where(judgments["label"].notna(), "")
    values = [
        [v for v in str(lab).split(ab.SEP) if v] if is_ok else None
        for lab, is_ok in zip(labels, ok, strict=True)
    ]
    status = np.select(
        [ok & (labels == ""), ok, judgments["status"] == STATUS_UNPARSED],
        [NONE, OK, UNPARSED],
        FAILED,
    )
    out = judgments[JUDGMENT_KEYS].copy()
    out["status"] = status
    out["values"] = pd.Series(values, index=judgments.index, dtype=object)
    return out.reset_index(drop=True)


def _expression(subj: pd.DataFrame, ext: pd.DataFrame) -> pd.DataFrame:
    if subj.empty:
        return empty("expression")
    freq = ex.target_frequencies(ext, subj.drop(columns="benchmark"))
    return finish("expression", freq)


def _expression_summary(
    expr: pd.DataFrame, main_beta: float, default_temperature: float, values: Sequence[str]
) -> pd.DataFrame:
    t = main_rows(expr, main_beta, default_temperature)
    if values:
        t = t[t["value"].isin(values)]
    if t.empty:
        return empty("expression_summary")
    out = ex.mean_se(t, by=("model", "kind", "setting"))
    order = {s: i for i, s in enumerate(SETTINGS)}
    out = out.assign(_s=out["setting"].map(order)).sort_values(["model", "_s"], kind="stable")
    return finish("expression_summary", out)


def _expression_by_beta(
    expr: pd.DataFrame, default_temperature: float, values: Sequence[str]
) -> pd.DataFrame:
    t = expr[
        (expr["setting"] == "both")
        & (expr["method"] == MAIN_METHOD)
        & _close(expr["temperature"], default_temperature)
    ].dropna(subset=["share"])
    if t.empty:
        return empty("expression_by_beta")
    g = t.groupby(["value", "beta"], sort=True)["share"]
    out = pd.DataFrame({"share": g.mean(), "n_models": g.count()}).reset_index()
    return finish("expression_by_beta", _order_values(out, values, ["beta"]))


def _top_values(
    ext: pd.DataFrame,
    subj: pd.DataFrame,
    main_beta: float,
    default_temperature: float,
    values: Sequence[str],
) -> pd.DataFrame:
    main = main_rows(subj, main_beta, default_temperature)
    both = main[main["setting"] == "both"][["value", "kind", *KEYS]].drop_duplicates()
    if both.empty or ext.empty:
        return empty("top_values")
    out = ex.top_values(ext, both, by=("value", "kind"), k=TOP_K)
    return finish("top_values", _order_values(out, values, ["kind", "rank"]))


def _setting_rank(df: pd.DataFrame) -> pd.Series:
    return df["setting"].map({x: i for i, x in enumerate(SETTINGS)}).fillna(len(SETTINGS))


def _value_matrix(subj: pd.DataFrame, ext: pd.DataFrame, values: Sequence[str]) -> pd.DataFrame:
    """Figures 2, 10, 11: every value each IssueBench subject expressed. The none setting's
    vanilla responses are listed once per model and temperature (value null), not once per
    target value, since they are the same responses."""
    if subj.empty or ext.empty:
        return empty("value_matrix")
    s = subj.drop(columns="benchmark")
    s = s.assign(value=s["value"].where(s["setting"] != "none", None)).drop_duplicates()
    out = ex.value_matrix(ext, s)
    if out.empty:
        return empty("value_matrix")
    rank = {v: i for i, v in enumerate(values)}
    out = out.assign(
        _s=_setting_rank(out),
        _m=out["method"].fillna(""),
        _vr=out["value"].map(lambda v: rank.get(v, len(rank)) if isinstance(v, str) else -1),
        _vn=out["value"].fillna(""),
    )
    keys = ["model", "_s", "_m", "beta", "temperature", "_vr", "_vn", "share", "expressed"]
    out = out.sort_values(keys, ascending=[True] * 7 + [False, True], kind="stable")
    return finish("value_matrix", out)


def _diversity(subj: pd.DataFrame, ext: pd.DataFrame, values: Sequence[str]) -> pd.DataFrame:
    """Figure 7 (App. D): per model, setting, method, beta and temperature, the mean over
    the target values of the number of distinct values the subject expressed
    (expression.value_diversity), its standard error and the mean number of responses."""
    if subj.empty:
        return empty("diversity")
    d = ex.value_diversity(ext, subj.drop(columns="benchmark"))
    if values:
        d = d[d["value"].isin(values)]
    d = d.dropna(subset=["n_unique"])
    if d.empty:
        return empty("diversity")
    # NaN and None are dropped as group keys: stand-ins for the vanilla model's.
    d = d.assign(_m=d["method"].fillna(""), _b=d["beta"].fillna(-1.0))
    g = d.groupby(["model", "kind", "setting", "_m", "_b", "temperature"], dropna=False)
    out = pd.DataFrame(
        {
            "mean_unique": g["n_unique"].mean(),
            "se": g["n_unique"].sem(ddof=1),
            "n_values": g["n_unique"].count(),
            "mean_n": g["n"].mean(),
        }
    ).reset_index()
    out["method"] = out["_m"].where(out["_m"] != "", None)
    out["beta"] = out["_b"].where(out["_b"] != -1.0, np.nan)
    out = out.assign(_s=_setting_rank(out)).sort_values(
        ["model", "_s", "_m", "_b", "temperature"], kind="stable"
    )
    return finish("diversity", out)


def _robustness_orpo(
    freqs: pd.DataFrame, subj: pd.DataFrame, main_beta: float, default_temperature: float
) -> pd.DataFrame:
    """Table 11: each ORPO subject (its beta is ORPO's lambda) against the DPO subject of the
    same model, value and setting at main beta; default temperature for both."""
    at_t = subj[_close(subj["temperature"], default_temperature)]
    on = ["model", "value", "setting"]
    orpo = at_t[at_t["method"] == ORPO]
    dpo = at_t[(at_t["method"] == MAIN_METHOD) & _close(at_t["beta"], main_beta)]
    pairs = orpo[[*on, "beta", *KEYS]].merge(
        dpo[[*on, "beta", *KEYS]].drop_duplicates(on), on=on, suffixes=("_orpo", "_dpo")
    )
    if pairs.empty:
        return empty("robustness_orpo")
    out = _paired_r(freqs, pairs, "_orpo", "_dpo")
    return finish("robustness_orpo", out.sort_values([*on, "beta_orpo"], kind="stable"))


def _paired_r(freqs: pd.DataFrame, pairs: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """expression.robustness_correlations on `pairs` whose subjects' keys are named
    model_id<a>, condition<a> and model_id<b>, condition<b> (kept so in the result)."""
    to_ab = {f"{k}{x}": f"{k}_{y}" for k in KEYS for x, y in ((a, "a"), (b, "b"))}
    out = ex.robustness_correlations(freqs, freqs, pairs.rename(columns=to_ab))
    return out.rename(columns={v: k for k, v in to_ab.items()})


def _robustness_temperature(
    freqs: pd.DataFrame, subj: pd.DataFrame, default_temperature: float
) -> pd.DataFrame:
    """Table 10: each subject at T != default against the same (model, value, setting,
    method, beta) at the default temperature."""
    on = ["model", "value", "setting", "_method", "_beta"]
    # NaN and None never match in a merge: stand-ins for the vanilla model's missing keys.
    s = subj.assign(_method=subj["method"].fillna(""), _beta=subj["beta"].fillna(-1.0))
    ref_mask = _close(s["temperature"], default_temperature)
    ref = s[ref_mask][[*on, *KEYS]].drop_duplicates(on)
    other = s[~ref_mask]
    pairs = other[[*on, "method", "beta", "temperature", *KEYS]].merge(
        ref.rename(columns={"model_id": "model_id_ref", "condition": "condition_ref"}), on=on
    )
    if pairs.empty:
        return empty("robustness_temperature")
    out = _paired_r(freqs, pairs, "", "_ref")
    out["reference_temperature"] = float(default_temperature)
    out = out.sort_values(["model", "setting", "temperature", "value"], kind="stable")
    return finish("robustness_temperature", out)


# ---------------------------------------------------------------- vanilla references


def _vanilla_keys(subj: pd.DataFrame, default_temperature: float) -> pd.DataFrame:
    """Per subject row: the (model_id, condition) of its model's none subject at the same
    temperature, else at the default temperature (vanilla_model_id, vanilla_condition)."""
    none = subj[subj["setting"] == "none"][["model", "temperature", *KEYS]]
    none = none.drop_duplicates(["model", "temperature"])
    same = subj[["model", "temperature"]].merge(none, on=["model", "temperature"], how="left")
    dflt = none[_close(none["temperature"], default_temperature)].drop_duplicates("model")
    fall = subj[["model"]].merge(dflt[["model", *KEYS]], on="model", how="left")
    out = pd.DataFrame(index=subj.index)
    for k in KEYS:
        out[f"vanilla_{k}"] = same[k].fillna(fall[k]).to_numpy()
    return out


# ---------------------------------------------------------------- refusal

RATE_COLUMNS = [*KEYS, "n", "n_ok", "n_unparsed", "n_failed", "n_refusal", "refusal_rate"]


def _with_vanilla(subj: pd.DataFrame, default_temperature: float) -> pd.DataFrame:
    """Subject rows (benchmark dropped) with their vanilla keys and their input position."""
    s = subj.drop(columns="benchmark").reset_index(drop=True)
    v = _vanilla_keys(s, default_temperature)
    return pd.concat([s, v], axis=1).assign(_row=range(len(s)))


def _refusal(subj: pd.DataFrame, judg: pd.DataFrame, default_temperature: float) -> pd.DataFrame:
    if subj.empty:
        return empty("refusal")
    rates = rf.refusal_rates(judg) if len(judg) else pd.DataFrame(columns=RATE_COLUMNS)
    s = _with_vanilla(subj, default_temperature)
    parts = []
    for (vmid, vcond), grp in s.groupby(["vanilla_model_id", "vanilla_condition"], dropna=False):
        r = rates[rates["model_id"].isin([*grp["model_id"], vmid])]
        if ((r["model_id"] == vmid) & (r["condition"] == vcond)).sum() == 1:
            r = rf.refusal_delta(r, vmid, vcond)
        else:  # the model's vanilla responses were not judged: no reference rate
            r = r.assign(vanilla_rate=np.nan, delta=np.nan)
        parts.append(grp.merge(r, on=KEYS, how="left"))
    out = pd.concat(parts, ignore_index=True).sort_values("_row")
    for c in ("n", "n_ok", "n_unparsed", "n_failed", "n_refusal"):
        out[c] = out[c].fillna(0)
    return finish("refusal", out)


def _refusal_by_value(
    ref: pd.DataFrame, main_beta: float, default_temperature: float, values: Sequence[str]
) -> pd.DataFrame:
    """Figure 5: per value, the mean over models of the both-setting refusal delta."""
    t = main_rows(ref, main_beta, default_temperature)
    t = t[t["setting"] == "both"].dropna(subset=["delta"])
    if t.empty:
        return empty("refusal_by_value")
    g = t.groupby("value", sort=True)
    out = pd.DataFrame(
        {
            "refusal_rate": g["refusal_rate"].mean(),
            "vanilla_rate": g["vanilla_rate"].mean(),
            "delta": g["delta"].mean(),
            "n_models": g["model"].nunique(),
            "n_failed": g["n_failed"].sum(),
            "n_unparsed": g["n_unparsed"].sum(),
        }
    ).reset_index()
    return finish("refusal_by_value", _order_values(out, values))


# ---------------------------------------------------------------- anthropomorphism

# Behaviours in Table 12 order, then the groups ("physical_embodiment" is both a behaviour
# and a group, so the level is part of the key).
_NAME_ORDER = {
    k: i
    for i, k in enumerate(
        [*(("behaviour", b) for b in ab.BEHAVIOURS), *(("group", g) for g in ab.GROUPS)]
    )
}


def _name_order(df: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [_NAME_ORDER.get(k, len(_NAME_ORDER)) for k in zip(df["level"], df["name"], strict=True)],
        index=df.index,
    )


def _anthro(subj: pd.DataFrame, judg: pd.DataFrame, default_temperature: float) -> pd.DataFrame:
    if subj.empty or judg.empty:
        return empty("anthro")
    freqs = ab.behaviour_frequencies(judg, probed_only=ANTHRO_PROBED_ONLY)
    s = _with_vanilla(subj, default_temperature)
    parts = []
    for (vmid, vcond), grp in s.groupby(["vanilla_model_id", "vanilla_condition"], dropna=False):
        f = freqs[freqs["model_id"].isin([*grp["model_id"], vmid])]
        if ((f["model_id"] == vmid) & (f["condition"] == vcond)).any():
            f = ab.difference_vs_vanilla(f, vmid, vcond)
        else:  # the model's vanilla responses were not judged: no reference frequency
            f = f.assign(
                vanilla_frequency=np.nan, n_vanilla=0, n_unparsed_vanilla=0, difference=np.nan
            )
        parts.append(grp.merge(f, on=KEYS))  # a subject without judged responses has no row
    out = pd.concat(parts, ignore_index=True)
    if out.empty:
        return empty("anthro")
    out = out.assign(_n=_name_order(out)).sort_values(["_row", "_n"], kind="stable")
    return finish("anthro", out)


def _anthro_by_value(
    anth: pd.DataFrame, main_beta: float, default_temperature: float, values: Sequence[str]
) -> pd.DataFrame:
    """Figure 4: per value and behaviour (or group), the both-setting difference versus
    vanilla "summed across all models"."""
    t = main_rows(anth, main_beta, default_temperature)
    t = t[t["setting"] == "both"].dropna(subset=["difference"])
    if t.empty:
        return empty("anthro_by_value")
    g = t.groupby(["value", "level", "name", "group"], sort=False)
    out = pd.DataFrame(
        {"difference": g["difference"].sum(), "n_models": g["model"].nunique()}
    ).reset_index()
    out = out.assign(_n=_name_order(out)).sort_values("_n", kind="stable")
    return finish("anthro_by_value", _order_values(out, values))


# ---------------------------------------------------------------- QA

QA_SUBJECT_COLUMNS = ["model", "model_id", "value", "method", "beta"]


def _qa(qa: pd.DataFrame | None, qa_subjects: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per adapter deltas versus vanilla (qa_eval.qa_deltas) with the adapter's value,
    method and beta; Table 8 (qa_eval.qa_delta_summary) per method and beta."""
    if qa is None or qa.empty:
        return empty("qa"), empty("qa_summary")
    d = qe.qa_deltas(qa.drop_duplicates()).rename(columns={"value": "score"})
    qs = qa_subjects if isinstance(qa_subjects, pd.DataFrame) else pd.DataFrame(qa_subjects or [])
    qs = qs.reindex(columns=QA_SUBJECT_COLUMNS).astype(object)
    qs = qs.assign(
        value=qs["value"].map(lambda v: normalise(v) if isinstance(v, str) else None),
        beta=pd.to_numeric(qs["beta"]).astype(float),
    ).rename(columns={"model_id": "adapter"})
    d = d.merge(qs.drop_duplicates(["model", "adapter"]), on=["model", "adapter"], how="left")
    table = finish("qa", d.sort_values(["model", "adapter", "task", "metric", "filter"]))
    # An adapter missing from qa_subjects stays a group of its own (method None, beta NaN).
    g = table.assign(_m=table["method"].fillna(""), _b=table["beta"].fillna(-1.0))
    parts = [
        qe.qa_delta_summary(sub.drop(columns="value").rename(columns={"score": "value"})).assign(
            method=m or None, beta=np.nan if b == -1.0 else b
        )
        for (m, b), sub in g.groupby(["_m", "_b"], sort=True)
    ]
    return table, finish("qa_summary", pd.concat(parts, ignore_index=True))


# ---------------------------------------------------------------- failures


def _failures(subj: pd.DataFrame, judgments: Mapping[str, pd.DataFrame] | None) -> pd.DataFrame:
    """Per benchmark and subject: rows, ok, unparsed, failed, and the judge(s) named in the
    rows. A planned subject without any row shows n = 0 (judge None)."""
    counts = ["n", "n_ok", "n_unparsed", "n_failed"]
    parts = []
    for b in sorted(set(BENCHMARKS) | set(judgments or {})):
        j = _judgments(judgments, b)
        planned = subj[subj["benchmark"] == b][KEYS].drop_duplicates()
        if len(j):
            st = j["status"]
            flags = j[KEYS].assign(
                n=1,
                n_ok=(st == STATUS_OK).astype(int),
                n_unparsed=(st == STATUS_UNPARSED).astype(int),
                n_failed=(st == STATUS_FAILED).astype(int),
            )
            got = flags.groupby(KEYS, sort=True).sum()
            got["judge"] = j.groupby(KEYS, sort=True)["judge"].agg(
                lambda x: "; ".join(sorted(set(map(str, x.dropna()))))
            )
            planned = planned.merge(got.reset_index(), on=KEYS, how="outer")
        elif planned.empty:
            continue
        planned = planned.reindex(columns=[*KEYS, *counts, "judge"])
        planned[counts] = planned[counts].fillna(0)
        parts.append(planned.assign(benchmark=b).sort_values(KEYS))
    if not parts:
        return empty("failures")
    return finish("failures", pd.concat(parts, ignore_index=True))


# ---------------------------------------------------------------- entry point


def build_tables(
    subjects: pd.DataFrame | Iterable[Mapping[str, Any]] | None,
    judgments: Mapping[str, pd.DataFrame] | None,
    qa: pd.DataFrame | None,
    qa_subjects: pd.DataFrame | Iterable[Mapping[str, Any]] | None,
    main_beta: float,
    values: Sequence[str],
    default_temperature: float = 0.7,
) -> dict[str, pd.DataFrame]:
    """Every table of TABLES (module docstring), in TABLES order."""
    subj = prepare_subjects(subjects)
    vals = [normalise(v) for v in values]
    beta, temp = float(main_beta), float(default_temperature)
    of = {b: subj[subj["benchmark"] == b] for b in BENCHMARKS}

    ext = expression_frame(_judgments(judgments, EXPRESSION_BENCH))
    freqs = ex.value_frequencies(ext)
    expr = _expression(of[EXPRESSION_BENCH], ext)
    ref = _refusal(of[REFUSAL_BENCH], _judgments(judgments, REFUSAL_BENCH), temp)
    anth = _anthro(of[ANTHRO_BENCH], _judgments(judgments, ANTHRO_BENCH), temp)
    qa_table, qa_summary = _qa(qa, qa_subjects)
    out = {
        "expression": expr,
        "expression_summary": _expression_summary(expr, beta, temp, vals),
        "expression_by_beta": _expression_by_beta(expr, temp, vals),
        "top_values": _top_values(ext, of[EXPRESSION_BENCH], beta, temp, vals),
        "value_matrix": _value_matrix(of[EXPRESSION_BENCH], ext, vals),
        "diversity": _diversity(of[EXPRESSION_BENCH], ext, vals),
        "robustness_orpo": _robustness_orpo(freqs, of[EXPRESSION_BENCH], beta, temp),
        "robustness_temperature": _robustness_temperature(freqs, of[EXPRESSION_BENCH], temp),
        "refusal": ref,
        "refusal_by_value": _refusal_by_value(ref, beta, temp, vals),
        "anthro": anth,
        "anthro_by_value": _anthro_by_value(anth, beta, temp, vals),
        "qa": qa_table,
        "qa_summary": qa_summary,
        "failures": _failures(subj, judgments),
    }
    assert list(out) == list(TABLES), "every declared table, in order"
    return out


def write_tables(
    tables: Mapping[str, pd.DataFrame],
    out_dir: str | os.PathLike[str],
    schemas: Mapping[str, pa.Schema] = TABLES,
) -> list[str]:
    """Write every table of `schemas` (TABLES, or PREFERENCE_TABLES) to
    <out_dir>/<name>.parquet (schema-checked, atomic)."""
    missing = [n for n in schemas if n not in tables]
    if missing:
        raise ValueError(f"Study B tables missing: {missing}")
    paths = []
    for name, schema in schemas.items():
        paths.append(str(Path(out_dir) / f"{name}.parquet"))
        write_table(paths[-1], tables[name], schema)
    return paths


def read_tables(paths: Iterable[str | os.PathLike[str]]) -> dict[str, pd.DataFrame]:
    """The tables written by write_tables, each read with its declared schema; the file stem
    names the table. Every name of TABLES must be there exactly once; those of
    PREFERENCE_TABLES may be (they come after TABLES' in the result)."""
    tables: dict[str, pd.DataFrame] = {}
    for p in paths:
        name = Path(p).name.removesuffix(".parquet")
        if name not in SCHEMAS:
            raise ValueError(f"{p}: not a Study B table (known: {', '.join(SCHEMAS)})")
        if name in tables:
            raise ValueError(f"{p}: Study B table {name!r} given twice")
        tables[name] = read_table(p, SCHEMAS[name])
    missing = [n for n in TABLES if n not in tables]
    if missing:
        raise ValueError(f"Study B tables missing: {missing}")
    return {n: tables[n] for n in SCHEMAS if n in tables}


# ---------------------------------------------------------------- preference data


@dataclass(frozen=True)
class VerifyFiles:
    """The outputs of the studyb_verify rule (Table 2)."""

    verifications: str
    precision: str
    baselines: str
    summary: str


_SHARD = re.compile(r"_\d+of\d+$")


def dataset_name(source: str) -> str:
    """The dataset a preference source belongs to: the shards of one release (named
    `<dataset>_1of3`, ...) are one dataset, as in Figure 9."""
    return _SHARD.sub("", source)


def source_values(extractions: pd.DataFrame, sources: Sequence[str] = ()) -> pd.DataFrame:
    """Figure 9: per dataset (dataset_name of the sources; `sources` first, in order),
    every extracted value with the chosen and rejected responses expressing it
    (extract.value_counts), ranked by both sides together; shares are of the side's
    extracted responses."""
    extractions = extractions.assign(source=extractions["source"].map(dataset_name))
    parts = []
    for src in dict.fromkeys([*map(dataset_name, sources), *extractions["source"]]):
        e = extractions[extractions["source"] == src]
        counts = value_counts(e)
        if counts.empty:
            continue
        done = e[e["status"].isin(PARSED)]
        n_c, n_r = int((done["side"] == "chosen").sum()), int((done["side"] == "rejected").sum())
        parts.append(
            counts.assign(
                source=src,
                rank=range(1, len(counts) + 1),
                share_chosen=counts["n_chosen"] / n_c if n_c else np.nan,
                share_rejected=counts["n_rejected"] / n_r if n_r else np.nan,
                chosen_extracted=n_c,
                rejected_extracted=n_r,
            )
        )
    if not parts:
        return empty("source_values")
    return finish("source_values", pd.concat(parts, ignore_index=True))


def verification_tables(files: VerifyFiles, values: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Table 2 from the verifier's outputs: precision per value, and the averaged precision
    of the random baselines and the verifier (macro: mean over values; micro: pooled)."""
    prec = read_table(files.precision, vf.PRECISION_SCHEMA)
    base = read_table(files.baselines, vf.BASELINES_SCHEMA)
    ver = read_table(files.verifications, vf.VERIFICATIONS_SCHEMA)
    name = str(read_json(files.summary).get("verifier") or "verifier")
    by_value = _order_values(prec.assign(verifier=name), [normalise(v) for v in values])
    rows = [
        {
            "annotator": f"random baseline (k={int(b.k)} of {int(b.pool_size)} labels)",
            "kind": "random",
            "labels_per_sample": float(min(b.k, b.pool_size)),
            "precision": b.precision,
            "micro": b.precision,  # the same chance for every value
            "n_values": len(values),
            "n_verified": 0,
        }
        for b in base.itertuples(index=False)
    ]
    done = ver[ver["status"].isin(PARSED)]
    avg = vf.averaged_precision(prec)
    rows.append(
        {
            "annotator": name,
            "kind": "verifier",
            "labels_per_sample": done["labels"].map(len).mean() if len(done) else np.nan,
            "precision": np.nan if avg["macro"] is None else avg["macro"],
            "micro": np.nan if avg["micro"] is None else avg["micro"],
            "n_values": int(prec["precision"].notna().sum()),
            "n_verified": int(prec["n_verified"].sum()),
        }
    )
    return {
        "verification_by_value": finish("verification_by_value", by_value),
        "verification": finish("verification", pd.DataFrame(rows)),
    }


def preference_tables(
    extraction_paths: Sequence[str],
    sizes_path: str,
    verify_files: VerifyFiles | None,
    values: Sequence[str],
    synonyms: Mapping[str, str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every table of PREFERENCE_TABLES: Table 1 (studyb_subsets' subset sizes), Figure 9
    (the extractions parsed again with `synonyms`, as the subsets are) and Table 2 (the
    verifier's outputs; empty tables when verification is off)."""
    frames = [read_table(p, EXTRACTIONS_SCHEMA) for p in extraction_paths]
    ext = reparse(pd.concat(frames, ignore_index=True), synonyms) if frames else None
    sources = [str(f["source"].iat[0]) for f in frames if len(f)]
    out = {
        "subset_sizes": finish("subset_sizes", read_table(sizes_path, SUBSET_SIZES_SCHEMA)),
        "source_values": empty("source_values") if ext is None else source_values(ext, sources),
        "verification_by_value": empty("verification_by_value"),
        "verification": empty("verification"),
    }
    if verify_files is not None:
        out.update(verification_tables(verify_files, values))
    assert list(out) == list(PREFERENCE_TABLES), "every declared table, in order"
    return out


def preference_tables_job(job: Job) -> None:
    """The studyb_preference_tables rule's job (scripts/studyb_preference_tables.py)."""
    inp, p = job.input, job.params
    files = None
    if inp.get("precision"):
        files = VerifyFiles(
            inp["verifications"], inp["precision"], inp["baselines"], inp["summary"]
        )
    tables = preference_tables(
        inp.list("extractions"), inp["sizes"], files, list(p["values"]), p["synonyms"]
    )
    for name, df in tables.items():
        log.info("%s: %d rows", name, len(df))
    write_tables(tables, os.path.dirname(job.output[0]), PREFERENCE_TABLES)
