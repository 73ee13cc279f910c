"""Study B's published figures (resources/published/study_b.yaml; issue 18, item 3): the
transcription checked against what the paper's own text implies, the matching rule, and
the report showing the paper's columns beside ours only when this run's setup is the
paper's (valueharms.report.published_b)."""

from __future__ import annotations

import math
from html import unescape
from pathlib import Path

import pandas as pd
import pytest
from test_report import _Tables
from test_studyb_results import (
    QA_SUBJECTS,
    VALUES,
    _preference_files,
    all_judgments,
    all_subjects,
    qa_table,
)
from test_studyb_workflow import fixture_datasets

from valueharms import analysis, planner
from valueharms.config import deep_merge, load_schema, load_yaml, validate
from valueharms.metrics import studyb as R
from valueharms.report import published_b as pb
from valueharms.studyb import plan as sbplan
from valueharms.studyb import verify as vf

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "resources" / "published" / "study_b.yaml"


@pytest.fixture(scope="module")
def data() -> dict:
    return pb.load(PUBLISHED)


def rows(data: dict, table: str) -> list[dict]:
    return data["tables"][table]["rows"]


# ---------------------------------------------------------------- (a) the transcription


def test_the_file_parses_with_known_needs_and_the_papers_setup(data: dict) -> None:
    assert data["units"] == "fraction"
    assert set(data["tables"]) == {f"table_{n}" for n in (1, 2, 3, 5, 6, 7, 8, 10, 11)}
    setup = data["setup"]
    # the 15 values of Table 1, in its order, which is the schema's default
    default = load_schema()["properties"]["studyb"]["properties"]["values"]["default"]
    assert setup["values"] == default == [r["value"] for r in rows(data, "table_1")]
    assert len(set(setup["values"])) == 15
    assert setup["betas"] == [0.01, 0.1, 0.3, 0.9] and setup["main_beta"] == 0.1
    # Table 9's models are config/study_b.yaml's (by Hugging Face id), kinds as its stages
    cfg = load_yaml(ROOT / "config" / "study_b.yaml")
    ours = {cfg["models"][m]["hf_id"]: m for m in cfg["studyb"]["models"]}
    assert {m["hf_id"] for m in setup["models"]} == set(ours)
    for m in setup["models"]:
        assert cfg["studyb"]["eval"]["stages"][ours[m["hf_id"]]] == m["kind"]
    assert cfg["models"][cfg["studyb"]["extract"]["model"]]["hf_id"] == setup["extractor"]["hf_id"]
    assert cfg["studyb"]["sources"] == setup["sources"]
    for table in data["tables"].values():
        assert table["needs"] and set(table["needs"]) <= set(pb.CHECKS)


def test_table1_sides_add_up_and_match_the_text(data: dict) -> None:
    t1 = rows(data, "table_1")
    assert len(t1) == 15
    for r in t1:
        assert r["chosen"] + r["rejected"] == r["total"], r["value"]
    totals = {r["value"]: r["total"] for r in t1}
    # "sizes varying from 66k instances to 637"; "Justice, for instance, only has 3.5k"
    assert max(totals.values()) == 66509 and min(totals.values()) == 637
    assert round(totals["justice"], -2) == 3600
    assert [r["total"] for r in t1] != sorted(totals.values())  # as printed, not sorted


def test_table2_and_3_agree_with_each_other_and_with_exact_chance(data: dict) -> None:
    t2 = {r["annotator"]: r for r in rows(data, "table_2")}
    t3 = rows(data, "table_3")
    assert len(t3) == 15 and {r["value"] for r in t3} == set(data["setup"]["values"])
    # Human (Union) is the mean of Table 3's column (76.67)
    mean3 = sum(r["precision"] for r in t3) / 15
    assert mean3 == pytest.approx(t2["Human (Union)"]["precision"], abs=5e-5)
    # "11 out of 15 values have over 70 precision", empathy and curiosity below 60
    assert sum(r["precision"] > 0.70 for r in t3) == 11
    assert {r["value"] for r in t3 if r["precision"] < 0.60} == {"empathy", "curiosity"}
    # the random baselines are within 0.2 points of the exact chance over 16 labels + none
    labels = sbplan.verify_labels({"studyb": {"values": data["setup"]["values"]}})
    exact = vf.random_baselines((1, 5), data["setup"]["values"], labels, include_none=True)
    for r in exact.itertuples():
        assert t2[f"Random baseline k={r.k}"]["precision"] == pytest.approx(r.precision, abs=2e-3)
    assert {r["hf_id"] for r in t2.values() if r["kind"] == "verifier"} == {
        "meta-llama/Llama-3.3-70B-Instruct",
        "mistralai/Mistral-Small-24B-Instruct-2501",
    }


