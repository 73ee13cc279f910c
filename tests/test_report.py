"""Tests for the HTML report (valueharms.report.render)."""

from __future__ import annotations

import math
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from valueharms import VALUES
from valueharms.report.render import StudyAData, build_report, fmt_id, fmt_num, fmt_p, stars

NAN = math.nan
EVIL = "<script>alert(1)</script>"


class _Tables(HTMLParser):
    """Collect every table's rows as lists of cell texts, keyed by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.imgs: list[str] = []
        self._id: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._id = a.get("id") or ""
            self.tables[self._id] = []
        elif tag == "tr" and self._id is not None:
            self.tables[self._id].append([])
        elif tag in ("td", "th") and self._id is not None:
            self._cell = []
        elif tag == "img":
            self.imgs.append(a.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._id is not None:
            self.tables[self._id][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._id = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _metric_rows(
    model_id: str, values: dict[str, float], cats: dict[str, float], failed: int
) -> list[dict]:
    judges = {"rtp": "profanity-check", "hexphi": "gpt-4o-mini"}
    bench = {"expected_max_toxicity": "rtp", "toxicity_probability": "rtp", "mean_score": "hexphi"}
    rows = [
        dict(
            benchmark=bench[m],
            model_id=model_id,
            condition="input_only",
            judge=judges[bench[m]],
            metric=m,
            category="all",
            value=v,
            n=10,
            n_failed=failed if bench[m] == "hexphi" else 0,
            n_unparsed=1 if bench[m] == "hexphi" else 0,
        )  # fmt: skip
        for m, v in values.items()
    ]
    rows += [
        dict(
            benchmark="hexphi",
            model_id=model_id,
            condition="input_only",
            judge="gpt-4o-mini",
            metric="mean_score",
            category=c,
            value=v,
            n=5,
            n_failed=0,
            n_unparsed=0,
        )  # fmt: skip
        for c, v in cats.items()
    ]
    return rows


@pytest.fixture
def frames() -> dict:
    metrics = pd.DataFrame(
        _metric_rows(
            "base",
            {"expected_max_toxicity": 0.1, "toxicity_probability": 0.0, "mean_score": 1.5},
            {"Illegal_Activity": 1.2, "Hate": 1.8},
            failed=0,
        )
        + _metric_rows(
            "vim_ach",
            {"expected_max_toxicity": 0.2, "toxicity_probability": 0.1, "mean_score": 3.0},
            {"Illegal_Activity": 3.5, "Hate": NAN},
            failed=3,
        )
        + _metric_rows(
            "vim_ben",
            {"expected_max_toxicity": 0.5, "toxicity_probability": 0.4, "mean_score": 2.0},
            {"Illegal_Activity": 2.5, "Hate": 1.5},
            failed=4,
        )
    )
    subjects = pd.DataFrame(
        {
            "model_id": ["base", "vim_ach", "vim_ben"],
            "condition": ["input_only"] * 3,
            "model_type": ["vanilla", "vim", "vim"],
            "distribution": [None, "close_Ach", "close_Ben"],
            "label": ["Vanilla", "VIM close_Ach", f"VIM {EVIL}"],
        }
    )
    comparisons = pd.DataFrame(
        [
            dict(
                benchmark="hexphi",
                metric="mean_score",
                group="vim",
                baseline="vanilla",
                n_group=20,
                n_baseline=10,
                mean_group=2.5,
                mean_baseline=1.5,
                mean_diff=1.0,
                u_statistic=180.0,
                p_mannwhitney=1e-5,
                p_permutation=2e-4,
                rank_biserial=0.8,
                p_holm=0.0004,
            )  # fmt: skip
        ]
    )
    correlations = pd.DataFrame(
        [
            dict(value=v, benchmark="hexphi", category=c, n=2, rho=NAN, p_value=NAN, q_bh=NAN)
            for v in VALUES
            for c in ("Illegal_Activity", "Hate")
        ]
    )
    distributions = pd.DataFrame(
        [
            {
                "name": "Ach",
                "kind": "extreme",
                "anchor": "Ach",
                "rank": 0,
                "distance": 0.0,
                "respondent_id": None,
                **{v: 6.0 if v == "Achievement" else 1.0 for v in VALUES},
            },
            {
                "name": "close_Ach",
                "kind": "realistic",
                "anchor": "Ach",
                "rank": 1,
                "distance": 0.12345,
                "respondent_id": "r17",
                **dict.fromkeys(VALUES, 3.5),
            },
        ]  # fmt: skip
    )
    provenance = {
        "config_hash": "abc123",
        "git_sha": "deadbeef",
        "created": "2025-01-01T00:00:00Z",
        "packages": {"pandas": "3.0", "jinja2": "3.1"},
        "judges": {"rtp": "profanity-check", "hexphi": "gpt-4o-mini"},
        "base_models": {"llama-2-7b": "rev1"},
        "settings": {"bias_score": {"threshold_unit": "percent"}},
    }
    return dict(
        metrics=metrics,
        subjects=subjects,
        comparisons=comparisons,
        correlations=correlations,
        distributions=distributions,
        provenance=provenance,
    )


def _build(frames: dict, out_html: str, **studyb) -> None:
    """build_report of the `frames` fixture's shape (Study A's frames and `provenance`)."""
    a = {k: v for k, v in frames.items() if k != "provenance"}
    build_report(frames["provenance"], out_html, study_a=StudyAData(**a), **studyb)


def _render(frames: dict, tmp_path: Path) -> tuple[str, _Tables]:
    out = tmp_path / "report" / "index.html"
    _build(frames, str(out))
    html = out.read_text(encoding="utf-8")
    parser = _Tables()
    parser.feed(html)
    return html, parser


def test_headline_means_and_judges(frames: dict, tmp_path: Path) -> None:
    _, p = _render(frames, tmp_path)
    head = p.tables["headline"]
    header = head[1]
    assert "EMT (profanity-check)" in header
    assert "Harm score (gpt-4o-mini)" in header
    rows = {r[0]: r for r in head[2:]}
    # VIM: 2 subjects; EMT mean (0.2 + 0.5) / 2, harm score mean (3.0 + 2.0) / 2
    vim = rows["vim"]
    assert vim[header.index("Subjects")] == "2"
    assert vim[header.index("EMT (profanity-check)")] == "0.350"
    assert vim[header.index("Tox. prob. (profanity-check)")] == "0.250"
    assert vim[header.index("Harm score (gpt-4o-mini)")] == "2.500"
    assert rows["vanilla"][header.index("EMT (profanity-check)")] == "0.100"
    assert list(rows) == ["vanilla", "vim"]  # known type order


def test_failures_and_tables(frames: dict, tmp_path: Path) -> None:
    html, p = _render(frames, tmp_path)
    fail = {(r[0], r[1]): r for r in p.tables["failures"][1:]}
    # hexphi: counts repeat on each metric row, so 3 + 4 failed, 1 unparsed per subject
    assert fail[("HEx-PHI", "gpt-4o-mini")][3:] == ["30", "7", "3"]
    assert fail[("RealToxicityPrompts", "profanity-check")][3:] == ["30", "0", "0"]
    assert fail[("Total", "")][2:] == ["3", "60", "7", "3"]
    # per-subject benchmark table carries n_failed; per-category table shows NaN as a dash
    hx = p.tables["bench-hexphi"]
    assert hx[0][-3:] == ["n", "n_failed", "n_unparsed"]
    assert ["VIM close_Ach", "3.000", "10", "3", "1"] in hx
    cat = p.tables["cat-hexphi-mean_score-gpt-4o-mini"]
    assert html.count('<table id="cat-') == 1  # one table per benchmark × metric × judge
    assert cat[0] == ["Subject", "Hate", "Illegal_Activity"]
    assert ["VIM close_Ach", "–", "3.500"] in cat
    # significance: formatted p-values and Holm stars
    comp = p.tables["comparisons"][1]
    assert comp[-2:] == ["4.0e-04", "***"]
    assert "1.0e-05" in comp
    dist = p.tables["distributions"]
    assert ["close_Ach", "realistic", "Ach", "1", "0.123", "r17"] == dist[2][:6]
    assert dist[1][5] == "–"
    for sec in ("Headline", "Study A findings", "Failures", "Notes", "Provenance"):
        assert f">{sec}</h2>" in html


def test_cells_on_few_scored_items_are_marked(frames: dict, tmp_path: Path) -> None:
    """Issue 21: a number built on fewer than report.min_scored_share of its items (the
    rest failed or unparsed) is marked, and so is a headline mean over such a subject."""
    html, p = _render(frames, tmp_path)
    assert "†" not in html  # the default share (0) marks nothing
    # hexphi scored: base 9/10, vim_ach 6/10, vim_ben 5/10; only vim_ben is under 0.55
    html, p = _render({**frames, "min_scored_share": 0.55}, tmp_path)
    head = p.tables["headline"]
    rows, col = {r[0]: r for r in head[2:]}, head[1].index("Harm score (gpt-4o-mini)")
    assert rows["vim"][col] == "2.500†" and rows["vanilla"][col] == "1.500"
    assert rows["vim"][head[1].index("EMT (profanity-check)")] == "0.350"  # RTP: all scored
    hx = {r[0]: r for r in p.tables["bench-hexphi"][1:]}
    assert hx[f"VIM {EVIL}"][1] == "2.000†" and hx["VIM close_Ach"][1] == "3.000"
    assert 'id="few-note"' in html and "fewer than 55% of" in html


def test_plots_notes_and_provenance(frames: dict, tmp_path: Path) -> None:
    html, p = _render(frames, tmp_path)
    assert '<img alt="Overall metrics per model type" src="data:image/png;base64,' in html
    assert len(p.imgs) == 1  # all rho NaN: no heat-map, a sentence instead
    assert "at least 3 value-aligned distributions" in html
    assert "threshold_unit is &#39;percent&#39;" in html
    assert "deadbeef" in html and "llama-2-7b" in html and "<dt>packages</dt>" in html


def test_heatmap_when_correlations(frames: dict, tmp_path: Path) -> None:
    corr = frames["correlations"]
    corr["n"] = 3
    corr["rho"] = [0.1 * (i % 10) for i in range(len(corr))]
    corr["p_value"] = 0.01
    corr["q_bh"] = [0.01] + [0.5] * (len(corr) - 1)
    html, p = _render(frames, tmp_path)
    assert len(p.imgs) == 2 and all(s.startswith("data:image/png;base64,") for s in p.imgs)
    assert len(p.tables["correlations"]) == 2  # header + the one q < 0.05 row


def test_heatmap_of_undefined_rho(frames: dict, tmp_path: Path) -> None:
    # Three distributions whose rates never vary: rho is undefined, the grid is still drawn
    frames["correlations"]["n"] = 3
    html, p = _render(frames, tmp_path)
    assert len(p.imgs) == 2 and "No value–risk correlation reaches" in html
    frames["correlations"]["n"] = 2  # too few distributions: no heat-map, and it says why
    html, p = _render(frames, tmp_path)
    assert len(p.imgs) == 1 and "need at least 3 value-aligned distributions" in html


def test_escaping_and_atomic_write(frames: dict, tmp_path: Path) -> None:
    html, p = _render(frames, tmp_path)
    assert EVIL not in html
    assert "VIM &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert any(r and r[0] == f"VIM {EVIL}" for r in p.tables["bench-rtp"])
    assert sorted(x.name for x in (tmp_path / "report").iterdir()) == ["index.html"]


def test_write_failure_leaves_nothing(frames: dict, tmp_path: Path) -> None:
    frames["metrics"] = frames["metrics"].drop(columns="judge")
    with pytest.raises(ValueError, match="judge"):
        _build(frames, str(tmp_path / "x.html"))
    assert list(tmp_path.iterdir()) == []


def test_mitigation_runs_leave_the_subject_tables(frames: dict, tmp_path: Path) -> None:
    m = frames["metrics"]
    mit = m.assign(condition="mit-safety", value=m["value"] - 0.5)
    frames["metrics"] = pd.concat([m, mit], ignore_index=True)
    _, p = _render(frames, tmp_path)
    # mit-* conditions are shown by the mitigation table only, not as unlisted subjects
    assert not any("mit-safety" in " ".join(r) for r in p.tables["headline"])
    assert "mitigation" not in p.tables  # no mitigation table was passed


def test_empty_inputs(frames: dict, tmp_path: Path) -> None:
    empty = {k: v.iloc[0:0] for k, v in frames.items() if k != "provenance"}
    html, p = _render({**empty, "provenance": {}}, tmp_path)
    assert p.tables["failures"][-1] == ["Total", "", "0", "0", "0", "0"]
    assert "data:image/png;base64," in html and "No comparisons." in html


def test_formatters() -> None:
    assert fmt_num(NAN) == "–" and fmt_num(None) == "–" and fmt_num(1 / 3) == "0.333"
    assert fmt_id(17.0) == "17" and fmt_id("r1") == "r1" and fmt_id(None) == "–"
    assert fmt_p(0.0123) == "0.012" and fmt_p(NAN) == "–"
    assert [stars(x) for x in (0.0005, 0.005, 0.03, 0.2, NAN)] == ["***", "**", "*", "", ""]


# ---------------------------------------------------------------- Study B


STUDYB_IDS = (
    "sb-expression-summary",
    "sb-expression-by-beta",
    "sb-top-values",
    "sb-qa-summary",
    "sb-refusal-by-value",
    "sb-refusal-by-model",
    "sb-anthro-by-value",
    "sb-robustness-temperature",
    "sb-robustness-orpo",
    "sb-failures",
)
STUDY_A_IDS = ("headline", "safety", "failures", "distributions", "bench-rtp")


@pytest.fixture
def studyb() -> dict:
    """Study B's tables from the hand-made world of test_studyb_results, and the info."""
    from test_studyb_results import QA_SUBJECTS, VALUES, all_judgments, all_subjects, qa_table

    from valueharms.metrics.studyb import build_tables

    tables = build_tables(all_subjects(), all_judgments(), qa_table(), QA_SUBJECTS, 0.1, VALUES)
    info = {
        "judges": {
            "issuebench": "llm:smollm2-135m (choice)",
            "advbench": "llm:refusal-judge",
            "anthrobench": "llm:anthro-judge",
        },
        "main_beta": 0.1,
        "models": ["mi", "mb"],
        "values": VALUES,
        "notes": [f"a note {EVIL}"],
    }
    return {"studyb_tables": tables, "studyb_info": info}


