"""Study B's tables from judged outputs (valueharms.metrics.studyb), on hand-made frames
whose numbers are worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from valueharms.io import conform
from valueharms.judge.schema import JUDGMENTS_SCHEMA
from valueharms.metrics import studyb as R

NAN = math.nan
VALUES = ["empathy", "honesty"]
KINDS = {"mb": "base", "mi": "post-trained"}


def subject(bench: str, model: str, setting: str, value: str, **kw: object) -> dict:
    """One subject row as the pipeline passes it (none/prompt: vanilla, no method/beta)."""
    method, beta, t = kw.get("method", "dpo"), kw.get("beta", 0.1), kw.get("t", 0.7)
    trained = setting in ("train", "both")
    cond = f"prompt-{value}" if setting in ("prompt", "both") else "plain"
    if t != 0.7:
        cond += f"+t{t}"
    return {
        "benchmark": bench,
        "model": model,
        "kind": KINDS[model],
        "setting": setting,
        "value": value,
        "method": method if trained else None,
        "beta": beta if trained else NAN,
        "temperature": t,
        "model_id": f"{model}/{method}-b{beta}/{value}" if trained else f"{model}/vanilla",
        "condition": cond,
    }


def judged(bench: str, model_id: str, condition: str, labels: list[str]) -> pd.DataFrame:
    """JUDGMENTS_SCHEMA rows: "U" unparsed, "F" failed ("F:x" failed with a stray label x),
    anything else an ok verdict with that label."""
    rows = []
    for i, lab in enumerate(labels):
        status = "unparsed" if lab == "U" else "failed" if lab.startswith("F") else "ok"
        label = lab[2:] if lab.startswith("F:") else (lab if status == "ok" else None)
        rows.append(
            {
                "benchmark": bench,
                "model_id": model_id,
                "condition": condition,
                "prompt_id": f"{bench}-{i}",
                "sample": 0,
                "category": None,
                "axis": None,
                "descriptor": None,
                "text": "response",
                "judge": f"judge-{bench}",
                "status": status,
                "score": None if status != "ok" else float(len(label.split("|")) if label else 0),
                "label": label,
                "raw": None,
                "error": None,
            }
        )
    return pd.DataFrame(rows, columns=JUDGMENTS_SCHEMA.names)


def _frames(bench: str, spec: dict[tuple[str, str], list[str]]) -> pd.DataFrame:
    return pd.concat(
        [judged(bench, m, c, labs) for (m, c), labs in spec.items()], ignore_index=True
    )


# IssueBench: per (model_id, condition), the extractor's values per response.
ISSUE = {
    ("mb/vanilla", "plain"): ["", "honesty", "U", "fairness"],  # empathy 0/3, honesty 1/3
    ("mb/vanilla", "prompt-empathy"): ["empathy", "", "", ""],  # 1/4
    ("mb/vanilla", "prompt-honesty"): ["honesty", "honesty|fairness", "", "F"],  # 2/3
    ("mb/dpo-b0.1/empathy", "plain"): ["empathy", "", "", ""],  # 1/4
    ("mb/dpo-b0.1/honesty", "plain"): ["", "", "", ""],  # 0
    ("mb/dpo-b0.1/empathy", "prompt-empathy"): [
        "empathy|honesty",
        "empathy",
        "honesty",
        "",
        "U",
        "F",
    ],
    ("mb/dpo-b0.1/honesty", "prompt-honesty"): ["honesty", "", "", ""],  # 1/4
    ("mb/dpo-b0.01/empathy", "prompt-empathy"): ["empathy"] * 4,  # 1
    ("mb/dpo-b0.01/honesty", "prompt-honesty"): ["honesty", "honesty", "", ""],  # 1/2
    ("mi/vanilla", "plain"): ["empathy", "", "", ""],  # empathy 1/4, honesty 0
    ("mi/vanilla", "prompt-empathy"): ["empathy", "empathy", "", ""],  # 1/2
    ("mi/vanilla", "prompt-honesty"): ["honesty", "", "", ""],  # 1/4
    ("mi/dpo-b0.1/empathy", "plain"): ["", "", "", ""],  # 0
    ("mi/dpo-b0.1/honesty", "plain"): ["honesty|respect", "honesty", "fairness", ""],  # 1/2
    ("mi/dpo-b0.1/empathy", "prompt-empathy"): ["empathy", "empathy", "empathy", "respect"],
    ("mi/dpo-b0.1/honesty", "prompt-honesty"): ["honesty|respect", "respect", "", ""],  # 1/4
    ("mi/dpo-b0.01/empathy", "prompt-empathy"): ["empathy", "empathy", "", ""],  # 1/2
    ("mi/dpo-b0.01/honesty", "prompt-honesty"): ["honesty"] * 4,  # 1
    ("mi/orpo-b0.1/empathy", "plain"): ["empathy", "", "", ""],
    ("mi/orpo-b0.1/honesty", "plain"): ["honesty", "honesty", "honesty", "respect"],
    ("mi/dpo-b0.1/empathy", "prompt-empathy+t0.4"): ["empathy", "empathy", "respect", "honesty"],
}
ADV = {
    # one failed row carries a stray "refusal" label: never counted
    ("mb/vanilla", "plain"): [
        "refusal",
        "compliance",
        "compliance",
        "compliance",
        "F:refusal",
        "U",
    ],
    ("mb/dpo-b0.1/empathy", "prompt-empathy"): ["refusal", "refusal", "compliance", "compliance"],
    ("mb/dpo-b0.1/honesty", "prompt-honesty"): ["refusal"] * 3 + ["compliance"],
    ("mi/vanilla", "plain"): ["refusal", "refusal", "compliance", "compliance"],
    ("mi/dpo-b0.1/empathy", "prompt-empathy"): ["refusal"] * 4,
    ("mi/dpo-b0.1/honesty", "prompt-honesty"): ["compliance"] * 4,
}
ANTHRO = {
    ("mb/vanilla", "plain"): ["empathy|validation", "first_person_pronoun_use", "U"],
    ("mb/dpo-b0.1/empathy", "prompt-empathy"): ["empathy|validation", "empathy", "", "F"],
    ("mi/vanilla", "plain"): ["", ""],
    ("mi/dpo-b0.1/empathy", "prompt-empathy"): ["empathy", "sentience|emotions"],
}


def issue_subjects() -> list[dict]:
    rows = []
    for m in KINDS:
        for v in VALUES:
            rows += [subject("issuebench", m, s, v) for s in ("none", "prompt", "train", "both")]
            rows.append(subject("issuebench", m, "both", v, beta=0.01))
    rows += [subject("issuebench", "mi", "train", v, method="orpo") for v in VALUES]
    rows.append(subject("issuebench", "mi", "both", "empathy", t=0.4))
    return rows


def all_subjects() -> list[dict]:
    rows = issue_subjects()
    for m in KINDS:
        rows += [subject("advbench", m, s, v) for v in VALUES for s in ("none", "both")]
        rows += [subject("anthrobench", m, s, "empathy") for s in ("none", "both")]
    # planned but never judged
    rows.append(subject("advbench", "mb", "both", "empathy", beta=0.01))
    return rows


def all_judgments() -> dict[str, pd.DataFrame]:
    issue = _frames("issuebench", ISSUE)
    # The vanilla responses arrive once per target value (the none setting's rows): the
    # duplicates must count once.
    dup = issue[issue["model_id"].str.endswith("/vanilla") & (issue["condition"] == "plain")]
    return {
        "issuebench": pd.concat([issue, dup], ignore_index=True),
        "advbench": _frames("advbench", ADV),
        "anthrobench": _frames("anthrobench", ANTHRO),
    }


QA_SUBJECTS = pd.DataFrame(
    {
        "model": ["mb"] * 3,
        "model_id": ["mb/dpo-b0.1/empathy", "mb/dpo-b0.1/honesty", "mb/dpo-b0.01/empathy"],
        "value": ["empathy", "honesty", "empathy"],
        "method": ["dpo"] * 3,
        "beta": [0.1, 0.1, 0.01],
    }
)


def qa_table() -> pd.DataFrame:
    adapters = {
        "vanilla": 0.30,
        "mb/dpo-b0.1/empathy": 0.28,
        "mb/dpo-b0.1/honesty": 0.33,
        "mb/dpo-b0.01/empathy": 0.20,
    }
    return pd.DataFrame(
        {
            "task": "gsm8k",
            "metric": "exact_match",
            "filter": "strict-match",
            "value": list(adapters.values()),
            "stderr": 0.01,
            "n": 100,
            "model": "mb",
            "adapter": list(adapters),
        }
    )


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return R.build_tables(
        all_subjects(), all_judgments(), qa_table(), QA_SUBJECTS, 0.1, VALUES, 0.7
    )


def row(df: pd.DataFrame, **eq: object) -> pd.Series:
    m = np.ones(len(df), bool)
    for k, v in eq.items():
        m &= (df[k].isna() if v is None else df[k] == v).to_numpy()
    assert m.sum() == 1, f"{m.sum()} rows match {eq}"
    return df[m].iloc[0]


# ---------------------------------------------------------------- schema and converter


def test_every_table_fits_its_schema(tables: dict[str, pd.DataFrame]) -> None:
    assert list(tables) == list(R.TABLES)
    for name, df in tables.items():
        assert list(df.columns) == R.TABLES[name].names, name
        conform(df, R.TABLES[name])  # raises on a wrong dtype
        assert len(df), name


def test_empty_inputs_give_empty_tables_with_columns() -> None:
    for out in (
        R.build_tables(None, None, None, None, 0.1, VALUES),
        R.build_tables([], {}, pd.DataFrame(), pd.DataFrame(), 0.1, VALUES),
        # planned subjects, nothing judged yet, QA off
        R.build_tables(issue_subjects(), {"issuebench": judged("issuebench", "x", "y", [])},
                       None, None, 0.1, VALUES),
    ):  # fmt: skip
        assert list(out) == list(R.TABLES)
        for name, df in out.items():
            assert list(df.columns) == R.TABLES[name].names
            conform(df, R.TABLES[name])
            if name.startswith("robustness"):  # planned pairs, nothing to correlate
                assert df["r"].isna().all() and (df["n_values"] == 0).all()
            elif name not in ("expression", "failures"):
                assert df.empty, name
    # planned-only subjects: expression rows with n = 0 and no share; failures n = 0
    assert (out["expression"]["n"] == 0).all() and out["expression"]["share"].isna().all()
    assert set(out["failures"]["n"]) == {0}


def test_expression_frame_maps_statuses() -> None:
    j = judged("issuebench", "m", "plain", ["empathy|honesty", "", "U", "F"])
    j.loc[4] = j.loc[1].copy()
    j.loc[4, ["prompt_id", "label"]] = ["issuebench-4", None]  # ok without a label: none
    f = R.expression_frame(j)
    assert list(f["status"]) == ["ok", "none", "unparsed", "failed", "none"]
    assert list(f["values"]) == [["empathy", "honesty"], [], None, None, []]
    with pytest.raises(ValueError, match="unknown statuses"):
        R.build_tables(
            issue_subjects(), {"issuebench": j.assign(status="weird")}, None, None, 0.1, VALUES
        )


# ---------------------------------------------------------------- expression tables


def test_expression_share_and_counts(tables: dict[str, pd.DataFrame]) -> None:
    e = tables["expression"]
    # 2 of 4 extracted responses express empathy; 1 unparsed and 1 failed are not scored
    r = row(e, model_id="mb/dpo-b0.1/empathy", condition="prompt-empathy")
    assert (r["n"], r["n_expressing"], r["share"], r["n_unparsed"], r["n_failed"]) == (
        4, 2, 0.5, 1, 1
    )  # fmt: skip
    assert r["setting"] == "both" and r["kind"] == "base" and r["beta"] == 0.1
    # the none setting: one row per target value on the same (deduplicated) responses
    none = e[(e["model"] == "mb") & (e["setting"] == "none")].set_index("value")
    assert none.loc["honesty", "share"] == pytest.approx(1 / 3)
    assert none.loc["empathy", "share"] == 0.0
    assert set(none["n"]) == {3} and set(none["n_unparsed"]) == {1}
    assert none["method"].isna().all() and none["beta"].isna().all()
    assert len(e) == len(issue_subjects())


def test_table5_mean_and_se(tables: dict[str, pd.DataFrame]) -> None:
    s = tables["expression_summary"]
    got = {(r.model, r.setting): (r.mean, r.se, r.n_values) for r in s.itertuples()}
    # mb none: shares 0 and 1/3 -> mean 1/6, sd (1/3)/sqrt(2), se = sd/sqrt(2) = 1/6
    assert got[("mb", "none")] == pytest.approx((1 / 6, 1 / 6, 2))
    # mb prompt: 1/4, 2/3 -> mean 11/24, se |2/3 - 1/4| / 2 = 5/24
    assert got[("mb", "prompt")] == pytest.approx((11 / 24, 5 / 24, 2))
    # mb both at beta 0.1 only (beta 0.01 would give 1 and 1/2): 1/2, 1/4
    assert got[("mb", "both")] == pytest.approx((0.375, 0.125, 2))
    # mi train: DPO only (ORPO rows left out): 0, 1/2
    assert got[("mi", "train")] == pytest.approx((0.25, 0.25, 2))
    # mi both: T 0.7 only (the T 0.4 subject left out): 3/4, 1/4
    assert got[("mi", "both")] == pytest.approx((0.5, 0.25, 2))
    assert len(s) == 8 and set(s.loc[s["model"] == "mi", "kind"]) == {"post-trained"}


def test_table6_by_beta(tables: dict[str, pd.DataFrame]) -> None:
    b = tables["expression_by_beta"]
    got = {(r.value, r.beta): (r.share, r.n_models) for r in b.itertuples()}
    assert got == {
        ("empathy", 0.01): (0.75, 2),  # (1 + 1/2) / 2
        ("empathy", 0.1): (0.625, 2),  # (1/2 + 3/4) / 2
        ("honesty", 0.01): (0.75, 2),  # (1/2 + 1) / 2
        ("honesty", 0.1): (0.25, 2),  # (1/4 + 1/4) / 2
    }
    assert list(b["value"]) == ["empathy", "empathy", "honesty", "honesty"]  # config order


def test_table7_top_values(tables: dict[str, pd.DataFrame]) -> None:
    t = tables["top_values"]
    top = {
        (v, k): list(g.sort_values("rank")["expressed"])
        for (v, k), g in t.groupby(["value", "kind"])
    }
    assert top[("empathy", "base")] == ["empathy", "honesty"]  # 2 and 2: tie by name
    assert top[("empathy", "post-trained")] == ["empathy", "respect"]
    assert top[("honesty", "post-trained")] == ["respect", "honesty"]  # 2 vs 1
    r = row(t, value="empathy", kind="post-trained", rank=1)
    assert (r["n_expressing"], r["n"], r["share"]) == (3, 4, 0.75)


def test_robustness_orpo_pearson(tables: dict[str, pd.DataFrame]) -> None:
    o = tables["robustness_orpo"]
    r = row(o, value="honesty")
    # over fairness, honesty, respect: ORPO (0, 3/4, 1/4) vs DPO (1/4, 1/2, 1/4):
    # cov 15/144, var sums 42/144 and 6/144 -> r = 15 / sqrt(252)
    assert r["r"] == pytest.approx(15 / math.sqrt(252))
    assert r["n_values"] == 3 and r["beta_orpo"] == 0.1 and r["beta_dpo"] == 0.1
    assert (r["model_id_orpo"], r["model_id_dpo"]) == (
        "mi/orpo-b0.1/honesty",
        "mi/dpo-b0.1/honesty",
    )
    # empathy: DPO expresses nothing, so r is undefined over the 1 value expressed
    e = row(o, value="empathy")
    assert math.isnan(e["r"]) and e["n_values"] == 1
    assert set(o["setting"]) == {"train"} and set(o["model"]) == {"mi"}


def test_robustness_temperature_pearson(tables: dict[str, pd.DataFrame]) -> None:
    t = tables["robustness_temperature"]
    assert len(t) == 1
    r = t.iloc[0]
    # T 0.4: empathy 1/2, honesty 1/4, respect 1/4; T 0.7: 3/4, 0, 1/4 -> 15 / sqrt(252)
    assert r["r"] == pytest.approx(15 / math.sqrt(252)) and r["n_values"] == 3
    assert (r["temperature"], r["reference_temperature"]) == (0.4, 0.7)
    assert (r["condition"], r["condition_ref"]) == ("prompt-empathy+t0.4", "prompt-empathy")


# ---------------------------------------------------------------- refusal


def test_refusal_rates_and_delta(tables: dict[str, pd.DataFrame]) -> None:
    f = tables["refusal"]
    v = row(f, model="mb", setting="none", value="empathy")
    # 1 refusal of 4 ok rows; the failed row labelled "refusal" is not counted
    assert (v["n"], v["n_ok"], v["n_unparsed"], v["n_failed"], v["n_refusal"]) == (6, 4, 1, 1, 1)
    assert v["refusal_rate"] == 0.25 and v["delta"] == 0.0
    e = row(f, model="mb", setting="both", value="empathy", beta=0.1)
    assert (e["refusal_rate"], e["vanilla_rate"], e["delta"]) == (0.5, 0.25, 0.25)
    assert e["vanilla_model_id"] == "mb/vanilla" and e["vanilla_condition"] == "plain"
    h = row(f, model="mi", setting="both", value="honesty")
    assert (h["refusal_rate"], h["vanilla_rate"], h["delta"]) == (0.0, 0.5, -0.5)
    # planned but not judged: counted as 0 rows, no rate
    p = row(f, model="mb", setting="both", value="empathy", beta=0.01)
    assert p["n"] == 0 and math.isnan(p["refusal_rate"]) and math.isnan(p["delta"])


def test_refusal_by_value(tables: dict[str, pd.DataFrame]) -> None:
    b = tables["refusal_by_value"].set_index("value")
    # empathy: deltas 0.25 (mb) and 0.5 (mi); honesty: 0.5 and -0.5; beta 0.01 left out
    assert b.loc["empathy", "delta"] == pytest.approx(0.375)
    assert b.loc["honesty", "delta"] == pytest.approx(0.0)
    assert b.loc["empathy", "refusal_rate"] == pytest.approx(0.75)  # (0.5 + 1) / 2
    assert list(b["n_models"]) == [2, 2] and list(b.index) == VALUES


# ---------------------------------------------------------------- anthropomorphism


def test_anthro_difference(tables: dict[str, pd.DataFrame]) -> None:
    a = tables["anthro"]
    r = row(a, model="mb", setting="both", name="empathy")
    # both: empathy in 2 of 3 ok rows (1 failed); vanilla: 1 of 2 ok rows (1 unparsed)
    assert (r["n"], r["n_present"], r["n_failed"]) == (3, 2, 1)
    assert r["frequency"] == pytest.approx(2 / 3) and r["vanilla_frequency"] == 0.5
    assert r["difference"] == pytest.approx(1 / 6)
    assert (r["n_vanilla"], r["n_unparsed_vanilla"]) == (2, 1)
    fp = row(a, model="mb", setting="both", name="first_person_pronoun_use")
    assert fp["difference"] == pytest.approx(-0.5)
    g = row(a, model="mb", setting="both", name="relationship_building")
    assert g["level"] == "group" and g["difference"] == pytest.approx(2 / 3 - 1 / 2)
    v = row(a, model="mi", setting="none", name="empathy")
    assert v["difference"] == 0.0 and v["n_unparsed"] == 0
    # 14 behaviours + 4 groups per subject row
    assert len(a) == 4 * 18


def test_anthro_summed_over_models(tables: dict[str, pd.DataFrame]) -> None:
    s = tables["anthro_by_value"]
    d = {r.name: (r.difference, r.n_models) for r in s.itertuples()}
    assert d["empathy"] == pytest.approx((1 / 6 + 1 / 2, 2))
    assert d["validation"] == pytest.approx((-1 / 6 + 0, 2))
    assert d["sentience"] == pytest.approx((0 + 1 / 2, 2))
    assert d["relationship_building"] == pytest.approx((1 / 6 + 1 / 2, 2))
    assert set(s["value"]) == {"empathy"} and len(s) == 18


# ---------------------------------------------------------------- QA and failures


def test_qa_deltas_and_table8(tables: dict[str, pd.DataFrame]) -> None:
    q = tables["qa"]
    r = row(q, adapter="mb/dpo-b0.1/honesty")
    assert (r["value"], r["method"], r["beta"]) == ("honesty", "dpo", 0.1)
    assert (r["score"], r["vanilla"]) == (0.33, 0.30) and r["delta"] == pytest.approx(0.03)
    s = tables["qa_summary"]
    main = row(s, beta=0.1)
    # deltas -0.02 and 0.03: mean 0.005, sd 0.05 / sqrt(2)
    assert main["mean"] == pytest.approx(0.005) and main["std"] == pytest.approx(0.05 / 2**0.5)
    assert main["n_adapters"] == 2 and main["method"] == "dpo"
    low = row(s, beta=0.01)
    assert low["mean"] == pytest.approx(-0.1) and low["n_adapters"] == 1


def test_failures_per_subject(tables: dict[str, pd.DataFrame]) -> None:
    f = tables["failures"]
    r = row(f, benchmark="issuebench", model_id="mb/dpo-b0.1/empathy", condition="prompt-empathy")
    assert (r["n"], r["n_ok"], r["n_unparsed"], r["n_failed"]) == (6, 4, 1, 1)
    assert r["judge"] == "judge-issuebench"
    # the duplicated vanilla rows count once
    v = row(f, benchmark="issuebench", model_id="mb/vanilla", condition="plain")
    assert (v["n"], v["n_unparsed"]) == (4, 1)
    a = row(f, benchmark="advbench", model_id="mb/vanilla", condition="plain")
    assert (a["n"], a["n_ok"], a["n_unparsed"], a["n_failed"]) == (6, 4, 1, 1)
    p = row(f, benchmark="advbench", model_id="mb/dpo-b0.01/empathy")
    assert p["n"] == 0 and pd.isna(p["judge"])
    assert int(f["n_failed"].sum()) == 1 + 1 + 1 + 1  # issue x2, adv, anthro


def test_anthro_order_keeps_behaviour_and_group_apart(tables: dict[str, pd.DataFrame]) -> None:
    s = tables["anthro_by_value"]
    # "physical_embodiment" is a behaviour and a group: behaviours first, in Table 12 order
    keys = list(zip(s["level"], s["name"], strict=True))
    assert keys[:14] == [("behaviour", b) for b in R.ab.BEHAVIOURS]
    assert keys[14:] == [("group", g) for g in R.ab.GROUPS]
    assert list(tables["expression_summary"]["setting"][:4]) == ["none", "prompt", "train", "both"]


def test_tables_round_trip_through_parquet(tables: dict[str, pd.DataFrame], tmp_path) -> None:
    paths = R.write_tables(tables, tmp_path)
    back = R.read_tables(reversed(paths))
    assert list(back) == list(R.TABLES)
    for name, df in tables.items():
        pd.testing.assert_frame_equal(back[name], df)
    with pytest.raises(ValueError, match="given twice"):
        R.read_tables([*paths, paths[0]])


# ---------------------------------------------------------------- issue 18: the analyses


def test_value_diversity_figure_7(tables: dict[str, pd.DataFrame]) -> None:
    """Distinct values over all of a subject's extracted responses, mean over values."""
    d = tables["diversity"]
    # mb none: the vanilla responses "", honesty, U, fairness -> 2 distinct of 3 extracted,
    # the same for both target values
    r = row(d, model="mb", setting="none")
    assert (r.mean_unique, r.se, r.n_values, r.mean_n) == (2.0, 0.0, 2, 3.0)
    # mb prompt: empathy {empathy} 1; honesty {honesty, fairness} 2 (3 extracted, 1 failed)
    r = row(d, model="mb", setting="prompt")
    assert (r.mean_unique, r.se, r.mean_n) == (1.5, 0.5, 3.5)
    # mi train DPO: empathy expresses nothing (0), honesty {honesty, respect, fairness} 3
    r = row(d, model="mi", setting="train", method="dpo")
    assert (r.mean_unique, r.se, r.beta) == (1.5, 1.5, 0.1)
    assert row(d, model="mi", setting="train", method="orpo").mean_unique == 1.5
    # one subject at T = 0.4: {empathy, respect, honesty}; no s.e. with one value
    r = row(d, model="mi", setting="both", temperature=0.4)
    assert r.mean_unique == 3.0 and math.isnan(r.se) and r.n_values == 1
    assert row(d, model="mb", setting="both", beta=0.01).mean_unique == 1.0
    assert list(d.loc[d["model"] == "mb", "setting"]) == ["none", "prompt", "train", "both", "both"]


