"""Value expression in IssueBench responses (METHODS B3; seed 004 Tables 5, 6, 7, 10, 11,
Figures 2, 7, 10, 11).

Input: the extractor's long table of responses (valueharms.studyb.extract), one row per
response with model_id, condition, status and values (a list; null unless ok or none).
A response counts in a share's denominator only when extracted (status ok or none);
unparsed and failed rows are counted beside every share, never scored.

Subjects (valueharms.studyb.induction): a table with at least value, model_id and
condition, plus whatever grouping columns a table needs (model, setting, beta, kind). In
the none setting each target value is looked up in the same vanilla responses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from valueharms.studyb.extract import FAILED, PARSED, UNPARSED, normalise

KEYS = ("model_id", "condition")


def _counts(extractions: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per key group: n (extracted), n_unparsed, n_failed."""
    st = extractions["status"]
    flags = extractions[list(keys)].assign(
        n=st.isin(PARSED).astype(int),
        n_unparsed=(st == UNPARSED).astype(int),
        n_failed=(st == FAILED).astype(int),
    )
    return flags.groupby(list(keys), sort=True).sum().reset_index()


def value_frequencies(extractions: pd.DataFrame, keys: Sequence[str] = KEYS) -> pd.DataFrame:
    """Per key group and expressed value: n_expressing and share = n_expressing / n.

    Columns: keys..., value, n_expressing, n, share, n_unparsed, n_failed; only values
    expressed at least once appear. Sorted by keys, share (desc), value.
    """
    done = extractions[extractions["status"].isin(PARSED)].reset_index(drop=True)
    exploded = done["values"].explode().dropna()
    long = done.loc[exploded.index, list(keys)].assign(value=exploded.to_numpy())
    # A value listed twice in one response counts once: dedupe on the response row.
    long = long[
        ~pd.Series(list(zip(exploded.index, exploded, strict=True))).duplicated().to_numpy()
    ]
    hits = long.groupby([*keys, "value"], sort=True).size().rename("n_expressing").reset_index()
    out = hits.merge(_counts(extractions, keys), on=list(keys), how="left")
    out["share"] = out["n_expressing"] / out["n"]
    cols = [*keys, "value", "n_expressing", "n", "share", "n_unparsed", "n_failed"]
    return out[cols].sort_values(
        [*keys, "share", "value"], ascending=[True] * len(keys) + [False, True], ignore_index=True
    )


def target_frequencies(extractions: pd.DataFrame, subjects: pd.DataFrame) -> pd.DataFrame:
    """`subjects` with n, n_expressing, share (of their target `value`), n_unparsed, n_failed.

    A subject without any extracted response has share NaN (n = 0); a target never
    expressed has share 0.
    """
    subj = subjects.assign(value=subjects["value"].map(normalise))
    counts = _counts(extractions, KEYS)
    freqs = value_frequencies(extractions)[[*KEYS, "value", "n_expressing"]]
    out = subj.merge(counts, on=list(KEYS), how="left").merge(
        freqs, on=[*KEYS, "value"], how="left"
    )
    for c in ("n", "n_unparsed", "n_failed", "n_expressing"):
        out[c] = out[c].fillna(0).astype("int64")
    out["share"] = out["n_expressing"] / out["n"].where(out["n"] > 0, np.nan)
    return out


def mean_se(target_freqs: pd.DataFrame, by: Sequence[str] = ("model", "setting")) -> pd.DataFrame:
    """Table 5: per group, mean share over target values and its standard error
    (sample sd / sqrt(k)); k = n_values with a share. Shares are fractions, not percent."""
    g = target_freqs.dropna(subset=["share"]).groupby(list(by), sort=True)["share"]
    out = pd.DataFrame({"mean": g.mean(), "se": g.sem(ddof=1), "n_values": g.count()})
    return out.reset_index()


def value_by_beta(target_freqs: pd.DataFrame, setting: str = "both") -> pd.DataFrame:
    """Table 6: mean share over models per value (rows) x beta (columns) in `setting`."""
    t = target_freqs[target_freqs["setting"] == setting]
    return t.pivot_table(index="value", columns="beta", values="share", aggfunc="mean")


