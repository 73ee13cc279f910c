"""Benign fine-tuning sets (METHODS A3): loaders, splits and schema."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from paths import DEMO, SHARED

from valueharms.data.benign import (
    BENIGN_SCHEMA,
    GRAMMAR_INSTRUCTION,
    SAMSUM_INSTRUCTION,
    benign_examples,
    load_alpaca,
    load_dolly,
    load_grammar,
    load_samsum,
)
from valueharms.io import SchemaError, read_table, write_table

BENIGN = DEMO / "benign"

FIXTURES = {
    "alpaca": BENIGN / "alpaca.json",
    "dolly": BENIGN / "dolly.jsonl",
    "grammar": BENIGN / "grammar.csv",
    "samsum": BENIGN / "samsum.json",
}


def test_load_alpaca_joins_input():
    df = load_alpaca(FIXTURES["alpaca"])
    assert list(df.columns) == ["example_id", "prompt", "completion"]
    assert len(df) == 6
    assert df["example_id"].tolist() == [f"alpaca-{i}" for i in range(6)]
    # Empty input: the instruction alone.
    assert df.loc[0, "prompt"] == "Give three tips for staying healthy."
    assert df.loc[0, "completion"] == "Eat well, sleep enough, and exercise."
    # Non-empty input: appended after a blank line.
    assert df.loc[1, "prompt"] == "Translate the sentence into French.\n\nGood morning."
    assert df.loc[1, "completion"] == "Bonjour."
    assert df.loc[4, "completion"].count("\n") == 2


def test_load_dolly_context_and_exclusion():
    df = load_dolly(FIXTURES["dolly"])
    assert len(df) == 6
    assert df.loc[0, "prompt"] == "When did the first moon landing happen?"
    assert df.loc[1, "prompt"] == (
        "Who wrote the novel?\n\nPride and Prejudice is an 1813 novel by Jane Austen."
    )
    assert df.loc[1, "completion"] == "Jane Austen."

    kept = load_dolly(FIXTURES["dolly"], exclude_categories=["creative_writing"])
    assert len(kept) == 4
    # Ids keep their source line numbers after exclusion.
    assert kept["example_id"].tolist() == ["dolly-0", "dolly-1", "dolly-2", "dolly-3"]
    assert not kept["completion"].str.contains("lighthouse|waves").any()


def test_load_grammar_bom_and_strip():
    df = load_grammar(FIXTURES["grammar"])
    assert len(df) == 6
    assert df.loc[0, "prompt"] == GRAMMAR_INSTRUCTION + "She go to school every day."
    assert (
        df.loc[0, "prompt"] == "Correct the grammar of this sentence:\nShe go to school every day."
    )
    assert df.loc[0, "completion"] == "She goes to school every day."
    # Surrounding whitespace stripped; quoted commas kept.
    assert df.loc[1, "prompt"] == GRAMMAR_INSTRUCTION + "I has a apple."
    assert df.loc[2, "completion"] == "They were late, so we left."
    assert not df["prompt"].str.contains("\ufeff").any()


def test_load_samsum_json_and_jsonl(tmp_path):
    df = load_samsum(FIXTURES["samsum"])
    assert len(df) == 4
    assert df.loc[0, "example_id"] == "samsum-13818513"
    assert df.loc[0, "prompt"] == (
        SAMSUM_INSTRUCTION + "Amanda: I baked cookies. Do you want some?\r\nJerry: Sure!"
    )
    assert df.loc[0, "prompt"].startswith("Summarize this dialogue:\n")
    assert df.loc[0, "completion"] == "Amanda baked cookies and will bring Jerry some."

    records = json.loads(FIXTURES["samsum"].read_text(encoding="utf-8"))
    jsonl = tmp_path / "samsum.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    pd.testing.assert_frame_equal(load_samsum(jsonl), df)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_benign_examples_schema_and_roundtrip(name, tmp_path):
    out = benign_examples(name, FIXTURES[name], valid_fraction=0.5)
    assert list(out.columns) == BENIGN_SCHEMA.names
    assert set(out["split"]) <= {"train", "valid"}
    assert out["example_id"].is_unique
    path = tmp_path / f"{name}.parquet"
    write_table(path, out, BENIGN_SCHEMA)
    pd.testing.assert_frame_equal(read_table(path, BENIGN_SCHEMA), out)


def test_schema_rejects_missing_prompt(tmp_path):
    out = benign_examples("alpaca", FIXTURES["alpaca"]).drop(columns="prompt")
    with pytest.raises(SchemaError):
        write_table(tmp_path / "bad.parquet", out, BENIGN_SCHEMA)


def test_held_out_split_sizes_and_disjoint():
    out = benign_examples("alpaca", FIXTURES["alpaca"], valid_fraction=0.5, seed=1)
    train, valid = out[out["split"] == "train"], out[out["split"] == "valid"]
    assert (len(train), len(valid)) == (3, 3)
    assert set(train["example_id"]).isdisjoint(valid["example_id"])
    assert set(out["example_id"]) == {f"alpaca-{i}" for i in range(6)}
    # Train rows come before valid rows.
    assert out["split"].tolist() == ["train"] * 3 + ["valid"] * 3

    # The valid split is exactly DataFrame.sample(frac, random_state=seed).
    expected = load_alpaca(FIXTURES["alpaca"]).sample(frac=0.5, random_state=1)
    assert valid["example_id"].tolist() == expected["example_id"].tolist()


def test_default_fraction_on_small_set():
    out = benign_examples("samsum", FIXTURES["samsum"])
    # round(0.1 * 4) == 0 rows held out.
    assert out["split"].value_counts().to_dict() == {"train": 4}


def test_determinism_and_seed():
    a = benign_examples("dolly", FIXTURES["dolly"], valid_fraction=0.34, seed=7)
    b = benign_examples("dolly", FIXTURES["dolly"], valid_fraction=0.34, seed=7)
    pd.testing.assert_frame_equal(a, b)
    orders = {
        tuple(benign_examples("dolly", FIXTURES["dolly"], seed=s)["example_id"]) for s in range(10)
    }
    assert len(orders) > 1


def test_dolly_exclusion_through_benign_examples():
    out = benign_examples(
        "dolly", FIXTURES["dolly"], valid_fraction=0.25, exclude_categories=("creative_writing",)
    )
    assert len(out) == 4
    assert out["split"].value_counts().to_dict() == {"train": 3, "valid": 1}
    assert not out["example_id"].isin(["dolly-4", "dolly-5"]).any()


def test_max_examples_caps_train_only():
    full = benign_examples("alpaca", FIXTURES["alpaca"], valid_fraction=0.34, seed=3)
    capped = benign_examples(
        "alpaca", FIXTURES["alpaca"], valid_fraction=0.34, seed=3, max_examples=2
    )
    full_train = full[full["split"] == "train"]
    capped_train = capped[capped["split"] == "train"]
    assert len(full_train) == 4 and len(capped_train) == 2
    # Head of the same seeded shuffle.
    assert capped_train["example_id"].tolist() == full_train["example_id"].tolist()[:2]
    pd.testing.assert_frame_equal(
        capped[capped["split"] == "valid"].reset_index(drop=True),
        full[full["split"] == "valid"].reset_index(drop=True),
    )
    zero = benign_examples("alpaca", FIXTURES["alpaca"], max_examples=0)
    assert (zero["split"] == "train").sum() == 0


def test_grammar_valid_path():
    out = benign_examples(
        "grammar",
        FIXTURES["grammar"],
        valid_path=BENIGN / "grammar_validation.csv",
        valid_fraction=0.5,  # ignored when valid_path is given
    )
    train, valid = out[out["split"] == "train"], out[out["split"] == "valid"]
    assert (len(train), len(valid)) == (6, 2)
    assert valid["example_id"].tolist() == ["grammar-valid-0", "grammar-valid-1"]
    assert valid["prompt"].tolist()[0] == GRAMMAR_INSTRUCTION + "I am agree with you."
    assert valid["completion"].tolist()[1] == "She has two cats."
    assert out["example_id"].is_unique


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown benign set"):
        benign_examples("nope", FIXTURES["alpaca"])
    with pytest.raises(ValueError, match="valid_fraction"):
        benign_examples("alpaca", FIXTURES["alpaca"], valid_fraction=1.0)


def _csv_data_rows(path: Path) -> int:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def test_real_gtrain_row_count():
    path = SHARED / "gtrain_10k.csv"
    if not path.exists():
        pytest.skip(f"{path} not present")
    df = load_grammar(path)
    assert len(df) == _csv_data_rows(path)
    assert df["prompt"].str.startswith(GRAMMAR_INSTRUCTION).all()
    assert (df["completion"] != "").all()
    valid_path = SHARED / "grammar_validation.csv"
    if valid_path.exists():
        out = benign_examples("grammar", path, valid_path=valid_path)
        counts = out["split"].value_counts().to_dict()
        assert counts == {"train": len(df), "valid": _csv_data_rows(valid_path)}
        assert out["example_id"].is_unique