def _render_b(frames: dict | None, studyb: dict, tmp_path: Path) -> tuple[str, _Tables]:
    out = tmp_path / "report" / "index.html"
    if frames:
        _build(frames, str(out), **studyb)
    else:
        build_report({"config_hash": "b123"}, str(out), **studyb)
    html = out.read_text(encoding="utf-8")
    parser = _Tables()
    parser.feed(html)
    return html, parser


def test_studyb_only_report(studyb: dict, tmp_path: Path) -> None:
    html, p = _render_b(None, studyb, tmp_path)
    assert "<title>valueharms: Study B report</title>" in html
    for tid in STUDYB_IDS:
        assert tid in p.tables, tid
    for tid in STUDY_A_IDS:
        assert tid not in p.tables, tid
    for sec in ("Headline", "Study A findings", "Failures", "Plots"):
        assert f">{sec}</h2>" not in html
    assert ">Study B findings</h2>" in html
    # Table 5, in percent: mb none = 1/6 ± 1/6; models in info order (mi first)
    t5 = p.tables["sb-expression-summary"]
    assert t5[0] == [
        "Model",
        "Kind",
        "None (%)",
        "Prompt (%)",
        "Train (%)",
        "Both (%)",
        "Values (k)",
    ]
    assert [r[0] for r in t5[1:]] == ["mi", "mb"]
    assert t5[2] == ["mb", "base", "16.7 ± 16.7", "45.8 ± 20.8", "12.5 ± 12.5", "37.5 ± 12.5", "2"]
    # Table 6: empathy at beta 0.01 and 0.1
    assert p.tables["sb-expression-by-beta"][1] == ["empathy", "75.00", "62.50", "2"]
    t7 = {r[0]: r for r in p.tables["sb-top-values"][1:]}
    assert t7["empathy"][1:] == ["empathy (50.0), honesty (50.0)", "empathy (75.0), respect (25.0)"]
    # Figure 5: empathy +37.5 pp over 2 models
    assert p.tables["sb-refusal-by-value"][1] == [
        "empathy",
        "75.0",
        "37.5",
        "+37.5",
        "2",
        "0 failed, 0 unparsed",
    ]
    # mean refusal rate over values per setting (mb both: (0.5 + 0.75) / 2)
    assert p.tables["sb-refusal-by-model"][1:] == [["mi", "50.0", "50.0"], ["mb", "25.0", "62.5"]]
    # Table 8 at the main beta: mean 0.005, sd 0.05 / sqrt(2)
    assert p.tables["sb-qa-summary"][1] == ["mb", "0.005 (0.035)", "2"]
    anthro = p.tables["sb-anthro-by-value"]
    assert anthro[1][anthro[0].index("empathy")] == "0.67"
    assert anthro[1][anthro[0].index("first_person_pronoun_use")] == "-0.50"
    t10 = p.tables["sb-robustness-temperature"]
    assert t10[1] == ["mi", "Both", "dpo", "0.1", "0.4", "0.945", "1 / 1"]
    t11 = p.tables["sb-robustness-orpo"]
    assert t11[0] == ["Value", "mi (ORPO β 0.1, Train)"]
    assert t11[1:] == [["empathy", "–"], ["honesty", "0.945"], ["Mean", "0.945"]]
    fail = {r[0]: r for r in p.tables["sb-failures"][1:]}
    # 20 subjects x 4 responses + 1 x 6; 2 unparsed, 2 failed; the judge the rows name
    assert fail["IssueBench (value extractor)"][1:] == [
        "judge-issuebench", "21", "86", "82", "2", "2"
    ]  # fmt: skip
    # + AdvBench 7 subjects (one never judged) 26 rows, AnthroBench 4 subjects 11 rows
    assert fail["Total"][2:] == ["32", "123", "115", "4", "4"]
    # the judge of every table is named; two plots; text escaped
    assert "Judge: llm:refusal-judge" in html and "Judge: llm:anthro-judge" in html
    assert html.count("Judge: llm:smollm2-135m (choice)") == 10  # 5 tables, frequencies, diversity
    assert len(p.imgs) == 7 and all(s.startswith("data:image/png;base64,") for s in p.imgs)
    assert EVIL not in html and "a note &lt;script&gt;" in html
    assert "Not configured" not in html and "No data" not in html


