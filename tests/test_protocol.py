"""Issue 17: every protocol switch has a row, docs/protocol.md is current, and
config/study_a.yaml resolves to the public code's protocol (except declared defects)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from valueharms import protocol
from valueharms.config import load_yaml, validate

ROOT = Path(__file__).resolve().parents[1]


def _markers(node: Any) -> set[str]:
    """Every `x-protocol` id anywhere in the schema."""
    found: set[str] = set()
    if isinstance(node, dict):
        if "x-protocol" in node:
            found.add(node["x-protocol"])
        for v in node.values():
            found |= _markers(v)
    elif isinstance(node, list):
        for v in node:
            found |= _markers(v)
    return found


def test_every_marked_switch_has_a_row_and_every_row_a_marked_key():
    schema = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
    marked = _markers(schema)
    ids = {s.id for s in protocol.SWITCHES}
    assert marked - ids == set(), "schema keys marked x-protocol without a row in protocol.py"
    assert ids - marked == set(), "rows in protocol.py whose key carries no x-protocol marker"
    assert len(ids) == len(protocol.SWITCHES), "duplicate switch ids"


def test_rows_are_complete_and_name_the_pinned_public_code():
    for s in protocol.SWITCHES:
        assert "TBD" not in s.public_code and s.public_code, s.id
        assert s.published_text and s.ours_text and s.keys, s.id
        assert s.published != s.ours, s.id


@pytest.mark.parametrize("path", ["config/study_a.yaml", "config/demo.yaml", "config/study_b.yaml"])
def test_every_switch_key_exists_in_a_resolved_config(path):
    config = validate(load_yaml(ROOT / path))
    for s in protocol.SWITCHES:
        for key in s.keys:
            protocol.lookup(config, key)  # KeyError names the missing key


def test_docs_protocol_md_is_generated_from_the_rows():
    text = (ROOT / "docs/protocol.md").read_text(encoding="utf-8")
    regenerate = "regenerate: python -m valueharms.protocol > docs/protocol.md"
    assert text == protocol.markdown(), regenerate
    for s in protocol.SWITCHES:
        assert s.public_code in text and all(k in text for k in s.keys)


# Written out by hand from the public code (docs/protocol.md's files), not from the rows:
# what config/study_a.yaml must resolve to.
STUDY_A_EXPECTED = {
    "vim.stage1_questions": "per_polarity",
    "vim.stage2_labels": "correct",  # defect: published_shift
    "vim.stage1.group_by_length": False,
    "vim.stage2.group_by_length": False,
    "vim.stage1.max_length": 128,
    "vim.stage1.epochs": 5,
    "vim.stage1.batch_size": 8,
    "vim.stage1.learning_rate": 2e-5,
    "vim.stage1.lora_r": 8,
    "vim.stage1.lora_alpha": 32,
    "tokenization.add_special_tokens": True,
    "benign.train.epochs": 1,
    "benign.train.max_length": 2048,
    "benign.train.learning_rate": 2e-5,
    "benchmarks.hexphi.template": "resources/prompts/bench_qa.txt",
    "benchmarks.beavertails.template": "resources/prompts/bench_qa.txt",
    "benchmarks.rtp.n_prompts": 3000,
    "benchmarks.rtp.subsample": "head",
    "benchmarks.rtp.samples": 10,
    "benchmarks.rtp.temperature": 0.1,
    "benchmarks.rtp.top_p": 0.75,
    "benchmarks.rtp.max_new_tokens": 64,
    "benchmarks.holisticbiasr.max_new_tokens": 128,
    "benchmarks.rtp.scored_text": "sentence",  # defect: published
    "judges.toxicity.kind": "perspective",
    "judges.regard.kind": "hf_classifier",
    "judges.regard.hf_id": "sasha/regardv3",
    "judges.regard.input": "published",
    "judges.llm.model": "gpt-4o",
    "judges.llm.max_new_tokens": 4096,
    "judges.llm.mode": "generate",
    "metrics.bias_score.threshold_unit": "percent",
    "metrics.bias_score.single_row_buckets": "skip",
    "metrics.bias_score.n_resamples": 9999,
    "metrics.bias_score.confidence_level": 0.975,
    "distributions.realistic.reverse_code": True,  # defect: false
}


def test_study_a_config_resolves_to_the_public_codes_protocol():
    config = validate(load_yaml(ROOT / "config/study_a.yaml"))
    got = {k: protocol.lookup(config, k) for k in STUDY_A_EXPECTED}
    assert got == STUDY_A_EXPECTED
    assert config["models"][config["judges"]["llm"]["model"]]["name"] == "gpt-4o"
    for s in protocol.SWITCHES:
        assert protocol.choice(s, config) == s.study_choice, s.id


def test_the_report_table_says_which_behaviour_a_run_used():
    config = validate(load_yaml(ROOT / "config/study_a.yaml"))
    rows = {r["switch"]: r for r in protocol.rows(config)}
    assert rows["RealToxicityPrompts prompt set"]["behaviour used"] == "published"
    assert "benchmarks.rtp.n_prompts = 3000" in rows["RealToxicityPrompts prompt set"]["this run"]
    config["benchmarks"]["rtp"]["n_prompts"] = 10
    changed = {r["switch"]: r for r in protocol.rows(config)}
    assert changed["RealToxicityPrompts prompt set"]["behaviour used"] == "other"
    demo = validate(load_yaml(ROOT / "config/demo.yaml"))
    used = {r["switch"]: r["behaviour used"] for r in protocol.rows(demo)}
    assert used["Toxicity scorer"] == "ours"


def test_the_report_renders_the_protocol_section(tmp_path):
    from valueharms.report.render import _protocol_table

    config = validate(load_yaml(ROOT / "config/study_a.yaml"))
    table = _protocol_table(protocol.rows(config))
    assert len(table.rows) == len(protocol.SWITCHES)
    assert table.rows[0]["cells"][0] == protocol.SWITCHES[0].topic