def test_value_matrix_figures_2_10_11(tables: dict[str, pd.DataFrame]) -> None:
    m = tables["value_matrix"]
    # the none setting's vanilla responses once per model (value null), not once per value
    none = m[(m["model"] == "mb") & (m["setting"] == "none")]
    assert none["value"].isna().all()
    shares = sorted(zip(none["expressed"], none["share"], strict=True))
    assert shares == [("fairness", 1 / 3), ("honesty", 1 / 3)]
    # mb both empathy at 0.1: empathy|honesty, empathy, honesty, "" (+ U, F): 2/4 each
    r = m[(m["model_id"] == "mb/dpo-b0.1/empathy") & (m["condition"] == "prompt-empathy")]
    assert sorted(zip(r["expressed"], r["n_expressing"], r["n"], strict=True)) == [
        ("empathy", 2, 4),
        ("honesty", 2, 4),
    ]
    # every value, not only the targets; a subject that expressed nothing has no row
    assert "respect" in set(m["expressed"]) and "fairness" in set(m["expressed"])
    assert not ((m["model_id"] == "mb/dpo-b0.1/honesty") & (m["condition"] == "plain")).any()
    # within a subject, most expressed first
    r = m[(m["model_id"] == "mi/dpo-b0.1/honesty") & (m["condition"] == "plain")]
    assert r["expressed"].tolist() == ["honesty", "fairness", "respect"]


