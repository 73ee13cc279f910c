"""Study B data: preference loaders on fixtures in the public layouts, and XOR value subsets."""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from paths import ROOT

from valueharms.data.sources import CATALOGUE, DataError, LoadReport
from valueharms.io import read_table, write_table
from valueharms.studyb import preferences as prefs
from valueharms.studyb.subsets import (
    DEFAULT_VALUES,
    SUBSET_SIZES_SCHEMA,
    SUBSETS_SCHEMA,
    build_subsets,
    pair_values,
    subset_sizes,
    xor_side,
)

FIX = ROOT / "tests" / "fixtures" / "studyb"


def load(name: str, path: Path | None = None, **kw) -> tuple[pd.DataFrame, LoadReport]:
    rep = LoadReport(name, "fixture")
    df = prefs.load_preferences(name, path or FIX / f"{name}.jsonl", report=rep, **kw)
    return df, rep


# --- loaders ---------------------------------------------------------------------------


def test_pku_saferlhf_better_and_safer_labels() -> None:
    better, rep = load("pku_saferlhf")
    assert better["row_id"].tolist() == ["pku_saferlhf-000000", "pku_saferlhf-000001"]
    first = better.iloc[0]
    # better_response_id = 1: the lock-picking instructions were rated more helpful.
    assert first["chosen"].startswith("Insert a tension wrench")
    assert first["rejected"].startswith("I can't help")
    assert rep.rows_in == 6 and rep.rows_out == 2
    assert rep.dropped == {
        "better_response_id is not 0 or 1": 1,
        "identical chosen and rejected": 1,
        "line is not a JSON object": 1,
        "missing or empty prompt/response": 1,
    }
    safer, _ = load("pku_saferlhf", preference="safer")
    # safer_response_id = 0 for row 0; row 3 has a valid safer id, so it survives here.
    assert safer.iloc[0]["chosen"].startswith("I can't help")
    assert safer["row_id"].tolist() == [
        "pku_saferlhf-000000",
        "pku_saferlhf-000001",
        "pku_saferlhf-000003",
    ]
    assert safer.iloc[2][["chosen", "rejected"]].tolist() == ["Red.", "Blue."]


def test_ultrafeedback_binarized_message_lists() -> None:
    df, rep = load("ultrafeedback")
    assert df["row_id"].tolist() == ["ultrafeedback-000000", "ultrafeedback-000001"]
    assert df.iloc[0]["prompt"] == "Write a haiku about rain."
    assert df.iloc[0]["chosen"].startswith("Soft rain on the roof,\nthe garden")
    assert df.iloc[0]["rejected"] == "Rain is wet."
    assert rep.dropped == {
        "chosen and rejected differ before the reply": 1,
        "message list does not end with an assistant reply": 1,
    }


def test_ultrafeedback_reads_parquet_like_the_hub_file(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (FIX / "ultrafeedback.jsonl").read_text().splitlines()]
    path = tmp_path / "train_prefs-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    from_parquet, _ = load("ultrafeedback", path)
    from_jsonl, _ = load("ultrafeedback")
    pd.testing.assert_frame_equal(from_parquet, from_jsonl)


def test_helpsteer2_pairs_by_helpfulness_and_drops_ties() -> None:
    df, rep = load("helpsteer2")
    assert df["row_id"].tolist() == ["helpsteer2-000000+000001", "helpsteer2-000002+000003"]
    assert df.iloc[0][["chosen", "rejected"]].tolist() == ["2+2 equals 4.", "5"]
    # Second pair: the later row has the higher helpfulness (4 > 2), so it is chosen.
    assert df.iloc[1]["chosen"].startswith("Day 1: Colosseum and Forum")
    # HelpSteer2's <extra_id_1> turn markers become the HH-style labels of the prompt column.
    assert df.iloc[1]["prompt"] == (
        "Plan a trip to Rome.\n\nAssistant: For how many days?\n\nHuman: Three days."
    )
    assert rep.rows_in == 7 and rep.rows_out == 4  # rows: two per kept pair
    assert rep.dropped == {
        "pair with equal helpfulness (2 rows each)": 2,
        "response without a partner for its prompt": 1,
    }


def test_helpsteer2_reads_the_public_gzip_and_csv(tmp_path: Path) -> None:
    gz = tmp_path / "train.jsonl.gz"
    with gzip.open(gz, "wb") as fh:
        fh.write((FIX / "helpsteer2.jsonl").read_bytes())
    csv = tmp_path / "train.csv"
    rows = [json.loads(line) for line in (FIX / "helpsteer2.jsonl").read_text().splitlines()]
    pd.DataFrame(rows).to_csv(csv, index=False)
    reference, _ = load("helpsteer2")
    pd.testing.assert_frame_equal(load("helpsteer2", gz)[0], reference)
    pd.testing.assert_frame_equal(load("helpsteer2", csv)[0], reference)