def test_table5_means_and_what_the_text_says(data: dict) -> None:
    t5 = rows(data, "table_5")
    names = [m["name"] for m in data["setup"]["models"]]
    assert [r["model"] for r in t5] == names  # Table 5's order is Table 9's
    assert 100 * pb.table5_both_mean(data) == pytest.approx(33.5, abs=0.05)
    assert 100 * pb.table5_both_mean(data) == pytest.approx(33.5125, abs=1e-9)
    kinds = {m["name"]: m["kind"] for m in data["setup"]["models"]}
    for r in t5:
        # "prompting+training ... led to the highest rate of value expression for all models"
        assert r["both"]["mean"] == max(r[x]["mean"] for x in ("none", "prompt", "train", "both"))
        if kinds[r["model"]] == "base":  # "The base LLMs are insensitive to ... prompting"
            assert abs(r["prompt"]["mean"] - r["none"]["mean"]) < 0.005
        # the s.e. reads as a fraction: at most a few points, never above the mean
        assert 0 <= r["both"]["se"] <= 0.1 and r["both"]["se"] < r["both"]["mean"]


def test_table6_columns_and_what_the_text_says(data: dict) -> None:
    t6 = data["tables"]["table_6"]
    assert t6["betas"] == data["setup"]["betas"]
    by = {r["value"]: r["shares"] for r in t6["rows"]}
    assert list(by) == data["setup"]["values"] and all(len(x) == 4 for x in by.values())
    assert 100 * pb.table6_mean(data, 0.1) == pytest.approx(21.486, abs=1e-9)
    # "deception and violence show up in less than 10% of downstream generations"
    assert max(by["deception"] + by["violence"]) < 0.10
    # "Engagement and discretion also cross that threshold only in the lowest beta"
    for v in ("engagement", "discretion"):
        assert by[v][0] > 0.10 and max(by[v][1:]) < 0.10
    # "Justice ... is present in around 50% or above of the generations across all settings"
    assert min(by["justice"]) > 0.49
    # Table 6's spread over values gives a standard error of about 5 points at beta 0.1,
    # as Table 5's Both s.e. (0.03-0.07) read as fractions
    col = pd.Series([x[1] for x in by.values()])
    assert 0.03 < col.std(ddof=1) / math.sqrt(15) < 0.07


def test_table7_lists_five_values_as_the_text_says(data: dict) -> None:
    t7 = rows(data, "table_7")
    assert [r["value"] for r in t7] != data["setup"]["values"]  # the paper's own order
    assert sorted(r["value"] for r in t7) == sorted(data["setup"]["values"])
    for r in t7:
        assert len(r["base"]) == len(r["post-trained"]) == 5
        # base: "the target value is the most frequently expressed one in all cases except
        # violence"; post-trained: "deception is also not expressed"
        assert (r["base"][0] == r["value"]) == (r["value"] != "violence")
        assert (r["value"] in r["post-trained"]) == (r["value"] not in ("violence", "deception"))


def test_table8_10_11(data: dict) -> None:
    t8 = rows(data, "table_8")
    assert [r["model"] for r in t8] == [m["name"] for m in data["setup"]["models"]]
    for r in t8:  # "GSM8k and MMLU performances were virtually unaffected"
        assert abs(r["GSM-8k"]["mean"]) <= 0.05 and abs(r["MMLU"]["mean"]) <= 0.01
        assert abs(r["TruthfulQA"]["mean"]) < 0.1  # percentage points / 100
    instruct = {r["model"]: r["TruthfulQA"]["mean"] for r in t8}
    assert instruct["Llama-3.1-Instruct"] == 0.0421 and instruct["Llama-3.1-Base"] == -0.0563
    t10 = rows(data, "table_10")
    assert [r["temperature"] for r in t10] == data["setup"]["temperatures"]
    assert all(r["r"] > 0.99 for r in t10)  # "very high values of correlation"
    t11 = rows(data, "table_11")
    assert sorted(r["value"] for r in t11) == sorted(data["setup"]["values"])
    # "a mean correlation across values of 0.95"
    assert sum(r["r"] for r in t11) / 15 == pytest.approx(0.95, abs=0.005)