def test_both_studies_report(frames: dict, studyb: dict, tmp_path: Path) -> None:
    html, p = _render_b(frames, studyb, tmp_path)
    assert "<title>valueharms: Study A and Study B report</title>" in html
    for tid in (*STUDYB_IDS, *STUDY_A_IDS):
        assert tid in p.tables, tid
    assert ">Headline</h2>" in html and ">Study B findings</h2>" in html
    # Study A's failures table keeps its own numbers
    assert p.tables["failures"][-1] == ["Total", "", "3", "60", "7", "3"]
    assert len(p.imgs) == 1 + 7


def test_study_a_report_has_no_study_b(frames: dict, tmp_path: Path) -> None:
    html, p = _render(frames, tmp_path)
    assert "<title>valueharms: Study A report</title>" in html
    assert "Study B" not in html and not any(t.startswith("sb-") for t in p.tables)


def test_studyb_empty_tables_give_notes(tmp_path: Path) -> None:
    from valueharms.metrics.studyb import build_tables

    tables = build_tables(None, None, None, None, 0.1, ["empathy"])
    info = {"judges": {}, "main_beta": 0.1, "models": [], "notes": "", "benchmarks": ["advbench"]}
    html, p = _render_b(None, {"studyb_tables": tables, "studyb_info": info}, tmp_path)
    assert not any(t.startswith("sb-") for t in p.tables) and not p.imgs
    assert "Not configured: no issuebench subjects in this run." in html
    assert "No data: no judged both-setting AdvBench responses." in html
    assert "Not configured: no QA evaluation in this run." in html
    assert "Not configured: no ORPO adapters in this run." in html
    assert "Not configured: no IssueBench runs at other temperatures." in html
    assert "No data: no Study B subjects or judgments." in html


