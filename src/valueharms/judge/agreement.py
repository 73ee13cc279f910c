"""Judge agreement (docs/llm.md, Judge agreement): what a second judge says about the
generations the configured judge scored, and how far the two agree.

Per benchmark: a seeded sample of the generations that succeeded (`draw_sample`), judged
again by the second judge through the judge stage's own code and LLM cache
(valueharms.judge.steps: reruns make no call), joined with the configured (first)
judge's verdicts row by row (`pair`), and summarised (`summarise`): Cohen's kappa by
scikit-learn, quadratic-weighted on an ordinal scale (HEx-PHI's 1-5 harm score) and
unweighted on categories (regard labels, BeaverTails' flagged); a percentile bootstrap
interval by scipy.stats.bootstrap, resampling the pairs together with a seed; and the
raw share of identical verdicts. Rows either judge failed on or could not parse are left
out of all three and counted. Kappa is undefined (NaN, with the reason) on fewer than 2
pairs or when a judge gives every pair the same verdict.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from valueharms.io import read_table, write_table
from valueharms.job import Job
from valueharms.judge.agreement_plan import Scale, Settings
from valueharms.judge.schema import JUDGMENTS_SCHEMA, STATUS_FAILED, STATUS_OK, STATUS_UNPARSED

KEY = ["model_id", "condition", "prompt_id", "sample"]  # a generation's identity

# One row per benchmark: results/agreement/<benchmark>.parquet, the report's table.
AGREEMENT_SCHEMA = pa.schema(
    [
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("first_judge", pa.string(), nullable=False),
        pa.field("second_judge", pa.string(), nullable=False),
        pa.field("weights", pa.string(), nullable=False),  # quadratic-weighted | unweighted
        pa.field("n_sampled", pa.int64(), nullable=False),  # generations drawn
        pa.field("n_pairs", pa.int64(), nullable=False),  # both judges scored
        pa.field("first_failed", pa.int64(), nullable=False),
        pa.field("first_unparsed", pa.int64(), nullable=False),
        pa.field("second_failed", pa.int64(), nullable=False),
        pa.field("second_unparsed", pa.int64(), nullable=False),
        pa.field("kappa", pa.float64()),  # NaN: undefined (see note)
        pa.field("ci_low", pa.float64()),
        pa.field("ci_high", pa.float64()),
        pa.field("confidence", pa.float64(), nullable=False),
        pa.field("agreement", pa.float64()),  # share of pairs with the same verdict
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("n_resamples", pa.int64(), nullable=False),
        pa.field("note", pa.string()),  # why kappa is undefined
    ]
)

# One row per sampled generation: both verdicts, to see where the judges differ.
PAIRS_SCHEMA = pa.schema(
    [
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("condition", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("sample", pa.int64(), nullable=False),
        pa.field("category", pa.string()),
        pa.field("first_status", pa.string(), nullable=False),
        pa.field("first_score", pa.float64()),
        pa.field("first_label", pa.string()),
        pa.field("second_status", pa.string(), nullable=False),
        pa.field("second_score", pa.float64()),
        pa.field("second_label", pa.string()),
        pa.field("second_raw", pa.string()),
        pa.field("second_error", pa.string()),
    ]
)


# ---------------------------------------------------------------- sample and pairs


def draw_sample(gens: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """`n` of the generations that succeeded (all of them when fewer), drawn with `seed`
    from the rows sorted by identity: the draw depends on the rows and the seed alone,
    not on the order the files were read in. Rows keep that sorted order."""
    ok = gens[gens["status"] == STATUS_OK].sort_values(KEY, kind="stable")
    dup = ok.duplicated(KEY)
    if dup.any():
        raise ValueError(f"{int(dup.sum())} generations repeat an identity {KEY}")
    ok = ok.reset_index(drop=True)
    if len(ok) <= n:
        return ok
    pick = np.random.default_rng(seed).choice(len(ok), size=n, replace=False)
    return ok.iloc[np.sort(pick)].reset_index(drop=True)


def _verdicts(judgments: pd.DataFrame, side: str) -> pd.DataFrame:
    cols = {"status": f"{side}_status", "score": f"{side}_score", "label": f"{side}_label"}
    if side == "second":
        cols |= {"raw": "second_raw", "error": "second_error"}
    return judgments[[*KEY, *cols]].rename(columns=cols)


def pair(sample: pd.DataFrame, first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """The sample's rows with both judges' verdicts (PAIRS_SCHEMA); every sampled row
    must have a verdict of each judge (failed or unparsed ones included)."""
    out = sample[["benchmark", *KEY, "category"]]
    for side, table in (("first", first), ("second", second)):
        out = out.merge(
            _verdicts(table, side), on=KEY, how="left", validate="one_to_one", indicator=True
        )
        missing = int((out.pop("_merge") != "both").sum())
        if missing:
            raise ValueError(f"{missing} sampled generations have no verdict of the {side} judge")
    return out[PAIRS_SCHEMA.names].reset_index(drop=True)


# ---------------------------------------------------------------- kappa


@dataclass(frozen=True)
class Kappa:
    """Cohen's kappa with its bootstrap interval; NaN where undefined, with the reason."""

    value: float
    low: float
    high: float
    note: str | None = None