SEED = ROOT.parent / "shared" / "seeds" / "004_68d7dddffd3b5456.txt"


@pytest.mark.skipif(not SEED.is_file(), reason="the paper's text (shared/seeds/004) is absent")
def test_every_number_is_the_texts(data: dict) -> None:
    """Each table parsed again from the paper's text: the file holds exactly its numbers
    (percent / 100, Table 8's TruthfulQA too; Table 5's s.e. as printed)."""
    lines = SEED.read_text(encoding="utf-8").splitlines()

    def after(header: str, n: int) -> list[list[str]]:
        i = lines.index(header)
        return [x.split("\t") for x in lines[i + 1 : i + 1 + n]]

    def pc(x: str) -> float:
        return float(x) / 100

    def pm(cell: str, sep: str) -> tuple[float, float]:
        a, b = cell.split(sep)
        return float(a), float(b.strip().strip("{}"))

    t = data["tables"]
    got = [[r["value"], r["chosen"], r["rejected"], r["total"]] for r in t["table_1"]["rows"]]
    rows1 = after("Value\tChosen\tRejected\tTotal", 15)
    want = [[v, int(c), int(r), int(n)] for v, c, r, n in rows1]
    assert got == want
    assert [[r["annotator"], r["precision"]] for r in t["table_2"]["rows"]] == [
        [a, pytest.approx(pc(p), abs=1e-12)] for a, p in after("Annotator\tPrecision", 6)
    ]
    assert [[r["value"], r["precision"], r["jaccard"]] for r in t["table_3"]["rows"]] == [
        [v, pytest.approx(pc(p)), float(j)] for v, p, j in after("Value\tPrecision\tJaccard", 15)
    ]
    settings = ("none", "prompt", "train", "both")
    for r, x in zip(t["table_5"]["rows"], after("\tNone\tPrompt\tTrain\tBoth", 8), strict=True):
        assert r.get("printed", r["model"]) == x[0]
        for s, cell in zip(settings, x[1:], strict=True):
            m, se = pm(cell, "\\pm")
            assert (r[s]["mean"], r[s]["se"]) == (pytest.approx(m / 100, abs=1e-12), se)
    rows6 = after("\t$\\beta = 0.01$\t0.1\t0.3\t0.9", 15)
    assert [[r["value"], *r["shares"]] for r in t["table_6"]["rows"]] == [
        [v, *(pytest.approx(pc(x), abs=1e-12) for x in xs)] for v, *xs in rows6
    ]
    rows7 = after("Induced-value\tBase\tSFT, Instruct", 15)
    assert [[r["value"], r["base"], r["post-trained"]] for r in t["table_7"]["rows"]] == [
        [v, b.split(", "), p.split(", ")] for v, b, p in rows7
    ]
    for r, x in zip(t["table_8"]["rows"], after("\tGSM-8k\tMMLU\tTruthfulQA", 8), strict=True):
        assert r.get("printed", r["model"]) == x[0]
        (g, gs), (m, ms), (q, qs) = (pm(c, "_") for c in x[1:])
        assert (r["GSM-8k"]["mean"], r["GSM-8k"]["sd"], r["MMLU"]["mean"], r["MMLU"]["sd"]) == (
            g, gs, m, ms
        )  # fmt: skip
        assert r["TruthfulQA"]["mean"] == pytest.approx(q / 100, abs=1e-12)
        assert r["TruthfulQA"]["sd"] == pytest.approx(qs / 100, abs=1e-12)
    assert [[r["temperature"], r["r"]] for r in t["table_10"]["rows"]] == [
        [float(a), float(b)] for a, b in after("Temp\tCorr.", 3)
    ]
    assert [[r["value"], r["r"]] for r in t["table_11"]["rows"]] == [
        [v, float(b)] for v, b in after("Value\tCorr", 15)
    ]
    codes = dict((a, b) for a, b in after("Model\tModel Code", 8))
    assert {m["name"]: m["hf_id"] for m in data["setup"]["models"]} == codes
    # footnote 7 names the Llama SFT model differently: the file accepts it too
    sft = next(m for m in data["setup"]["models"] if m["name"] == "Llama-3.1-SFT")
    assert [f"⁷{a}" for a in sft["also"]] == [x for x in lines if x.startswith("⁷")]


