"""Study A target distributions: extremes, ESS scoring, Jensen-Shannon neighbours."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from paths import DEMO, shared
from scipy.spatial.distance import jensenshannon

from valueharms import VALUES
from valueharms.data.distributions import (
    DEFAULT_GROUPS,
    DISTRIBUTIONS_SCHEMA,
    DROP_BLANK,
    DROP_MISSING_CODE,
    DROP_OUT_OF_RANGE,
    ESS_ITEMS,
    ESS_SCORES_SCHEMA,
    SHORT_NAMES,
    _js_distances,
    distributions_table,
    extreme_distributions,
    read_ess,
    realistic_distributions,
    realistic_name,
    score_ess,
)
from valueharms.io import read_table, write_table

ITEM_ORDER = [c for c in pd.read_csv(DEMO / "ess.csv", nrows=0).columns if c != "idno"]


def profile(**scores: float) -> dict[str, float]:
    """A 10-value row, 1.0 unless given (keys are short names)."""
    by_short = {s: v for v, s in SHORT_NAMES.items()}
    row = dict.fromkeys(VALUES, 1.0)
    for short, x in scores.items():
        row[by_short[short]] = float(x)
    return row


# --- extremes ------------------------------------------------------------------------


def test_extremes_exact_values():
    ext = extreme_distributions()
    assert len(ext) == 14
    assert ext["name"].tolist() == [SHORT_NAMES[v] for v in VALUES] + list(DEFAULT_GROUPS)
    assert (ext["kind"] == "extreme").all()
    assert (ext["anchor"] == ext["name"]).all()
    assert (ext["rank"] == 0).all() and (ext["distance"] == 0.0).all()
    assert ext["respondent_id"].isna().all()
    for i, v in enumerate(VALUES):
        row = ext.iloc[i]
        assert row[v] == 6.0
        assert sum(row[list(VALUES)]) == 6.0 + 9 * 1.0
    se = ext.set_index("name").loc["Self-Enhancement", list(VALUES)]
    expect = {**dict.fromkeys(VALUES, 1.0), "Achievement": 6.0, "Hedonism": 6.0, "Power": 6.0}
    assert se.to_dict() == expect
    oc = ext.set_index("name").loc["Openness_to_Change", list(VALUES)]
    assert sorted(oc[oc == 6.0].index) == ["Self-direction", "Stimulation"]
    assert oc.sum() == 2 * 6.0 + 8 * 1.0


def test_extremes_custom_groups_and_levels():
    ext = extreme_distributions({"Mine": ["Power", "Security"]}, high=5.0, low=2.0)
    assert len(ext) == 11
    mine = ext.iloc[-1]
    assert mine["name"] == "Mine" and mine["Power"] == 5.0 and mine["Security"] == 5.0
    assert mine["Tradition"] == 2.0
    with pytest.raises(ValueError):
        extreme_distributions({"Bad": ["Kindness"]})


def test_extremes_fit_schema(tmp_path):
    write_table(tmp_path / "d.parquet", extreme_distributions(), DISTRIBUTIONS_SCHEMA)
    back = read_table(tmp_path / "d.parquet", DISTRIBUTIONS_SCHEMA)
    assert len(back) == 14


# --- ESS scoring ---------------------------------------------------------------------


def ess_row(idno: str, fill: int = 2, **items: object) -> dict[str, object]:
    row: dict[str, object] = {"idno": idno, **dict.fromkeys(ITEM_ORDER, fill)}
    row.update(items)
    return row


def test_ess_key_covers_21_items_once():
    flat = [c for cs in ESS_ITEMS.values() for c in cs]
    assert sorted(flat) == sorted(ITEM_ORDER) and len(flat) == 21
    assert [len(ESS_ITEMS[v]) for v in VALUES] == [2] * 9 + [3]


def test_score_ess_means_and_reverse_coding():
    ess = pd.DataFrame([ess_row("100", ipshabta=1, ipsucesa=4, ipeqopta=1, ipudrsta=2, impenva=6)])
    raw, _ = score_ess(ess, reverse_code=False)
    rev, _ = score_ess(ess, reverse_code=True)
    # Achievement = mean(1, 4) = 2.5 raw -> 7 - 2.5 = 4.5; Universalism = mean(1, 2, 6) = 3.
    assert raw.loc[0, "Achievement"] == 2.5 and rev.loc[0, "Achievement"] == 4.5
    assert raw.loc[0, "Universalism"] == 3.0 and rev.loc[0, "Universalism"] == 4.0
    assert raw.loc[0, "Power"] == 2.0 and rev.loc[0, "Power"] == 5.0
    assert rev.loc[0, "respondent_id"] == "0-100"


def test_score_ess_drops_invalid_rows():
    ess = pd.DataFrame(
        [
            ess_row("1"),
            ess_row("2", impfuna=7),
            ess_row("3", ipcrtiva=77),
            ess_row("4", ipeqopta=np.nan),
            ess_row("5", iprspota=0),
            ess_row("6", impenva=66),
            ess_row("1", fill=6),  # same idno again: ids must stay unique
            ess_row("8", impsafea=9),
        ]
    )
    scores, counts = score_ess(ess)
    assert counts == {
        "n_in": 8,
        "n_dropped_invalid": 6,
        "n_out": 2,
        "dropped": {DROP_BLANK: 1, DROP_MISSING_CODE: 4, DROP_OUT_OF_RANGE: 1},
    }
    assert scores["respondent_id"].tolist() == ["0-1", "6-1"]
    assert scores.loc[0, "Security"] == 5.0 and scores.loc[1, "Security"] == 1.0
    assert list(scores.columns) == ESS_SCORES_SCHEMA.names


def test_score_ess_demo_fixture(tmp_path):
    scores, counts = score_ess(read_ess(DEMO / "ess.csv"))
    assert counts["n_in"] == 60 and counts["n_dropped_invalid"] == 3 and counts["n_out"] == 57
    write_table(tmp_path / "s.parquet", scores, ESS_SCORES_SCHEMA)
    assert scores[list(VALUES)].stack().between(1, 6).all()


def test_ess_key_matches_published_table():
    """The published per-respondent table is the unreversed mean of exactly these items."""
    ess = read_ess(shared("ess.csv"))
    published = pd.read_csv(shared("ess_distribution.csv"))
    assert list(published.columns) == list(VALUES)
    ours, counts = score_ess(ess, reverse_code=False)
    ours_v = ours[list(VALUES)].to_numpy()
    pub_v = published.to_numpy()
    # The first 300 valid respondents line up one to one.
    np.testing.assert_allclose(ours_v[:300], pub_v[:300])
    # The rest is an ordered subsequence: the published table lacks some further valid rows.
    j = 0
    for row in ours_v:
        if j < len(pub_v) and np.allclose(row, pub_v[j]):
            j += 1
    assert j == len(pub_v)
    assert counts["n_out"] - len(pub_v) == 121


# --- Jensen-Shannon neighbours -------------------------------------------------------


def toy_scores() -> pd.DataFrame:
    rows = [
        profile(Ben=6),  # r0: the Benevolence extreme
        dict.fromkeys(VALUES, 3.0),  # r1: flat
        profile(Ach=6),  # r2: identical to the Achievement extreme
        dict.fromkeys(VALUES, 2.0),  # r3: flat too, so it ties with r1 after normalising
    ]
    df = pd.DataFrame(rows)
    df.insert(0, "respondent_id", [f"r{i}" for i in range(4)])
    return df


def test_js_distance_by_hand():
    ach = np.array(list(profile(Ach=6).values()))
    ben = np.array(list(profile(Ben=6).values()))
    flat = np.full(10, 3.0)
    # p = (6, 1, ...)/15 and q = (1, 6, 1, ...)/15, m = (7/30, 7/30, 1/15, ...):
    # KL(p||m) = KL(q||m) = 0.4 ln(12/7) + (1/15) ln(2/7).
    expect_ben = math.sqrt(0.4 * math.log(12 / 7) + math.log(2 / 7) / 15)
    assert jensenshannon(ach, ben) == pytest.approx(expect_ben, rel=1e-12)
    # Flat q = 0.1 each, m = (0.25, 1/12, ...).
    kl_p = 0.4 * math.log(0.4 / 0.25) + 0.6 * math.log((1 / 15) / (1 / 12))
    kl_q = 0.1 * math.log(0.1 / 0.25) + 0.9 * math.log(0.1 / (1 / 12))
    expect_flat = math.sqrt((kl_p + kl_q) / 2)
    assert jensenshannon(ach, flat) == pytest.approx(expect_flat, rel=1e-12)
    got = _js_distances(ach, np.vstack([ben, flat, ach]))
    np.testing.assert_allclose(got, [expect_ben, expect_flat, 0.0], atol=1e-12)


def test_vectorised_js_matches_scipy():
    rng = np.random.default_rng(0)
    q = rng.uniform(1, 6, size=(200, 10))
    p = rng.uniform(1, 6, size=10)
    expect = [jensenshannon(p, row) for row in q]
    np.testing.assert_allclose(_js_distances(p, q), expect, rtol=1e-12, atol=1e-15)


def test_realistic_neighbours_order_and_ties():
    anchors = extreme_distributions().iloc[[0]]  # Ach
    out = realistic_distributions(anchors, toy_scores(), k=3)
    assert out["respondent_id"].tolist() == ["r2", "r1", "r3"]  # r1 before r3: tie, file order
    assert out["name"].tolist() == ["close_Ach", "close_Ach_2", "close_Ach_3"]
    assert out["rank"].tolist() == [1, 2, 3]
    assert (out["kind"] == "realistic").all() and (out["anchor"] == "Ach").all()
    a = anchors[list(VALUES)].to_numpy()[0]
    expect = [
        jensenshannon(a, toy_scores().loc[i, list(VALUES)].to_numpy(float)) for i in (2, 1, 3)
    ]
    assert out["distance"].tolist() == expect  # scipy's own numbers, bit for bit
    assert out["distance"].iloc[1] == out["distance"].iloc[2]
    assert out.loc[0, "Achievement"] == 6.0 and out.loc[1, "Power"] == 3.0


def test_realistic_k_cut_keeps_first_of_tie():
    anchors = extreme_distributions().iloc[[0, 1]]  # Ach, Ben
    out = realistic_distributions(anchors, toy_scores(), k=2)
    assert out["respondent_id"].tolist() == ["r2", "r1", "r0", "r1"]
    assert out["name"].tolist() == ["close_Ach", "close_Ach_2", "close_Ben", "close_Ben_2"]


def test_realistic_name():
    assert realistic_name("Uni", 1) == "close_Uni"
    assert realistic_name("Self-Enhancement", 10) == "close_Self-Enhancement_10"
    with pytest.raises(ValueError):
        realistic_name("Uni", 0)


def test_demo_table_has_154_unique_rows(tmp_path):
    scores, _ = score_ess(read_ess(DEMO / "ess.csv"))
    table = distributions_table(scores)
    assert len(table) == 154 and table["name"].is_unique
    write_table(tmp_path / "t.parquet", table, DISTRIBUTIONS_SCHEMA)
    assert len(read_table(tmp_path / "t.parquet", DISTRIBUTIONS_SCHEMA)) == 154


def test_shared_table_has_154_unique_rows():
    scores, counts = score_ess(read_ess(shared("ess.csv")))
    assert counts == {
        "n_in": 22190,
        "n_dropped_invalid": 1603,
        "n_out": 20587,
        "dropped": {DROP_MISSING_CODE: 1603},
    }
    ext = extreme_distributions()
    real = realistic_distributions(ext, scores, k=10)
    table = pd.concat([ext, real], ignore_index=True)
    assert len(table) == 154 and table["name"].is_unique
    assert real.groupby("anchor").size().eq(10).all() and real["anchor"].nunique() == 14
    for _, grp in real.groupby("anchor"):
        assert grp["distance"].is_monotonic_increasing
        assert grp["rank"].tolist() == list(range(1, 11))
    assert table["respondent_id"].dropna().isin(scores["respondent_id"]).all()