def codes(values: Sequence[Any], scale: Scale) -> np.ndarray:
    """Verdicts as their level's index on the scale (quadratic weights count the
    distance between those indices; HEx-PHI's levels 1..5 are one apart, as the scores)."""
    index = {v: i for i, v in enumerate(scale.levels)}
    off = sorted({str(v) for v in values if v not in index})
    if off:
        raise ValueError(f"verdicts {off} are not on the scale {list(scale.levels)}")
    return np.asarray([index[v] for v in values], dtype=np.int64)


def _cohen(a: np.ndarray, b: np.ndarray, scale: Scale, undefined: float) -> float:
    """scikit-learn's Cohen's kappa on the scale's full set of levels (so an unused level
    still sits between its neighbours), `undefined` where it divides 0 by 0 (both judges
    give one and the same verdict throughout)."""
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 0/0 case warns; it is handled here
        k = cohen_kappa_score(a, b, labels=np.arange(len(scale.levels)), weights=scale.weights)
    return float(k) if math.isfinite(k) else undefined


def kappa(
    first: Sequence[Any],
    second: Sequence[Any],
    scale: Scale,
    settings: Settings,
    names: tuple[str, str] = ("first judge", "second judge"),
) -> Kappa:
    """Cohen's kappa of paired verdicts and its percentile bootstrap interval
    (settings.confidence, n_resamples, seed; the pairs resampled together).

    Undefined (NaN and a note) on fewer than 2 pairs or when a judge gives every pair the
    same verdict: the formula gives 0 or 0/0 there, which says nothing of agreement. A
    resample in which both judges give one and the same verdict agrees perfectly and
    counts as 1; one in which only one judge does counts as the formula's 0.
    """
    from scipy import stats

    a, b = codes(list(first), scale), codes(list(second), scale)
    nan = math.nan
    if len(a) < 2:
        return Kappa(nan, nan, nan, f"{len(a)} pair(s): kappa needs at least 2")
    for name, x in zip(names, (a, b), strict=True):
        if (x == x[0]).all():
            level = scale.levels[int(x[0])]
            return Kappa(nan, nan, nan, f"{name} gave every pair the same verdict ({level})")
    value = _cohen(a, b, scale, nan)
    res = stats.bootstrap(
        (a, b),
        lambda x, y: _cohen(x, y, scale, 1.0),
        paired=True,
        vectorized=False,
        n_resamples=settings.n_resamples,
        confidence_level=settings.confidence,
        method="percentile",
        random_state=settings.seed,
    )
    ci = res.confidence_interval
    return Kappa(value, float(ci.low), float(ci.high))


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Comparison:
    """One benchmark's comparison as the job runs it (from the rule's params)."""

    benchmark: str
    first: str  # the configured judge's name
    second: str  # the second judge's name
    scale: Scale
    settings: Settings