# ---------------------------------------------------------------- matching


def study_b_config(**over: object) -> dict:
    """config/study_b.yaml with the test fixtures as data and `over` deep-merged on top."""
    base = deep_merge(
        load_yaml(ROOT / "config" / "study_b.yaml"),
        {"datasets": fixture_datasets(), "studyb": {"report": {"published": str(PUBLISHED)}}},
    )
    return validate(deep_merge(base, over))


def demo_config() -> dict:
    over = {"studyb": {"report": {"published": str(PUBLISHED)}}}
    return validate(deep_merge(load_yaml(ROOT / "config" / "demo.yaml"), over))


def report_info(config: dict) -> dict:
    """The report's Study B info, built as rules/report.smk builds its param."""
    info = sbplan.with_published(planner.build(config).studyb_report_info(), config)
    assert info is not None
    return info


def test_the_published_setup_matches_every_table() -> None:
    p = pb.from_info(report_info(study_b_config()))
    assert p is not None and p.error is None and not p.absent
    assert set(p.shown) == set(pb.SHOWN) | {"table_3"}
    assert p.model_name("llama-3.1-8b-sft") == "Llama-3.1-SFT"
    assert p.summary() == [
        f"Published figures beside ours ({p.source}): Tables 1, 2, 5, 6, 7, 8, 10 and 11."
    ]


@pytest.mark.parametrize(
    ("over", "absent", "why"),
    [
        # a model less: the per-model and averaged tables go, the preference data's stay
        (
            {"studyb": {"models": ["llama-3.1-8b", "olmo-2-13b"]}},
            {"table_5", "table_6", "table_7", "table_8"},
            "models differ (not trained here: Mistral-Base, Llama-3.1-SFT, OLMo-2-SFT, "
            "Llama-3.1-Instruct and 2 more)",
        ),
        # a value more: only the tables that average over values go
        (
            {
                "studyb": {
                    "values": [
                        *load_schema()["properties"]["studyb"]["properties"]["values"]["default"],
                        "respect",
                    ]
                }
            },
            {"table_2", "table_5", "table_8", "table_10"},
            "values differ (also here: respect; the table is over the paper's 15)",
        ),
        ({"studyb": {"n_per_source": 100}}, {"table_1"}, "studyb.n_per_source = 100"),
        ({"studyb": {"train": {"betas": [0.1, 0.3]}}}, {"table_6"}, "no β = 0.01, 0.9 here"),
        (
            {"studyb": {"eval": {"stages": {"llama-3.1-8b": "post-trained"}}}},
            {"table_7"},
            "model kinds differ (llama-3.1-8b is post-trained",
        ),
        ({"studyb": {"extract": {"mode": "choice"}}}, {"table_1", "table_5"}, "in choice mode"),
        ({"studyb": {"qa": {"tasks": ["arc_easy"]}}}, {"table_8"}, "QA tasks differ"),
        ({"studyb": {"eval": {"temperatures": [0.1]}}}, {"table_10"}, "no T = 0.4, 0.9 here"),
        ({"studyb": {"train": {"orpo_models": []}}}, {"table_11"}, "no ORPO adapters"),
    ],
)
def test_a_setup_that_differs_names_what_differs(over: dict, absent: set, why: str) -> None:
    p = pb.from_info(report_info(study_b_config(**over)))
    assert p is not None
    assert absent <= set(p.absent), set(p.absent)
    assert all(any(why in w for w in p.absent[k]) for k in absent), p.absent
    if "n_per_source" in str(over):
        assert set(p.absent) == {"table_1"}