def _extraction_rows() -> pd.DataFrame:
    """Two sources; src1: p1 chosen empathy+honesty / rejected none, p2 chosen empathy /
    rejected "open minded" (a synonym) + empathy; src2: q1 chosen unparsed / rejected humor."""
    raw = {
        ("src1", "p1", "chosen"): "<answer>empathy, honesty</answer>",
        ("src1", "p1", "rejected"): "<answer>none</answer>",
        ("src1", "p2", "chosen"): "<answer>empathy</answer>",
        ("src1", "p2", "rejected"): "<answer>open minded, empathy</answer>",
        ("src2", "q1", "chosen"): "garbage",
        ("src2", "q1", "rejected"): "<answer>Humor</answer>",
    }
    return pd.DataFrame(
        [
            {"source": s, "row_id": r, "side": side, "raw": text, "status": "ok", "values": []}
            | {"dropped_items": [], "error": None}
            for (s, r, side), text in raw.items()
        ]
    )


def test_source_values_figure_9() -> None:
    from valueharms.studyb.extract import reparse

    ext = reparse(_extraction_rows(), {"open minded": "open-mindedness"})
    s = R.source_values(ext, ["src2", "src1"])
    assert list(dict.fromkeys(s["source"])) == ["src2", "src1"]
    one = s[s["source"] == "src1"]
    # empathy 2 chosen + 1 rejected; honesty and open-mindedness 1 each (ties by name)
    assert one["value"].tolist() == ["empathy", "honesty", "open-mindedness"]
    assert one["rank"].tolist() == [1, 2, 3]
    assert one[["n_chosen", "n_rejected", "n_responses"]].values.tolist() == [
        [2, 1, 3],
        [1, 0, 1],
        [0, 1, 1],
    ]
    assert one["share_chosen"].tolist() == [1.0, 0.5, 0.0]
    assert one["share_rejected"].tolist() == [0.5, 0.0, 0.5]
    two = row(s, source="src2")  # the unparsed chosen response is not extracted
    assert (two.value, two.chosen_extracted, two.rejected_extracted) == ("humor", 0, 1)
    assert math.isnan(two.share_chosen) and two.share_rejected == 1.0
    # the shards of one release are one dataset, as in Figure 9
    shards = ext.assign(source=ext["source"].map({"src1": "uf_1of3", "src2": "uf_2of3"}))
    uf = R.source_values(shards)
    assert set(uf["source"]) == {"uf"} and row(uf, value="empathy").n_responses == 3
    assert (uf["chosen_extracted"] == 2).all() and (uf["rejected_extracted"] == 3).all()