def test_pku_reads_json_list_and_xz_lines(tmp_path: Path) -> None:
    lines = (FIX / "pku_saferlhf.jsonl").read_text().splitlines()
    good = [json.loads(line) for line in lines[:-1]]  # the last line is malformed on purpose
    as_json = tmp_path / "train.json"
    as_json.write_text(json.dumps(good))
    as_xz = tmp_path / "train.jsonl.xz"
    with lzma.open(as_xz, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    reference, _ = load("pku_saferlhf")
    pd.testing.assert_frame_equal(load("pku_saferlhf", as_json)[0], reference)
    pd.testing.assert_frame_equal(load("pku_saferlhf", as_xz)[0], reference)


def test_hh_rlhf_splits_the_shared_prefix() -> None:
    df, rep = load("hh_rlhf")
    assert df["row_id"].tolist() == ["hh_rlhf-000000", "hh_rlhf-000001"]
    assert df.iloc[0][["prompt", "rejected"]].tolist() == [
        "How can I steal a car?",
        "Find an old model and hotwire it.",
    ]
    multi = df.iloc[1]
    assert multi["prompt"] == (
        "I feel sad today.\n\nAssistant: I'm sorry to hear that. What happened?"
        "\n\nHuman: My dog died."
    )
    assert multi[["chosen", "rejected"]].tolist() == [
        "That is a real loss; it is okay to grieve.",
        "Get a new one.",
    ]
    assert rep.dropped == {
        "missing or empty prompt/response": 1,
        "transcripts do not share the dialogue before the last reply": 1,
    }


def test_split_hh_transcript_refuses_mismatched_prefixes() -> None:
    assert prefs.split_hh_transcript(
        "\n\nHuman: a\n\nAssistant: b", "\n\nHuman: a\n\nAssistant: c"
    ) == (
        "a",
        "b",
        "c",
    )
    assert (
        prefs.split_hh_transcript("\n\nHuman: a\n\nAssistant: b", "\n\nHuman: z\n\nAssistant: c")
        is None
    )
    assert prefs.split_hh_transcript("no turns here", "\n\nHuman: a\n\nAssistant: c") is None


@pytest.mark.parametrize("name", prefs.SOURCES)
def test_missing_file_names_the_config_key(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        prefs.load_preferences(name, tmp_path / "absent.jsonl")
    msg = str(err.value)
    assert msg.startswith(f"datasets.{name}.path: file not found:")
    assert CATALOGUE[name].url in msg and CATALOGUE[name].licence in msg


def test_missing_columns_and_unknown_format_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "pku.jsonl"
    bad.write_text('{"prompt": "a", "response_0": "b", "response_1": "c"}\n')
    with pytest.raises(DataError, match=r"datasets.pku_saferlhf.path: .* lacks columns \['better_"):
        prefs.load_preferences("pku_saferlhf", bad)
    odd = tmp_path / "data.txt"
    odd.write_text("x")
    with pytest.raises(DataError, match="unknown format"):
        prefs.load_preferences("hh_rlhf", odd)


def test_subsample_is_seeded_per_source_and_keeps_ids() -> None:
    df, _ = load("pku_saferlhf")
    big = pd.concat(
        [df.assign(row_id=df["row_id"] + f"-{k}") for k in range(10)], ignore_index=True
    )
    a, b = prefs.subsample(big, 5, seed=1), prefs.subsample(big, 5, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 5 and set(a["row_id"]) <= set(big["row_id"])
    assert a["row_id"].tolist() == [r for r in big["row_id"] if r in set(a["row_id"])]  # order
    assert not prefs.subsample(big, 5, seed=2)["row_id"].equals(a["row_id"])
    assert len(prefs.subsample(big, None)) == len(big) == len(prefs.subsample(big, 99))


def test_load_all_concatenates_into_the_declared_schema(tmp_path: Path) -> None:
    # the upstream layouts here; the paper's RLHFlow releases: tests/test_studyb_sources.py
    paths = {n: FIX / f"{n}.jsonl" for n in prefs.ALTERNATIVE_SOURCES}
    reports: dict[str, LoadReport] = {}
    df = prefs.load_all(paths, n=1, seed=0, reports=reports)
    assert df.groupby("source").size().to_dict() == dict.fromkeys(prefs.ALTERNATIVE_SOURCES, 1)
    assert set(reports) == set(prefs.ALTERNATIVE_SOURCES)
    write_table(tmp_path / "t.parquet", df, prefs.TRIPLETS_SCHEMA)
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.parquet", prefs.TRIPLETS_SCHEMA), df)


def test_fixture_folder_holds_only_our_files() -> None:
    # The fixtures are ours, small, in the public layouts: keep them that way.
    assert sorted(p.name for p in FIX.iterdir()) == sorted(
        f"{n}.jsonl" for n in prefs.ALTERNATIVE_SOURCES
    )
    assert all(p.stat().st_size < 4000 for p in FIX.iterdir())


# --- XOR subsets -----------------------------------------------------------------------


def _extractions(rows: list[tuple[str, str, list[str] | None, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [("src", rid, side, "raw", status, vals, [], None) for rid, side, vals, status in rows],
        columns=["source", "row_id", "side", "raw", "status", "values", "dropped_items", "error"],
    )


TRIPLETS = pd.DataFrame(
    {
        "source": ["src"] * 5,
        "row_id": ["both", "neither", "chosen_only", "rejected_only", "unparsed"],
        "prompt": ["p1", "p2", "p3", "p4", "p5"],
        "chosen": ["c1", "c2", "c3", "c4", "c5"],
        "rejected": ["r1", "r2", "r3", "r4", "r5"],
    }
)
EXTRACTIONS = _extractions(
    [
        ("both", "chosen", ["honesty", "empathy"], "ok"),
        ("both", "rejected", ["honesty"], "ok"),
        ("neither", "chosen", [], "none"),
        ("neither", "rejected", ["curiosity"], "ok"),
        ("chosen_only", "chosen", ["honesty"], "ok"),
        ("chosen_only", "rejected", [], "none"),
        ("rejected_only", "chosen", ["empathy"], "ok"),
        ("rejected_only", "rejected", ["honesty", "humor"], "ok"),
        ("unparsed", "chosen", ["honesty"], "ok"),
        ("unparsed", "rejected", None, "unparsed"),
    ]
)


def test_xor_side() -> None:
    assert xor_side("v", ["v"], ["v"]) is None
    assert xor_side("v", [], ["w"]) is None
    assert xor_side("v", ["v"], []) == "chosen"
    assert xor_side("v", ["w"], ["v", "x"]) == "rejected"


def test_subsets_keep_xor_pairs_and_flip_rejected_only() -> None:
    sub = build_subsets(TRIPLETS, EXTRACTIONS, ["honesty", "empathy", "Humor"])
    honesty = sub[sub["value"] == "honesty"].set_index("row_id")
    # in both, in neither and the half-extracted pair are left out
    assert sorted(honesty.index) == ["chosen_only", "rejected_only"]
    assert honesty.loc["chosen_only", ["chosen", "rejected", "flipped"]].tolist() == [
        "c3",
        "r3",
        False,
    ]
    assert honesty.loc["rejected_only", ["chosen", "rejected", "flipped"]].tolist() == [
        "r4",
        "c4",
        True,
    ]
    empathy = sub[sub["value"] == "empathy"].set_index("row_id")
    assert empathy["flipped"].to_dict() == {"both": False, "rejected_only": False}
    humor = sub[sub["value"] == "humor"]  # the configured name is normalised
    assert humor[["row_id", "chosen", "flipped"]].values.tolist() == [["rejected_only", "r4", True]]
    assert pa.Table.from_pandas(sub, schema=SUBSETS_SCHEMA, preserve_index=False).num_rows == 5


def test_subset_sizes_table1_layout() -> None:
    sizes = subset_sizes(EXTRACTIONS, ["honesty", "empathy", "violence"]).set_index("value")
    assert sizes.loc["honesty"].tolist() == [1, 1, 2]
    assert sizes.loc["empathy"].tolist() == [2, 0, 2]
    assert sizes.loc["violence"].tolist() == [0, 0, 0]
    assert pa.Table.from_pandas(
        sizes.reset_index(), schema=SUBSET_SIZES_SCHEMA, preserve_index=False
    )
    assert len(pair_values(EXTRACTIONS)) == 4  # the half-extracted pair is out


def test_default_values_are_the_15_of_table_1() -> None:
    assert len(DEFAULT_VALUES) == 15 == len(set(DEFAULT_VALUES))
    assert {"open-mindedness", "deception", "violence", "personalization"} <= set(DEFAULT_VALUES)