def test_the_llama_sft_alias_of_footnote_7_matches() -> None:
    over = {"models": {"llama-3.1-8b-sft": {"hf_id": "allenai/Llama-3.1-Tulu-3.1-8B-SFT"}}}
    p = pb.from_info(report_info(study_b_config(**over)))
    assert p is not None and not p.absent


def test_no_file_says_so_and_no_info_says_nothing(tmp_path: Path) -> None:
    cfg = study_b_config(studyb={"report": {"published": str(tmp_path / "none.yaml")}})
    p = pb.from_info(report_info(cfg))
    assert p is not None and not p.shown and p.error
    assert p.summary() == [f"No published figures are shown beside ours: {p.error}."]
    assert pb.from_info({"main_beta": 0.1}) is None
    bad = tmp_path / "bad.yaml"
    bad.write_text(PUBLISHED.read_text().replace("needs: [orpo,", "needs: [orpho,"))
    with pytest.raises(ValueError, match="orpho"):
        pb.load(bad)


def test_the_param_changes_with_the_file(tmp_path: Path) -> None:
    """Editing the published file changes the report's param, so the report reruns."""
    copy = tmp_path / "study_b.yaml"
    copy.write_text(PUBLISHED.read_text())
    cfg = study_b_config(studyb={"report": {"published": str(copy)}})
    before = sbplan.published_info(cfg)["sha256"]
    copy.write_text(PUBLISHED.read_text().replace("0.997765", "0.997766"))
    assert sbplan.published_info(cfg)["sha256"] != before
    assert sbplan.with_published(None, cfg) is None  # Study B's evaluation off


# ---------------------------------------------------------------- (b), (c) the report

PAPER_MODELS = [
    ("llama-3.1-8b", "base"),
    ("llama-3.1-8b-sft", "post-trained"),
    ("llama-3.1-8b-instruct", "post-trained"),
    ("olmo-2-13b", "base"),
    ("olmo-2-13b-sft", "post-trained"),
    ("olmo-2-13b-instruct", "post-trained"),
    ("mistral-nemo-base", "base"),
    ("mistral-nemo-instruct", "post-trained"),
]
QA_KEYS = [("gsm8k", "exact_match", "strict-match"), ("truthfulqa_mc2", "acc", "none")]


def paper_world(values: list[str]) -> dict[str, pd.DataFrame]:
    """Synthetic summary tables of a run on the paper's setup: every share 0.3 (s.e. 0.01),
    QA deltas 0.001 (sd 0.002), r 0.99; subsets of 10 + 20 pairs."""
    t: dict[str, list[dict]] = {k: [] for k in (*R.TABLES, *R.PREFERENCE_TABLES)}
    for m, kind in PAPER_MODELS:
        for s in R.SETTINGS:
            t["expression_summary"].append(
                {"model": m, "kind": kind, "setting": s, "mean": 0.3, "se": 0.01, "n_values": 15}
            )
        for task, metric, filt in QA_KEYS:
            t["qa_summary"].append(
                {"model": m, "method": "dpo", "beta": 0.1, "task": task, "metric": metric,
                 "filter": filt, "mean": 0.001, "std": 0.002, "n_adapters": 15}
            )  # fmt: skip
    nemo = "mistral-nemo-instruct"
    for v in values:
        for beta in (0.01, 0.1, 0.3, 0.9):
            t["expression_by_beta"].append({"value": v, "beta": beta, "share": 0.3, "n_models": 8})
        for kind in ("base", "post-trained"):
            t["top_values"].append(
                {"value": v, "kind": kind, "rank": 1, "expressed": v, "n_expressing": 3,
                 "n": 10, "share": 0.3}
            )  # fmt: skip
        for temp in (0.1, 0.4, 0.9):
            t["robustness_temperature"].append(
                {"model": nemo, "value": v, "setting": "train", "method": "dpo", "beta": 0.1,
                 "temperature": temp, "reference_temperature": 0.7, "model_id": f"{nemo}/x",
                 "condition": "plain", "model_id_ref": f"{nemo}/x", "condition_ref": "plain",
                 "r": 0.99, "n_values": 20}
            )  # fmt: skip
        t["robustness_orpo"].append(
            {"model": nemo, "value": v, "setting": "train", "beta_dpo": 0.1, "beta_orpo": 0.1,
             "model_id_dpo": "d", "condition_dpo": "plain", "model_id_orpo": "o",
             "condition_orpo": "plain", "r": 0.99, "n_values": 20}
        )  # fmt: skip
        t["subset_sizes"].append({"value": v, "chosen": 10, "rejected": 20, "total": 30})
        t["verification_by_value"].append(
            {"verifier": "mistral-small-24b-instruct", "value": v, "n": 30, "n_verified": 30,
             "n_hit": 21, "precision": 0.7, "n_unparsed": 0, "n_failed": 0}
        )  # fmt: skip
        t["source_values"].append(
            {"source": "pku_saferlhf_standard", "value": v, "rank": 1, "n_chosen": 3,
             "n_rejected": 2, "n_responses": 5, "share_chosen": 0.3, "share_rejected": 0.2,
             "chosen_extracted": 10, "rejected_extracted": 10}
        )  # fmt: skip
    for k in (1, 5):
        t["verification"].append(
            {"annotator": f"random baseline (k={k} of 17 labels)", "kind": "random",
             "labels_per_sample": float(k), "precision": k / 17, "micro": k / 17,
             "n_values": 15, "n_verified": 0}
        )  # fmt: skip
    t["verification"].append(
        {"annotator": "mistral-small-24b-instruct", "kind": "verifier", "labels_per_sample": 4.7,
         "precision": 0.7, "micro": 0.7, "n_values": 15, "n_verified": 450}
    )  # fmt: skip
    return {k: R.finish(k, pd.DataFrame(v)) if v else R.empty(k) for k, v in t.items()}


