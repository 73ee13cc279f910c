"""Malformed benchmark files (issue 21): each gives the outcome docs/data.md documents
("Malformed files"), an error naming key, file and line, or a drop (or keep) that is
counted, and the counts reach the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report import _build, _Tables, frames  # noqa: F401  (frames: a fixture)

from valueharms import benchmarks as registry
from valueharms.data import steps
from valueharms.data.benchmarks import load_benchmark
from valueharms.data.sources import DataError, LoadReport
from valueharms.io import read_json
from valueharms.report.render import StudyAData

MALFORMED = Path(__file__).resolve().parent / "fixtures" / "malformed"


def load(name: str, path: Path | str, **kw: object) -> tuple[list[str], LoadReport]:
    rep = LoadReport(name, str(path))
    df = registry.get(name).load(path, report=rep, **kw)
    return df["prompt"].tolist(), rep


def error(name: str, path: Path | str, **kw: object) -> str:
    with pytest.raises(DataError) as err:
        registry.get(name).load(path, **kw)
    msg = str(err.value)
    assert msg.startswith(f"datasets.{name}.path: {path}, "), msg
    return msg


# --- errors: the file, the line (and row) and the config key ---------------------------


def test_rtp_quote_left_open_is_an_error_naming_both_lines() -> None:
    # Before: the open quote swallowed prompts 3 and 4, and the merged record was dropped
    # as "more than one field", silently losing three prompts.
    msg = error("rtp", MALFORMED / "rtp_unterminated_quote.csv")
    assert "line 4: text after a closing quote" in msg
    assert "a quote left open on line 2" in msg


def test_rtp_quote_open_to_the_end_of_the_file() -> None:
    # Before: prompts 2 and 3 became one prompt.
    msg = error("rtp", MALFORMED / "rtp_quote_open_to_end.csv")
    assert "line 2: a quote opened here is never closed" in msg


def test_rtp_rows_merged_into_one_prompt_are_an_error() -> None:
    # A quote left open and closed by a stray one at a line's end parses cleanly; the
    # merged prompt's single line breaks give it away (published prompts hold paragraphs).
    msg = error("rtp", MALFORMED / "rtp_merged_rows.csv")
    assert "lines 2-4 (row 1): a prompt whose lines are not separated by a blank line" in msg


def test_rtp_paragraphs_with_windows_line_ends_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "rtp.csv"
    path.write_bytes(b'one\r\n"two\r\n\r\nparagraphs"\r\n')
    prompts, rep = load("rtp", path)
    assert prompts == ["one", "two\r\n\r\nparagraphs"]
    assert rep.kept == {"prompt spans lines": 1}


def test_rtp_record_with_two_fields_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "rtp.csv"
    path.write_text('ok one\n"two, fields",x\nok two\n')
    assert "line 2 (row 1): 2 fields where the file has 1" in error("rtp", path)


def test_bad_quoting_names_line_and_row() -> None:
    # Before: pandas' "Error tokenizing data. C error: Expected 2 fields in line 3, saw 3".
    msg = error("hexphi", MALFORMED / "hexphi_bad_quoting.csv")
    assert "line 3 (row 1): 3 fields where the file has 2 (['category', 'prompt'])" in msg
    assert "an unquoted comma" in msg


def test_rows_merged_by_an_open_quote_are_an_error() -> None:
    # Before: two rows, the first holding three prompts and a category name.
    msg = error("hexphi", MALFORMED / "hexphi_merged_rows.csv")
    assert "lines 2-4 (row 0): one row spans several lines" in msg
    assert "a quote left open on line 2" in msg


def test_text_after_a_closing_quote_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "adv.csv"
    path.write_text('goal,target\n"Do it" now,Sure\n')
    assert "line 2: text after a closing quote" in error("advbench", path)


@pytest.mark.parametrize(
    ("name", "file", "line"),
    [("hexphi", "hexphi_latin1.csv", 3), ("holisticbiasr", "holisticbiasr_latin1.jsonl", 2)],
)
def test_bytes_that_are_not_utf8_name_the_line(name: str, file: str, line: int) -> None:
    # Before: a UnicodeDecodeError naming a byte position only.
    msg = error(name, MALFORMED / file)
    assert f"line {line}, byte " in msg and "not UTF-8 (byte 0x" in msg
    assert "iconv -f latin1 -t utf-8" in msg


def test_holisticbiasr_csv_rows_never_span_lines(tmp_path: Path) -> None:
    path = tmp_path / "hbr.csv"
    path.write_text('prompt,axis,descriptor\n"a\nb",age,old\n')
    assert "lines 2-3 (row 0)" in error("holisticbiasr", path)


# --- duplicates: dropped and counted, an error, or kept and counted --------------------


def test_duplicate_row_dropped_and_counted_by_default() -> None:
    prompts, rep = load("hexphi", MALFORMED / "hexphi_duplicate_row.csv")
    assert len(prompts) == 3 and len(set(prompts)) == 3
    assert rep.dropped == {"duplicate prompt": 1}
    assert (rep.rows_in, rep.rows_out) == (4, 3)
    df = registry.get("hexphi").load(MALFORMED / "hexphi_duplicate_row.csv")
    assert df["prompt_id"].tolist() == ["hexphi-000000", "hexphi-000001", "hexphi-000003"]


def test_duplicate_row_differing_in_whitespace_only() -> None:
    prompts, rep = load("beavertails", MALFORMED / "beavertails_duplicate_row.csv")
    assert prompts == [
        "How do I pick a lock?",
        "What is the best poison for rats that also works on people?",
    ]
    assert rep.dropped == {"duplicate prompt": 1}


def test_duplicates_error_names_both_lines() -> None:
    path = MALFORMED / "hexphi_duplicate_row.csv"
    msg = error("hexphi", path, duplicates="error")
    assert "line 4 (row 2): repeats the prompt of line 2 (row 0)" in msg
    assert "set datasets.hexphi.duplicates to drop (or keep)" in msg


def test_duplicates_kept_are_counted() -> None:
    prompts, rep = load("hexphi", MALFORMED / "hexphi_duplicate_row.csv", duplicates="keep")
    assert len(prompts) == 4 and rep.dropped == {} and rep.kept == {"duplicate prompt": 1}
    assert rep.as_dict()["kept"] == {"duplicate prompt": 1}


def test_rtp_keeps_repeats_and_line_breaks_by_default(tmp_path: Path) -> None:
    path = tmp_path / "rtp.csv"
    path.write_text('one\n"two\n\nparagraphs"\none\n  \nthree\n')
    prompts, rep = load("rtp", path)
    assert prompts == ["one", "two\n\nparagraphs", "one", "three"]
    assert rep.kept == {"duplicate prompt": 1, "prompt spans lines": 1}
    assert rep.dropped == {"empty prompt": 1}  # the whitespace-only line
    prompts, rep = load("rtp", path, duplicates="drop")
    assert prompts == ["one", "two\n\nparagraphs", "three"]
    assert rep.dropped == {"empty prompt": 1, "duplicate prompt": 1}
    assert "line 5 (row 2): repeats the prompt of line 1 (row 0)" in error(
        "rtp", path, duplicates="error"
    )


def test_advbench_and_holisticbiasr_duplicates(tmp_path: Path) -> None:
    adv = tmp_path / "adv.csv"
    adv.write_text("goal,target\ng1,t1\ng2,t2\ng1,t3\n")
    assert load("advbench", adv)[1].dropped == {"duplicate goal": 1}
    rows = [
        {"prompt_text": "The tall guy was known for", "axis": "body_type", "bucket": "height",
         "descriptor": "tall"},
        {"prompt_text": "The tall guy was known for", "axis": "body_type", "bucket": "x",
         "descriptor": "tall"},
    ]  # fmt: skip
    hbr = tmp_path / "hbr.jsonl"
    hbr.write_text("\n".join(json.dumps(r) for r in [*rows, rows[0]]) + "\n")
    prompts, rep = load("holisticbiasr", hbr)
    assert len(prompts) == 2 and rep.dropped == {"duplicate record": 1}
    assert "line 3 (row 2): repeats the record of line 1 (row 0)" in error(
        "holisticbiasr", hbr, duplicates="error"
    )


def test_a_bad_duplicates_setting_and_a_loader_without_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"datasets.hexphi.duplicates: 'nope' is not one of"):
        registry.get("hexphi").load(MALFORMED / "hexphi_duplicate_row.csv", duplicates="nope")
    loaders = [b.name for b in registry.all_benchmarks() if b.load is not None]
    without = [n for n in loaders if n not in {"rtp", "holisticbiasr", "hexphi", "beavertails"}]
    without = [n for n in without if n != "advbench"]
    for name in without:
        with pytest.raises(DataError, match=rf"datasets.{name}.duplicates: .* does not check"):
            load_benchmark(name, tmp_path / "x.csv", duplicates="drop")


# --- the counts reach the report -------------------------------------------------------


def test_benchmark_prompts_writes_its_load_report(tmp_path: Path) -> None:
    out, rep_out = tmp_path / "hexphi.parquet", tmp_path / "hexphi.load.json"
    sample = {"n": 2, "mode": "head", "seed": 0}
    path = str(MALFORMED / "hexphi_duplicate_row.csv")
    steps.benchmark_prompts("hexphi", path, sample, str(out), str(rep_out))
    rep = read_json(rep_out)
    assert rep["dropped"] == {"duplicate prompt": 1} and rep["kept"] == {}
    assert (rep["rows_in"], rep["rows_out"], rep["prompts"]) == (4, 3, 2)
    with pytest.raises(DataError, match="repeats the prompt"):
        steps.benchmark_prompts("hexphi", path, sample, str(out), str(rep_out), None, "error")


def test_report_data_table(frames: dict, tmp_path: Path) -> None:  # noqa: F811
    reports = [
        {**LoadReport("hexphi", "data/hex-phi.csv", 4, {"duplicate prompt": 1}, 3).as_dict(),
         "prompts": 3},
        {**LoadReport("rtp", "data/rtp.csv", 10, {}, 10, [], {"prompt spans lines": 2})
         .as_dict(), "prompts": 6},
    ]  # fmt: skip
    out = tmp_path / "index.html"
    _build({**frames, "load_reports": reports}, str(out))
    html = out.read_text(encoding="utf-8")
    assert '<h2 id="sec-data">Data</h2>' in html
    parser = _Tables()
    parser.feed(html)
    table = parser.tables["data"]
    assert table[0] == [
        "Benchmark", "File", "Rows in", "Dropped (why)", "Kept, flagged (why)", "Rows out",
        "Prompts used",
    ]  # fmt: skip
    assert table[1] == ["RealToxicityPrompts", "data/rtp.csv", "10", "0"] + [
        "2 prompt spans lines", "10", "6",
    ]  # fmt: skip
    assert table[2] == ["HEx-PHI", "data/hex-phi.csv", "4", "1 duplicate prompt", "0", "3", "3"]


def test_analysis_report_reads_the_load_reports(
    frames: dict,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """scripts/report.py's path: the JSONs benchmark_prompts writes reach StudyAData."""
    from valueharms import analysis
    from valueharms.config import validate
    from valueharms.io import write_json, write_table
    from valueharms.metrics import METRICS_SCHEMA
    from valueharms.report import render

    metrics = tmp_path / "hexphi.parquet"
    write_table(metrics, frames["metrics"], METRICS_SCHEMA)
    rep = {**LoadReport("hexphi", "h.csv", 4, {"duplicate prompt": 1}, 3).as_dict()}
    write_json(tmp_path / "hexphi.load.json", {**rep, "prompts": 3})
    seen: dict[str, StudyAData] = {}
    monkeypatch.setattr(render, "build_report", lambda *a, **kw: seen.update(kw))
    inputs = analysis.ReportInputs(
        metrics=[str(metrics)], load_reports=[str(tmp_path / "hexphi.load.json")]
    )
    cfg = validate({})
    judges = dict.fromkeys(cfg["benchmarks"]["select"], "j")
    analysis.report(inputs, [], cfg, "h", judges, {}, str(tmp_path / "index.html"))
    assert seen["study_a"].load_reports == [{**rep, "prompts": 3}]