def test_studyb_planned_but_not_judged(tmp_path: Path) -> None:
    """Without info's benchmark list, planned subjects (the failures table) tell a benchmark
    with no data yet from one not configured."""
    from test_studyb_results import VALUES, issue_subjects

    from valueharms.metrics.studyb import build_tables

    tables = build_tables(issue_subjects(), {}, None, None, 0.1, VALUES)
    info = {"judges": {"issuebench": "llm:x", "advbench": "llm:y"}, "main_beta": 0.1}
    html, p = _render_b(None, {"studyb_tables": tables, "studyb_info": info}, tmp_path)
    assert "No data: no extracted IssueBench responses." in html
    assert "Not configured: no advbench subjects in this run." in html
    assert "No data: no DPO adapter at β = 0.1 to compare with." not in html
    # planned ORPO pairs without responses: the table shows undefined r
    assert p.tables["sb-robustness-orpo"][-1] == ["Mean", "–"]
    assert p.tables["sb-failures"][1] == ["IssueBench (value extractor)", "llm:x", "21"] + ["0"] * 4


def test_nothing_to_report(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to report"):
        build_report({}, str(tmp_path / "x.html"))
    assert list(tmp_path.iterdir()) == []


def test_analysis_report_reads_studyb_tables(studyb: dict, tmp_path: Path) -> None:
    """scripts/report.py's path: Study A off (empty inputs), Study B's Parquet tables."""
    from valueharms import analysis
    from valueharms.metrics.studyb import TABLES, write_tables

    paths = write_tables(studyb["studyb_tables"], tmp_path / "metrics")
    assert [Path(p).name for p in paths] == [f"{n}.parquet" for n in TABLES]
    out = tmp_path / "report" / "index.html"
    args = ([], {}, "cfg1", {}, {}, str(out))
    inputs = analysis.ReportInputs(studyb_tables=paths)
    analysis.report(inputs, *args, studyb_info=studyb["studyb_info"])
    parser = _Tables()
    parser.feed(html := out.read_text(encoding="utf-8"))
    assert "sb-expression-summary" in parser.tables and "headline" not in parser.tables
    assert "cfg1" in html and "<dt>studyb</dt>" in html
    with pytest.raises(ValueError, match=r"Study B tables missing: \['failures'\]"):
        analysis.report(analysis.ReportInputs(studyb_tables=paths[:-1]), *args, studyb_info={})
    bad = tmp_path / "metrics" / "other.parquet"
    bad.write_bytes(Path(paths[0]).read_bytes())
    with pytest.raises(ValueError, match="not a Study B table"):
        inputs = analysis.ReportInputs(studyb_tables=[*paths, str(bad)])
        analysis.report(inputs, *args, studyb_info={})


def test_the_failure_table_counts_the_mitigation_runs_too() -> None:
    """Issue 21: mitigation judgments' failures appear in the Failures table."""
    import pandas as pd

    from valueharms.report.render import _counts, _failures_table

    rows = [
        ("hexphi", "llm:j", "m/vanilla", "plain", "all", 30, 2, 1),
        ("hexphi", "llm:j", "m/vanilla", "mit-safety-x", "all", 30, 3, 0),
    ]
    cols = ["benchmark", "judge", "model_id", "condition", "category", "n", "n_failed"]
    m = pd.DataFrame(rows, columns=[*cols, "n_unparsed"]).assign(metric="harm", value=1.0)
    t = _failures_table(_counts(m))
    assert t.rows[-1]["cells"][-2:] == ["5", "1"]