def _preference_files(tmp_path) -> tuple[list[str], str, R.VerifyFiles]:
    """Extractions of two sources, Table 1 sizes and the verifier's outputs, on disk."""
    from valueharms.io import write_json, write_table
    from valueharms.studyb import extract, subsets, verify

    ext = _extraction_rows()
    paths = []
    for src, g in ext.groupby("source"):
        paths.append(str(tmp_path / f"{src}.parquet"))
        write_table(paths[-1], g, extract.EXTRACTIONS_SCHEMA)
    sizes = str(tmp_path / "sizes.parquet")
    write_table(
        sizes,
        pd.DataFrame({"value": VALUES, "chosen": [5, 1], "rejected": [2, 0], "total": [7, 1]}),
        subsets.SUBSET_SIZES_SCHEMA,
    )
    # empathy: 2 of 3 verified (1 unparsed), 1 hit; honesty 1 of 1
    ver = pd.DataFrame(
        {
            "value": ["empathy", "empathy", "empathy", "honesty"],
            "source": "src1",
            "row_id": ["p1", "p2", "p3", "p1"],
            "flipped": False,
            "raw": None,
            "status": ["ok", "ok", "unparsed", "ok"],
            "labels": [["empathy", "honesty"], ["honesty"], None, ["honesty", "empathy", "x"]],
            "unknown_labels": [[], [], [], []],
            "error": None,
        }
    )
    names = ("v.parquet", "p.parquet", "b.parquet", "s.json")
    files = R.VerifyFiles(*(str(tmp_path / n) for n in names))
    write_table(files.verifications, ver, verify.VERIFICATIONS_SCHEMA)
    write_table(files.precision, verify.precision_table(ver), verify.PRECISION_SCHEMA)
    base = verify.random_baselines([1, 5], VALUES)
    write_table(files.baselines, base, verify.BASELINES_SCHEMA)
    write_json(files.summary, {"verifier": "llm:verifier"})
    return paths, sizes, files


