"""Human verification of the value subsets (valueharms.studyb.annotation; seed 004 Table 3):
export, fill, import, on the hand-written fixture of tests/fixtures/studyb_annotation,
whose agreement is worked out by hand in its README."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from paths import ROOT

from valueharms.studyb import annotation as A

FIX = ROOT / "tests" / "fixtures" / "studyb_annotation"
POOL = ["empathy", "honesty", "humor", "privacy"]  # 4 values: every item shows all four
SETTINGS = A.ExportSettings(n=3, seed=0, targets=["empathy", "honesty"])
ANNOTATORS = ("ann_a", "ann_b")


def fixture_subsets() -> pd.DataFrame:
    df = pd.read_csv(FIX / "subsets.csv", dtype=str, keep_default_na=False)
    return df.assign(flipped=df["flipped"] == "true")


def fill(sheet: Path, key: Path, annotator: str, out: Path) -> None:
    """`sheet` filled as `annotator` does in answers.csv (looked up through the key)."""
    answers = pd.read_csv(FIX / "answers.csv", dtype=str, keep_default_na=False)
    mine = answers[answers["annotator"] == annotator].set_index(["value", "row_id"])
    k = A.read_key(key).set_index("item_id")
    s = pd.read_csv(sheet, dtype=str, keep_default_na=False, encoding=A.ENCODING)
    for i, item in enumerate(s["item_id"]):
        a = mine.loc[(k.at[item, "value"], k.at[item, "row_id"])]
        s.loc[i, "chosen_values"] = a["chosen_values"]
        s.loc[i, "rejected_values"] = a["rejected_values"]
    s.to_csv(out, index=False, encoding=A.ENCODING)


def check_known_agreement(table: pd.DataFrame, summary: dict) -> None:
    """The numbers of the fixture's README."""
    assert table["value"].tolist() == ["empathy", "honesty"]  # highest union precision first
    t = table.set_index("value")
    assert t.loc["empathy", "n_items"] == 3 and t.loc["honesty", "n_items"] == 2
    assert (t["n_annotators"] == 2).all()
    assert t.loc["empathy", "precision_union"] == pytest.approx(2 / 3)
    assert t.loc["honesty", "precision_union"] == pytest.approx(1 / 2)
    assert t.loc["empathy", "precision_intersection"] == pytest.approx(1 / 2)
    assert t.loc["honesty", "precision_intersection"] == pytest.approx(1.0)
    assert t["n_intersection"].tolist() == [2, 1]
    assert t.loc["empathy", "jaccard"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert t.loc["honesty", "jaccard"] == pytest.approx((1 / 2 + 1) / 2)
    assert t["n_rejected"].tolist() == [1, 2]
    assert t["rejected_union"].tolist() == pytest.approx([0.0, 0.5])
    assert summary == pytest.approx(
        {
            "human_union": 7 / 12,
            "human_intersection": 2 / 3,
            "human_intersection_macro": 3 / 4,
            "empty_intersection_share": 2 / 5,
            "jaccard": 0.625,
            "n_items": 5,
            "n_values": 2,
            "n_annotators": 2,
        }
    )


def test_jaccard_by_hand() -> None:
    a, b, none = frozenset({"x", "y"}), frozenset({"x"}), frozenset()
    assert A.jaccard(a, b) == 0.5 and A.jaccard(a, none) == 0.0
    assert A.jaccard(none, none) == 1.0  # both saw none of the labels: full agreement
    # three annotators: pairs (a, b) 1/2, (a, none) 0, (b, none) 0
    assert A.mean_pairwise_jaccard([a, b, none]) == pytest.approx(1 / 6)
    assert math.isnan(A.mean_pairwise_jaccard([a]))


def test_parse_cell() -> None:
    shown = ["empathy", "honesty", "humor", "privacy"]
    assert A.parse_cell("", shown) is None and A.parse_cell("  ", shown) is None
    assert A.parse_cell("none", shown) == frozenset() and A.parse_cell("None", shown) == set()
    assert A.parse_cell("Empathy | humor", shown) == {"empathy", "humor"}
    assert A.parse_cell("honesty, privacy;humor", shown) == {"honesty", "privacy", "humor"}
    with pytest.raises(ValueError, match="'kindness' is not one of the labels shown"):
        A.parse_cell("empathy, kindness", shown)


def test_sample_items_is_seeded_and_shows_the_target_with_distractors() -> None:
    subsets = fixture_subsets()
    items = A.sample_items(subsets, POOL + ["fairness"], A.ExportSettings(n=2, seed=3))
    again = A.sample_items(subsets, POOL + ["fairness"], A.ExportSettings(n=2, seed=3))
    pd.testing.assert_frame_equal(items, again)
    # at most 2 per value; humor has 1 pair, privacy and fairness none
    assert items["value"].value_counts().to_dict() == {"empathy": 2, "honesty": 2, "humor": 1}
    assert items["item_id"].tolist() == [f"item-000{i}" for i in range(1, 6)]
    for r in items.itertuples():
        labels = r.labels.split(" | ")
        assert len(labels) == 4 and len(set(labels)) == 4 and r.value in labels
        assert set(labels) <= set(POOL + ["fairness"])
    with pytest.raises(ValueError, match="not in"):
        A.sample_items(subsets, POOL, A.ExportSettings(targets=["justice"]))


def test_export_matches_the_committed_sheet_and_hides_the_target(tmp_path: Path) -> None:
    sheet, key = tmp_path / "sheet.csv", tmp_path / "sheet.key.csv"
    A.export_sheet(fixture_subsets(), POOL, sheet, key, SETTINGS)
    assert sheet.read_bytes() == (FIX / "sheet.csv").read_bytes()
    assert key.read_bytes() == (FIX / "sheet.key.csv").read_bytes()
    s = pd.read_csv(sheet, dtype=str, keep_default_na=False, encoding=A.ENCODING)
    assert list(s.columns) == [
        "item_id", "prompt", "chosen", "rejected", "labels",
        "chosen_values", "rejected_values", "justification",
    ]  # fmt: skip
    assert (s[["chosen_values", "rejected_values"]] == "").all().all()
    assert "value" not in s.columns and "row_id" not in s.columns
    k = A.read_key(key)
    pairs = sorted(zip(k["value"], k["row_id"], strict=True))
    assert pairs == [("empathy", f"e{i}") for i in (1, 2, 3)] + [
        ("honesty", "h1"),
        ("honesty", "h2"),
    ]
    # the flipped pairs show the subset's chosen response (the one expressing the value)
    e2 = s[s["item_id"] == k.loc[k["row_id"] == "e2", "item_id"].iat[0]]
    assert e2["chosen"].iat[0].startswith("That must feel awful")
    only = A.sheet_frame(A.sample_items(fixture_subsets(), POOL, SETTINGS), chosen_only=True)
    assert "rejected" not in only.columns and "rejected_values" not in only.columns


def test_import_of_the_committed_filled_sheets_gives_the_known_agreement() -> None:
    sheets = [FIX / f"{a}.csv" for a in ANNOTATORS]
    table, summary = A.import_sheets(FIX / "sheet.key.csv", sheets)
    check_known_agreement(table, summary)


def test_round_trip_export_fill_import(tmp_path: Path) -> None:
    sheet, key = tmp_path / "sheet.csv", tmp_path / "sheet.key.csv"
    A.export_sheet(fixture_subsets(), POOL, sheet, key, SETTINGS)
    filled = []
    for a in ANNOTATORS:
        fill(sheet, key, a, tmp_path / f"{a}.csv")
        filled.append(tmp_path / f"{a}.csv")
    check_known_agreement(*A.import_sheets(key, filled))


def test_import_stops_on_blank_unknown_or_foreign_sheets(tmp_path: Path) -> None:
    key = FIX / "sheet.key.csv"
    s = pd.read_csv(FIX / "ann_a.csv", dtype=str, keep_default_na=False, encoding=A.ENCODING)
    blank = s.assign(chosen_values=[""] + list(s["chosen_values"][1:]))
    blank.to_csv(tmp_path / "blank.csv", index=False, encoding=A.ENCODING)
    with pytest.raises(ValueError, match=r"blank\.csv: chosen_values is blank for 1 item"):
        A.import_sheets(key, [tmp_path / "blank.csv", FIX / "ann_b.csv"])
    typo = s.assign(chosen_values=["empaty"] + list(s["chosen_values"][1:]))
    typo.to_csv(tmp_path / "typo.csv", index=False, encoding=A.ENCODING)
    with pytest.raises(ValueError, match=r"typo\.csv: item-0001: 'empaty' is not one"):
        A.import_sheets(key, [tmp_path / "typo.csv"])
    s.iloc[1:].to_csv(tmp_path / "short.csv", index=False, encoding=A.ENCODING)
    with pytest.raises(ValueError, match="its items are not the key's"):
        A.import_sheets(key, [tmp_path / "short.csv"])
    with pytest.raises(ValueError, match="same file name"):
        A.import_sheets(key, [FIX / "ann_a.csv", tmp_path / "x" / "ann_a.csv"])


def test_cli_export_and_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    subsets = tmp_path / "subsets.parquet"
    fixture_subsets().to_parquet(subsets)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"studyb": {"values": POOL, "seed": 0}}))
    sheet = tmp_path / "out" / "sheet.csv"
    argv = ["export", "--config", str(cfg), "--subsets", str(subsets), "--n", "3"]
    argv += ["--values", "empathy", "honesty", "--out", str(sheet)]
    assert A.main(argv) == 0
    assert "5 items (empathy 3, honesty 2)" in capsys.readouterr().out
    key = tmp_path / "out" / "sheet.key.csv"  # the default key path
    assert sheet.read_bytes() == (FIX / "sheet.csv").read_bytes() and key.is_file()
    out, summ = tmp_path / "table3.csv", tmp_path / "summary.json"
    sheets = [str(FIX / f"{a}.csv") for a in ANNOTATORS]
    argv = ["import", "--key", str(key), *sheets, "--out", str(out), "--summary", str(summ)]
    assert A.main(argv) == 0
    printed = capsys.readouterr().out
    assert "Table 3" in printed and "66.7" in printed
    check_known_agreement(pd.read_csv(out), json.loads(summ.read_text()))
    assert A.main(["import", "--key", str(key), str(tmp_path / "missing.csv")]) == 1
    assert "valueharms.studyb.annotation:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        A.main(["--help"])
    assert "Jaccard" in capsys.readouterr().out