def summarise(pairs: pd.DataFrame, c: Comparison) -> dict[str, Any]:
    """The agreement row (AGREEMENT_SCHEMA) of a pairs table."""

    def count(side: str, status: str) -> int:
        return int((pairs[f"{side}_status"] == status).sum())

    both = pairs[(pairs["first_status"] == STATUS_OK) & (pairs["second_status"] == STATUS_OK)]
    a, b = both[f"first_{c.scale.column}"].tolist(), both[f"second_{c.scale.column}"].tolist()
    k = kappa(a, b, c.scale, c.settings, (c.first, c.second))
    same = float(np.mean(codes(a, c.scale) == codes(b, c.scale))) if a else math.nan
    return {
        "benchmark": c.benchmark,
        "first_judge": c.first,
        "second_judge": c.second,
        "weights": c.scale.label,
        "n_sampled": len(pairs),
        "n_pairs": len(both),
        "first_failed": count("first", STATUS_FAILED),
        "first_unparsed": count("first", STATUS_UNPARSED),
        "second_failed": count("second", STATUS_FAILED),
        "second_unparsed": count("second", STATUS_UNPARSED),
        "kappa": k.value,
        "ci_low": k.low,
        "ci_high": k.high,
        "confidence": c.settings.confidence,
        "agreement": same,
        "seed": c.settings.seed,
        "n_resamples": c.settings.n_resamples,
        "note": k.note,
    }


def compare(
    gens: pd.DataFrame,
    first: pd.DataFrame,
    second_judge: Callable[[pd.DataFrame], pd.DataFrame],
    c: Comparison,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(agreement table, pairs table): the sample of `gens`, judged by `second_judge`
    (a generations table in, its judgments out), paired with `first` and summarised."""
    sample = draw_sample(gens, c.settings.n, c.settings.seed)
    pairs = pair(sample, first, second_judge(sample))
    return pd.DataFrame([summarise(pairs, c)], columns=AGREEMENT_SCHEMA.names), pairs


def _concat(paths: list[str], schema: pa.Schema) -> pd.DataFrame:
    frames = [read_table(p, schema) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else schema.empty_table().to_pandas()


def second_judge(job: Job) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The agreement job's second judge: an LLM judge (valueharms.judge.run.LLMJudge) on
    its backend and the job's LLM cache, as the judge stage builds one, asking as the
    benchmark declares (judge_with_llm). Past judges.max_failure_share failed calls it
    fails the job, as a judge job does; a rerun then pays only for those calls."""
    from valueharms.failures import check_share
    from valueharms.judge.run import LLMJudge, judge_with_llm
    from valueharms.llm.backends import make_backend
    from valueharms.llm.cache import LLMCache

    p, benchmark = job.params, job.wildcards["benchmark"]
    second, settings = p["second"], dict(p["second"]["settings"])
    if second["kind"] != "llm":
        raise ValueError(f"the second judge is an LLM judge, not {second['kind']!r}")
    server = make_backend(
        settings["model"],
        p["judge_spec"],
        settings["backend"],
        p["backend_settings"],
        job.input.get("judge_model"),
        threads=job.threads,
        cache_dir=job.cache_dir,
    )
    cache = LLMCache(str(job.cache_dir))
    judge = LLMJudge(server, cache, second["name"], second["template"], settings)

    def run(sample: pd.DataFrame) -> pd.DataFrame:
        table = judge_with_llm(sample, benchmark, judge)
        failed = table["status"] == STATUS_FAILED
        bound, key = p["max_failure_share"], "judges.max_failure_share"
        check_share(int(failed.sum()), len(table), bound, key, table["error"][failed])
        return table

    return run


def agreement_job(job: Job) -> None:
    """The agreement rule's entry point (scripts/agreement.py): every subject's
    generations and first-judge judgments of the benchmark in, the agreement table
    (AGREEMENT_SCHEMA) and the pairs (PAIRS_SCHEMA) out."""
    from valueharms.generate import GENERATIONS_SCHEMA

    p = job.params
    c = Comparison(
        benchmark=job.wildcards["benchmark"],
        first=p["first"],
        second=p["second"]["name"],
        scale=Scale.of(p["scale"]),
        settings=Settings.of(p["sample"]),
    )
    gens = _concat(job.input.list("generations"), GENERATIONS_SCHEMA)
    first = _concat(job.input.list("judgments"), JUDGMENTS_SCHEMA)
    table, pairs = compare(gens, first, second_judge(job), c)
    write_table(job.output["pairs"], pairs, PAIRS_SCHEMA)
    write_table(job.output["table"], table, AGREEMENT_SCHEMA)