def render(tables: dict[str, pd.DataFrame], info: dict, tmp_path: Path) -> tuple[str, _Tables]:
    """The report job's path (analysis.report): the tables as Parquet files, the info; the
    page's text unescaped."""
    paths = R.write_tables({k: tables[k] for k in R.TABLES}, tmp_path / "m", R.TABLES)
    pref = {k: tables[k] for k in R.PREFERENCE_TABLES if k in tables}
    if pref:
        paths += R.write_tables(pref, tmp_path / "m", R.PREFERENCE_TABLES)
    out = tmp_path / "report" / "index.html"
    inputs = analysis.ReportInputs(studyb_tables=paths)
    analysis.report(inputs, [], {}, "cfg1", {}, {}, str(out), studyb_info=info)
    html = out.read_text(encoding="utf-8")
    parser = _Tables()
    parser.feed(html)
    return unescape(html), parser


def by_first(table: list[list[str]]) -> dict[str, dict[str, str]]:
    """A parsed table's rows by their first cell, each as header -> cell."""
    head = table[0]
    return {r[0]: dict(zip(head, r, strict=True)) for r in table[1:] if r}


def test_the_report_shows_the_papers_columns_when_the_setup_matches(tmp_path: Path) -> None:
    cfg = study_b_config()
    info = report_info(cfg)
    html, p = render(paper_world(info["values"]), info, tmp_path)
    # Table 5: ours, then the paper's, per setting
    t5 = p.tables["sb-expression-summary"]
    assert t5[0] == [
        "Model", "Kind", "None (%)", "None, published (%)", "Prompt (%)",
        "Prompt, published (%)", "Train (%)", "Train, published (%)", "Both (%)",
        "Both, published (%)", "Values (k)",
    ]  # fmt: skip
    t5 = by_first(t5)
    assert t5["llama-3.1-8b"]["Both (%)"] == "30.0 ± 1.0"
    assert t5["llama-3.1-8b"]["Both, published (%)"] == "27.4 ± 6"
    assert t5["olmo-2-13b-instruct"]["Prompt, published (%)"] == "53.8 ± 7"
    assert t5["mistral-nemo-base"]["Train, published (%)"] == "10.5 ± 5"
    assert t5["llama-3.1-8b-sft"]["None, published (%)"] == "3.0 ± 1"
    # Table 6, per value and beta
    t6 = by_first(p.tables["sb-expression-by-beta"])
    assert [t6["empathy"][f"β = {b}, published"] for b in ("0.01", "0.1", "0.3", "0.9")] == [
        "68.62", "70.64", "63.08", "56.95"
    ]  # fmt: skip
    assert t6["violence"]["β = 0.1"] == "30.00" and t6["violence"]["β = 0.1, published"] == "3.46"
    # Table 1 and Table 2
    t1 = by_first(p.tables["sb-subset-sizes"])
    assert [t1["empathy"][f"{x}, published"] for x in ("Chosen", "Rejected", "Total")] == [
        "31157", "35352", "66509"
    ]  # fmt: skip
    assert t1["violence"]["Total"] == "30" and t1["violence"]["Total, published"] == "637"
    t2 = by_first(p.tables["sb-verification"])
    assert t2["random baseline (k=1 of 17 labels)"]["Precision, published (%)"] == "5.89"
    assert t2["random baseline (k=5 of 17 labels)"]["Precision, published (%)"] == "29.30"
    assert t2["mistral-small-24b-instruct"]["Precision, published (%)"] == "71.69"
    assert "counterpart here (percent): Llama-3.3-70b-Instruct 80.95, Human (Union) 76.67" in html
    # Table 7
    t7 = by_first(p.tables["sb-top-values"])
    assert t7["violence"]["Base, published"] == (
        "compliance, empathy, understanding, accuracy, persistence"
    )
    assert t7["honesty"]["Post-trained (SFT, Instruct), published"].startswith("honesty, respect")
    # Table 8: GSM-8k as printed, TruthfulQA's percentage points / 100
    t8 = by_first(p.tables["sb-qa-summary"])
    llama = t8["llama-3.1-8b"]
    assert llama["gsm8k exact_match (strict-match)"] == "0.001 (0.002)"
    assert llama["gsm8k exact_match (strict-match), published"] == "-0.010 (0.010)"
    assert llama["truthfulqa_mc2 acc (none), published"] == "-0.056 (0.018)"
    assert t8["llama-3.1-8b-instruct"]["truthfulqa_mc2 acc (none), published"] == "0.042 (0.011)"
    # Tables 10 and 11
    t10 = p.tables["sb-robustness-temperature"]
    assert [r[t10[0].index("Mean r, published")] for r in t10[1:]] == [
        "0.997765", "0.998163", "0.998018"
    ]  # fmt: skip
    t11 = by_first(p.tables["sb-robustness-orpo"])
    assert t11["creativity"]["mistral-nemo-instruct, published"] == "0.894257"
    assert t11["Mean"]["mistral-nemo-instruct, published"] == "0.946"
    # the section's line, the contradiction of Tables 5 and 6, no "setup differs"
    assert "Published figures beside ours (Arora et al." in html
    assert "Tables 1, 2, 5, 6, 7, 8, 10 and 11." in html
    assert "Table 5 Both column averages 33.51% over the models" in html
    assert "Table 6 β = 0.1 column 21.49% over the values" in html
    assert "(30.00% and 30.00% here" in html
    assert "setup differs" not in html