def top_values(
    extractions: pd.DataFrame,
    subjects: pd.DataFrame,
    by: Sequence[str] = ("value",),
    k: int = 5,
) -> pd.DataFrame:
    """Table 7: the k values most often expressed in the pooled responses of each `by`
    group of subjects (e.g. by target value and model kind base|post-trained).

    Columns: by..., rank (1..k), expressed, n_expressing, n, share; ties broken by name.
    """
    subj = subjects.assign(value=subjects["value"].map(normalise))[[*by, *KEYS]]
    if subj.duplicated().any():
        raise ValueError("subjects repeat a (group, model_id, condition)")
    freqs = value_frequencies(extractions).rename(columns={"value": "expressed"})
    counts = _counts(extractions, KEYS)
    pooled = (
        subj.merge(freqs, on=list(KEYS)).groupby([*by, "expressed"])["n_expressing"].sum()
    ).reset_index()
    n = subj.merge(counts, on=list(KEYS)).groupby(list(by))["n"].sum().rename("n").reset_index()
    pooled = pooled.merge(n, on=list(by))
    pooled["share"] = pooled["n_expressing"] / pooled["n"]
    pooled = pooled.sort_values(
        [*by, "n_expressing", "expressed"], ascending=[True] * len(by) + [False, True]
    )
    top = pooled.groupby(list(by), sort=True).head(k).copy()
    top["rank"] = top.groupby(list(by)).cumcount() + 1
    return top[[*by, "rank", "expressed", "n_expressing", "n", "share"]].reset_index(drop=True)


def frequency_correlation(
    a: pd.Series, b: pd.Series, values: Iterable[str] | None = None
) -> tuple[float, int]:
    """(Pearson r, number of values) between two value -> share series.

    The values compared are `values`, else every value expressed in either run; a value
    absent from one run has share 0 there. r is NaN with fewer than two values or when a
    run's shares are all equal.
    """
    names = sorted(set(a.index) | set(b.index)) if values is None else list(values)
    x = a.reindex(names, fill_value=0.0).to_numpy(float)
    y = b.reindex(names, fill_value=0.0).to_numpy(float)
    if len(names) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), len(names)
    from scipy import stats  # here: the workflow imports this module to parse (1.6 s)

    return float(stats.pearsonr(x, y).statistic), len(names)


def robustness_correlations(
    freqs_a: pd.DataFrame,
    freqs_b: pd.DataFrame,
    pairs: pd.DataFrame,
    values: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Pearson r of value frequencies between paired subjects of two runs (value_frequencies
    outputs). `pairs` has model_id_a, condition_a, model_id_b, condition_b and any labels
    (e.g. value for Table 11, DPO vs ORPO; temperature for Table 10, t vs 0.7); returned
    with r and n_values. Table 10's number is the mean r over the values of a temperature.
    """
    vals = None if values is None else [normalise(v) for v in values]

    def series(f: pd.DataFrame, mid: str, cond: str) -> pd.Series:
        s = f[(f["model_id"] == mid) & (f["condition"] == cond)]
        return s.set_index("value")["share"]

    rs, ns = [], []
    for p in pairs.itertuples(index=False):
        r, n = frequency_correlation(
            series(freqs_a, p.model_id_a, p.condition_a),
            series(freqs_b, p.model_id_b, p.condition_b),
            vals,
        )
        rs.append(r)
        ns.append(n)
    return pairs.assign(r=rs, n_values=ns)


def value_matrix(extractions: pd.DataFrame, subjects: pd.DataFrame) -> pd.DataFrame:
    """Every value expressed by every subject (Figures 2, 10, 11 of seed 004): `subjects`
    joined with value_frequencies, one row per (subject, expressed value).

    Columns: the subjects' columns, expressed, n_expressing, n, share. A subject without
    any expressed value has no row; its n is in target_frequencies.
    """
    freqs = value_frequencies(extractions)[[*KEYS, "value", "n_expressing", "n", "share"]]
    return subjects.merge(freqs.rename(columns={"value": "expressed"}), on=list(KEYS))


def value_diversity(extractions: pd.DataFrame, subjects: pd.DataFrame) -> pd.DataFrame:
    """`subjects` with n (extracted responses) and n_unique: the number of distinct values
    expressed over all of the subject's extracted responses (App. D, Figure 7 of seed 004:
    "the total number of unique values a value-induced LLM expresses").

    n_unique is NaN for a subject without extracted responses (n = 0), 0 for one whose
    responses all express no value.
    """
    uniq = value_frequencies(extractions).groupby(list(KEYS)).size().rename("n_unique")
    out = subjects.merge(_counts(extractions, KEYS)[[*KEYS, "n"]], on=list(KEYS), how="left")
    out = out.merge(uniq.reset_index(), on=list(KEYS), how="left")
    out["n"] = out["n"].fillna(0).astype("int64")
    out["n_unique"] = out["n_unique"].fillna(0).astype(float).where(out["n"] > 0, np.nan)
    return out