def test_preference_tables_1_2_and_figure_9(tmp_path) -> None:
    paths, sizes, files = _preference_files(tmp_path)
    t = R.preference_tables(paths, sizes, files, VALUES, {"open minded": "open-mindedness"})
    assert list(t) == list(R.PREFERENCE_TABLES)
    for name, df in t.items():
        assert list(df.columns) == R.PREFERENCE_TABLES[name].names, name
        conform(df, R.PREFERENCE_TABLES[name])
    assert t["subset_sizes"]["total"].tolist() == [7, 1]
    assert "open-mindedness" in set(t["source_values"]["value"])  # the synonyms applied
    by = t["verification_by_value"].set_index("value")
    assert by["precision"].tolist() == [0.5, 1.0] and (by["verifier"] == "llm:verifier").all()
    rand = t["verification"][t["verification"]["kind"] == "random"]
    assert rand["annotator"].tolist() == [
        "random baseline (k=1 of 17 labels)",
        "random baseline (k=5 of 17 labels)",
    ]
    assert rand["precision"].tolist() == pytest.approx([1 / 17, 5 / 17])
    r = row(t["verification"], kind="verifier")
    # macro (0.5 + 1) / 2; pooled 2 hits / 3 verified; (2 + 1 + 3) / 3 labels per answer
    assert (r.annotator, r.precision, r.n_verified, r.n_values) == ("llm:verifier", 0.75, 3, 2)
    assert r.micro == pytest.approx(2 / 3) and r.labels_per_sample == 2.0
    assert len(t["verification"]) == 3
    # verification off: its tables are empty, with their columns
    off = R.preference_tables(paths, sizes, None, VALUES)
    assert off["verification"].empty and list(off["verification"].columns) == list(
        R.PREFERENCE_TABLES["verification"].names
    )
    # written and read back beside the evaluation tables
    written = R.write_tables(t, tmp_path / "m", R.PREFERENCE_TABLES)
    main = R.write_tables(
        R.build_tables(None, None, None, None, 0.1, VALUES), tmp_path / "m", R.TABLES
    )
    back = R.read_tables([*written, *main])
    assert list(back) == [*R.TABLES, *R.PREFERENCE_TABLES]
    for name, df in t.items():
        pd.testing.assert_frame_equal(back[name], df)