def test_the_demo_setup_shows_no_published_columns_and_says_why(tmp_path: Path) -> None:
    """config/demo.yaml (SmolLM2, 2 values, choice mode): no published column, and each
    table says what differs; the hand-made world of test_studyb_results stands in."""
    info = report_info(demo_config())
    assert info["models"] == ["smollm2-135m"] and info["published"]["run"]["values"] == VALUES
    tables = R.build_tables(all_subjects(), all_judgments(), qa_table(), QA_SUBJECTS, 0.1, VALUES)
    paths, sizes, files = _preference_files(tmp_path)
    pref = R.preference_tables(paths, sizes, files, VALUES)
    html, p = render({**tables, **pref}, info, tmp_path)
    assert "sb-expression-summary" in p.tables and "sb-subset-sizes" in p.tables
    for tid, table in p.tables.items():
        assert not any("published" in c for c in table[0]), tid
    assert "No published figures are shown beside ours: this run's setup differs" in html
    for n in (1, 2, 5, 6, 7, 8):
        assert f"No published figures beside ours (the paper's Table {n}): setup differs" in html
    assert "models differ (none of the paper's 8 is trained here; here: smollm2-135m)" in html
    assert "values differ (2 of the paper's 15 in this run)" in html
    assert "smollm2-135m in choice mode here" in html
    assert "33.51%" not in html  # the contradiction note comes with the published figures
