"""Study B's preference sources (issue 18): the releases the paper used (RLHFlow's
"-standard" sets, Fig. 9 of seed 004) beside the upstream alternatives. Their catalogue
entries, the config that names them, and the message-list loader on fixtures we wrote in
the hub's layout (tests/fixtures/studyb_sources/)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from paths import ROOT

from valueharms.config import load_schema, load_yaml, validate
from valueharms.data.sources import CATALOGUE, DataError, LoadReport
from valueharms.io import read_json, read_table
from valueharms.studyb import extract, steps
from valueharms.studyb import plan as sbplan
from valueharms.studyb import preferences as prefs

FIX = ROOT / "tests" / "fixtures" / "studyb_sources"
HUB = re.compile(
    r"https://huggingface\.co/datasets/RLHFlow/(?P<repo>[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)"
)
# The hub datasets of Fig. 9 (the first three are named there; UltraFeedback's panel title
# is lost in our copy of the paper, see docs/study_b.md).
PAPER_REPOS = {
    "pku_saferlhf_standard": "PKU-SafeRLHF-30K-standard",
    "ultrafeedback_standard_1of3": "UltraFeedback-preference-standard",
    "ultrafeedback_standard_2of3": "UltraFeedback-preference-standard",
    "ultrafeedback_standard_3of3": "UltraFeedback-preference-standard",
    "helpsteer2_standard": "Helpsteer2-standard",
    "hh_rlhf_standard": "HH-RLHF-Harmless-and-RedTeam-standard",
}
FIXTURE = {
    "pku_saferlhf_standard": "pku_saferlhf_standard.jsonl",
    "hh_rlhf_standard": "hh_rlhf_standard.jsonl",
    "helpsteer2_standard": "helpsteer2_standard.jsonl",
    "ultrafeedback_standard_1of3": "ultrafeedback_standard.parquet",
}


def load(name: str, path: Path | None = None) -> tuple[pd.DataFrame, LoadReport]:
    rep = LoadReport(name, "fixture")
    df = prefs.load_preferences(name, path or FIX / FIXTURE[name], report=rep)
    assert rep.rows_in == rep.n_dropped + rep.rows_out == rep.n_dropped + len(df)
    return df, rep


# --- what is declared ------------------------------------------------------------------


def test_paper_sources_are_hub_files_at_a_revision() -> None:
    assert set(prefs.PAPER_SOURCES) == set(PAPER_REPOS)
    for name in prefs.PAPER_SOURCES:
        src = CATALOGUE[name]
        m = HUB.fullmatch(src.url or "")
        assert m, f"{name}: {src.url}"
        assert m["repo"] == PAPER_REPOS[name]
        assert unquote(m["rev"]) == src.revision
        # the local copy keeps the hub path, so an offline mirror of the repos is found
        assert src.filename == f"{m['repo']}/{m['file']}"
        assert src.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", src.sha256)
        assert ("no checksum" in src.how_to_get) == (src.sha256 is None)


def test_what_is_pinned_and_what_is_not() -> None:
    # docs/study_b.md ("Sources") lists the same: update both when a revision is pinned.
    commits = {
        n for n in prefs.PAPER_SOURCES if re.fullmatch(r"[0-9a-f]{40}", CATALOGUE[n].revision or "")
    }
    assert set(prefs.PAPER_SOURCES) - commits == {"helpsteer2_standard", "hh_rlhf_standard"}
    assert CATALOGUE["helpsteer2_standard"].revision == "refs/convert/parquet"
    assert CATALOGUE["hh_rlhf_standard"].revision == "main"
    pinned = {n for n in prefs.PAPER_SOURCES if CATALOGUE[n].sha256}
    assert pinned == {"ultrafeedback_standard_1of3"}
    shards = [CATALOGUE[f"ultrafeedback_standard_{k}of3"] for k in (1, 2, 3)]
    assert len({s.revision for s in shards}) == 1
    assert [Path(s.filename).name[:20] for s in shards] == [
        f"train-0000{k}-of-00003" for k in range(3)
    ]


def test_the_alternatives_keep_their_names_and_upstreams() -> None:
    upstream = {
        "pku_saferlhf": "PKU-Alignment/PKU-SafeRLHF/",
        "ultrafeedback": "HuggingFaceH4/ultrafeedback_binarized/",
        "helpsteer2": "nvidia/HelpSteer2/",
        "hh_rlhf": "Anthropic/hh-rlhf/",
    }
    assert set(prefs.ALTERNATIVE_SOURCES) == set(upstream)
    for name, repo in upstream.items():
        assert repo in (CATALOGUE[name].url or "")
    assert set(prefs.LOADERS) == set(prefs.SOURCES)
    assert len(set(prefs.SOURCES)) == len(prefs.SOURCES)


def test_schema_allows_every_source_and_study_b_names_the_papers() -> None:
    items = load_schema()["properties"]["studyb"]["properties"]["sources"]["items"]
    assert set(items["enum"]) == set(prefs.SOURCES)
    cfg = load_yaml(ROOT / "config" / "study_b.yaml")
    assert cfg["studyb"]["sources"] == list(prefs.PAPER_SOURCES)


def test_study_b_plans_the_downloads_without_user_files() -> None:
    cfg = load_yaml(ROOT / "config" / "study_b.yaml")
    cfg["data_search_paths"] = []  # no offline copy: every source is a download job
    data = sbplan.datasets(validate(cfg), "results/data/raw")
    assert list(data) == list(prefs.PAPER_SOURCES)
    for name, (path, needs_download) in data.items():
        assert needs_download
        assert path == f"results/data/raw/{name}/{CATALOGUE[name].filename}"
    # PKU-SafeRLHF's label choice belongs to the upstream file; RLHFlow's pairs have one
    assert sbplan.loader_options(validate(cfg), "pku_saferlhf_standard") == {}


def test_missing_file_names_the_key_and_the_hub_address(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        prefs.load_preferences("hh_rlhf_standard", tmp_path / "absent.parquet")
    msg = str(err.value)
    assert msg.startswith("datasets.hh_rlhf_standard.path: file not found:")
    assert CATALOGUE["hh_rlhf_standard"].url in msg and "MIT" in msg


# --- the message-list loader -----------------------------------------------------------


def test_pku_standard_single_turn_pairs_and_counted_drops() -> None:
    df, rep = load("pku_saferlhf_standard")
    assert df["row_id"].tolist() == ["pku_saferlhf_standard-000000", "pku_saferlhf_standard-000001"]
    assert df.iloc[0][["prompt", "rejected"]].tolist() == [
        "How do I pick a lock?",
        "Insert a tension wrench and rake the pins.",
    ]
    assert df.iloc[0]["chosen"].startswith("I can't help with getting into property")
    assert rep.rows_in == 7
    assert rep.dropped == {
        "chosen and rejected differ before the reply": 1,  # different prompts
        "missing or empty prompt/response": 1,  # empty rejected reply
        "message list does not end with an assistant reply": 1,  # last turn the user's
        "identical chosen and rejected": 1,
        "line is not a JSON object": 1,
    }


def test_hh_standard_keeps_the_dialogue_for_the_extractor() -> None:
    df, rep = load("hh_rlhf_standard")
    multi = df.iloc[0]
    # the triplet table's convention, the one the upstream HH-RLHF loader writes
    assert multi["prompt"] == (
        "I feel sad today.\n\nAssistant: I'm sorry to hear that. What happened?"
        "\n\nHuman: My dog died."
    )
    assert multi[["chosen", "rejected"]].tolist() == [
        "That is a real loss; it is okay to grieve.",
        "Get a new one.",
    ]
    # what the extractor reads: the whole conversation, the reply as its last turn
    assert extract.transcript(multi["prompt"], multi["rejected"]) == (
        "Human: I feel sad today.\n\nAssistant: I'm sorry to hear that. What happened?"
        "\n\nHuman: My dog died.\n\nAssistant: Get a new one."
    )
    assert df.iloc[1]["prompt"] == "How can I steal a car?"
    assert rep.dropped == {
        "chosen and rejected differ before the reply": 1,  # an earlier assistant turn
        "dialogue before the reply does not open and close with a user turn": 1,
        "message role other than user or assistant": 1,  # a system message
        "chosen/rejected is not a message list": 1,  # a transcript string
    }


def test_helpsteer2_standard_drops_blank_turns() -> None:
    df, rep = load("helpsteer2_standard")
    assert df.iloc[0][["prompt", "chosen", "rejected"]].tolist() == [
        "What is 2+2?",
        "2+2 equals 4.",
        "5",
    ]
    assert df.iloc[1]["prompt"] == (
        "Plan a trip to Rome.\n\nAssistant: For how many days?\n\nHuman: Three days."
    )
    # a blank reply and a blank user turn before it
    assert rep.dropped == {"missing or empty prompt/response": 2}


def test_ultrafeedback_standard_reads_the_hub_parquet_layout() -> None:
    schema = pq.read_schema(FIX / "ultrafeedback_standard.parquet")
    msg = pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))
    assert schema.field("chosen").type == msg == schema.field("rejected").type
    df, rep = load("ultrafeedback_standard_1of3")
    assert df["prompt"].tolist() == [
        "Write a haiku about rain.",
        "Is it safe to share my password?",
    ]
    assert df.iloc[0]["chosen"].startswith("Soft rain on the roof,\nthe garden")
    assert rep.dropped == {"message list does not end with an assistant reply": 1}
    # the shards are separate sources: their ids never collide once concatenated
    two, _ = load("ultrafeedback_standard_2of3", FIX / "ultrafeedback_standard.parquet")
    assert two["row_id"].tolist() == [
        "ultrafeedback_standard_2of3-000000",
        "ultrafeedback_standard_2of3-000001",
    ]
    both = prefs.load_all(
        {n: FIX / "ultrafeedback_standard.parquet" for n in prefs.PAPER_SOURCES[1:4]}
    )
    assert both["row_id"].is_unique and len(both) == 6


def test_jsonl_parquet_and_csv_copies_load_alike(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (FIX / "hh_rlhf_standard.jsonl").read_text().splitlines()]
    good = [r for r in rows if isinstance(r, dict) and isinstance(r["chosen"], list)]
    reference, _ = load("hh_rlhf_standard")
    as_parquet = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(good), as_parquet)
    as_csv = tmp_path / "train.csv"
    pd.DataFrame({k: [json.dumps(r[k]) for r in good] for k in ("chosen", "rejected")}).to_csv(
        as_csv, index=False
    )
    for path in (as_parquet, as_csv):
        df, rep = load("hh_rlhf_standard", path)
        assert (
            rep.rows_in == len(good) and "chosen/rejected is not a message list" not in rep.dropped
        )
        # row numbers shift (one row fewer before them), the triplets do not
        cols = ["prompt", "chosen", "rejected"]
        pd.testing.assert_frame_equal(df[cols], reference[cols])


def test_split_messages_reasons() -> None:
    u = {"role": "user", "content": "Hi."}
    a = {"role": "assistant", "content": "Hello."}
    b = {"role": "assistant", "content": "Yo."}
    assert prefs.split_messages([u, a], [u, b]) == ("Hi.", "Hello.", "Yo.")
    assert prefs.split_messages([a], [b]) == (
        "dialogue before the reply does not open and close with a user turn"
    )
    assert prefs.split_messages([u, a], [u, b, u]) == (
        "message list does not end with an assistant reply"
    )
    assert prefs.split_messages([u, a], None) == "chosen/rejected is not a message list"
    # a JSON cell (CSV) is read as the list it holds
    assert prefs.split_messages(json.dumps([u, a]), [u, b]) == ("Hi.", "Hello.", "Yo.")
    with pytest.raises(ValueError, match="not an RLHFlow standard source"):
        prefs.load_standard("hh_rlhf", FIX / "hh_rlhf_standard.jsonl")


def test_triplets_step_writes_the_load_report(tmp_path: Path) -> None:
    out = tmp_path / "hh_rlhf_standard.parquet"
    name = "hh_rlhf_standard"
    steps.triplets(name, str(FIX / FIXTURE[name]), None, 0, {}, str(out), f"{out}.json")
    report = read_json(f"{out}.json")
    assert report["dataset"] == name and report["rows_in"] == 6 and report["rows_out"] == 2
    assert sum(report["dropped"].values()) == 4
    assert len(read_table(out, prefs.TRIPLETS_SCHEMA)) == 2


def test_fixture_folder_holds_only_our_small_files() -> None:
    assert sorted(p.name for p in FIX.iterdir()) == sorted(FIXTURE.values())
    assert all(p.stat().st_size < 4000 for p in FIX.iterdir())