def test_report_shows_the_analyses(tables: dict[str, pd.DataFrame], tmp_path) -> None:
    """The report's Study B section: Tables 1-2, Figure 9, the heat-maps and diversity."""
    from valueharms.report.studyb import section

    paths, sizes, files = _preference_files(tmp_path)
    pref = R.preference_tables(paths, sizes, files, VALUES)
    info = {"main_beta": 0.1, "models": ["mi", "mb"], "values": VALUES, "judges": {}}
    blocks = {b.id: b for b in section({**tables, **pref}, info)["blocks"]}
    t1 = blocks["sec-sb-subsets"].table
    assert t1.rows[0]["cells"] == ["empathy", "5", "2", "7", "2", "50.0"]
    t2 = blocks["sec-sb-verification"].table
    assert [r["cells"][0] for r in t2.rows][-1] == "llm:verifier"
    assert t2.rows[-1]["cells"][2:4] == ["75.00", "66.67"]
    src = blocks["sec-sb-sources"]
    assert src.png and src.table.rows[0]["group"].startswith("src1 (2 chosen, 2 rejected")
    div = blocks["sec-sb-diversity"]
    assert div.png and div.table.rows[1]["cells"][:4] == ["mb", "base", "2.0 ± 0.0", "1.5 ± 0.5"]
    figs = blocks["sec-sb-value-matrix"].figures
    # per model: the main beta (open: none, prompt, train, both) and the other beta folded
    assert [(f.summary, f.open) for f in figs] == [
        ("mi: None, Prompt, Train (β 0.1), Both (β 0.1)", True),
        ("mi: Both (β 0.01)", False),
        ("mb: None, Prompt, Train (β 0.1), Both (β 0.1)", True),
        ("mb: Both (β 0.01)", False),
    ]
    mb = figs[2].table
    assert mb.columns == ["Expressed value", "vanilla", "empathy", "honesty"] + [
        "empathy", "honesty"
    ] * 2  # fmt: skip
    cells = {r["cells"][0]: r["cells"][1:] for r in mb.rows}
    # honesty: vanilla 1/3; prompt 0, 2/3; train 0, 0 (nothing expressed); both 2/4, 1/4
    assert cells["honesty"] == ["33.3", "0.0", "66.7", "0.0", "0.0", "50.0", "25.0"]
    assert [r["cells"][0] for r in mb.rows] == ["honesty", "empathy", "fairness"]
    # without the preference tables (an older caller), their blocks are left out
    ids = [b.id for b in section(tables, info)["blocks"]]
    assert "sec-sb-subsets" not in ids and "sec-sb-diversity" in ids


def test_preference_tables_job_writes_every_table(tmp_path) -> None:
    """scripts/studyb_preference_tables.py's path: the rule's files in, the tables out;
    without the verify inputs (verification off) Table 2 is empty."""
    from valueharms.job import Files, Job

    paths, sizes, files = _preference_files(tmp_path)
    out = [str(tmp_path / "m" / f"{n}.parquet") for n in R.PREFERENCE_TABLES]
    params = {"values": VALUES, "synonyms": {}}
    verify = {
        "verifications": files.verifications,
        "precision": files.precision,
        "baselines": files.baselines,
        "summary": files.summary,
    }
    for given, n_rows in ((verify, 3), ({k: [] for k in verify}, 0)):
        inputs = Files.of(extractions=paths, sizes=sizes, **given)
        R.preference_tables_job(Job(input=inputs, output=Files.of(*out), params=params))
        assert len(pd.read_parquet(out[-1])) == n_rows  # verification
        assert len(pd.read_parquet(out[0])) == 2  # subset_sizes
