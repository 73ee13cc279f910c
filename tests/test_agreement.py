"""Judge agreement (issue 20): Cohen's kappa against hand-computed tables, its bootstrap
interval, the seeded sample, failed and unparsed verdicts left out and counted, the
config block, the job and the report's section. Nothing here loads a model: the second
judge is a fake backend behind the real LLM judge loop and cache."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FakeBackend
from paths import ROOT
from test_report import _Tables, frames  # noqa: F401  (the report fixture)

from valueharms import plan, preflight
from valueharms.config import ConfigError, deep_merge, load_yaml, validate
from valueharms.io import read_table, write_table
from valueharms.job import Files, Job
from valueharms.judge import agreement as A
from valueharms.judge.agreement_plan import Scale, Settings, scale_of
from valueharms.judge.run import LLMJudge, judge_with_llm
from valueharms.judge.schema import JUDGMENTS_SCHEMA
from valueharms.llm.cache import LLMCache

HEXPHI = Scale("score", (1.0, 2.0, 3.0, 4.0, 5.0), "quadratic")
LABELS = Scale("label", ("a", "b", "c"), None)
SETTINGS = Settings(n=200, seed=0, confidence=0.95, n_resamples=199)


def hand_kappa(a: list, b: list, levels: tuple, quadratic: bool) -> Fraction:
    """Cohen's kappa from its definition, in exact fractions: 1 - observed weighted
    disagreement / disagreement expected from the two judges' own rates, with weights
    (i - j)^2 (quadratic) or [i != j] (unweighted) between levels i and j."""
    k, n = len(levels), len(a)
    index = {v: i for i, v in enumerate(levels)}
    table = [[0] * k for _ in range(k)]
    for x, y in zip(a, b, strict=True):
        table[index[x]][index[y]] += 1
    rows = [sum(table[i]) for i in range(k)]
    cols = [sum(table[i][j] for i in range(k)) for j in range(k)]

    def w(i: int, j: int) -> int:
        return (i - j) ** 2 if quadratic else int(i != j)

    cells = [(i, j) for i in range(k) for j in range(k)]
    observed = Fraction(sum(w(i, j) * table[i][j] for i, j in cells), n)
    expected = Fraction(sum(w(i, j) * rows[i] * cols[j] for i, j in cells), n * n)
    return 1 - observed / expected


# Ten items on three levels: 7 agree; by hand (rows first judge, columns second)
#   [[3, 1, 0], [0, 2, 1], [1, 0, 2]], row and column totals 4, 3, 3:
#   unweighted: p_o = 7/10, p_e = (16 + 9 + 9)/100 = 34/100, kappa = 36/66 = 6/11;
#   quadratic: observed 1 + 1 + 4 = 6 (/10), expected 13.8 (/10), kappa = 1 - 6/13.8 = 13/23.
FIRST = [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0]
SECOND = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 1.0]


def test_kappa_of_a_table_computed_by_hand() -> None:
    assert hand_kappa(FIRST, SECOND, HEXPHI.levels, quadratic=False) == Fraction(6, 11)
    assert hand_kappa(FIRST, SECOND, HEXPHI.levels, quadratic=True) == Fraction(13, 23)
    unweighted = Scale("score", HEXPHI.levels, None)
    assert A.kappa(FIRST, SECOND, unweighted, SETTINGS).value == pytest.approx(6 / 11)
    assert A.kappa(FIRST, SECOND, HEXPHI, SETTINGS).value == pytest.approx(13 / 23)
    # The same verdicts as categories give the unweighted value.
    as_labels = [dict(zip((1.0, 2.0, 3.0), "abc", strict=True))[x] for x in FIRST + SECOND]
    k = A.kappa(as_labels[:10], as_labels[10:], LABELS, SETTINGS)
    assert k.value == pytest.approx(6 / 11)


def test_weights_count_distance_on_the_whole_scale() -> None:
    """Levels a sample never uses still sit between their neighbours: a 2 against a 5 is
    three steps apart, not one (scikit-learn alone would index only the levels seen)."""
    rng = np.random.default_rng(3)
    a = rng.choice([1.0, 2.0, 5.0], size=40).tolist()
    b = [x if rng.random() < 0.6 else float(rng.choice([1.0, 2.0, 5.0])) for x in a]
    want = hand_kappa(a, b, HEXPHI.levels, quadratic=True)
    assert A.kappa(a, b, HEXPHI, SETTINGS).value == pytest.approx(float(want))


def test_perfect_agreement_is_one_and_complete_disagreement_minus_one() -> None:
    k = A.kappa([1.0, 2.0, 5.0, 5.0], [1.0, 2.0, 5.0, 5.0], HEXPHI, SETTINGS)
    assert k.value == 1.0 and (k.low, k.high) == (1.0, 1.0) and k.note is None
    flagged = Scale("score", (0.0, 1.0), None)
    k = A.kappa([0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0], flagged, SETTINGS)
    assert k.value == pytest.approx(-1.0)


def _moderate(n: int = 60, seed: int = 1) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 6, size=n).astype(float)
    b = np.where(rng.random(n) < 0.7, a, rng.integers(1, 6, size=n)).astype(float)
    return a.tolist(), b.tolist()


def test_the_interval_holds_the_estimate_and_is_seeded() -> None:
    a, b = _moderate()
    settings = Settings(200, 0, 0.95, 499)
    k = A.kappa(a, b, HEXPHI, settings)
    assert -1 <= k.low < k.value < k.high <= 1
    assert A.kappa(a, b, HEXPHI, settings) == k  # same seed, same interval
    other = A.kappa(a, b, HEXPHI, Settings(200, 7, 0.95, 499))
    assert other.value == k.value and (other.low, other.high) != (k.low, k.high)
    narrower = A.kappa(a, b, HEXPHI, Settings(200, 0, 0.5, 499))
    assert k.low < narrower.low < narrower.high < k.high


@pytest.mark.parametrize(
    ("first", "second", "note"),
    [
        ([], [], "0 pair(s): kappa needs at least 2"),
        ([3.0], [3.0], "1 pair(s): kappa needs at least 2"),
        ([1.0, 1.0, 1.0], [1.0, 2.0, 5.0], "first judge gave every pair the same verdict (1.0)"),
        ([1.0, 2.0, 5.0], [4.0, 4.0, 4.0], "second judge gave every pair the same verdict (4.0)"),
        ([2.0, 2.0], [2.0, 2.0], "first judge gave every pair the same verdict (2.0)"),
    ],
)
def test_degenerate_kappa_is_undefined_not_a_crash(first: list, second: list, note: str) -> None:
    k = A.kappa(first, second, HEXPHI, SETTINGS)
    assert math.isnan(k.value) and math.isnan(k.low) and math.isnan(k.high)
    assert k.note == note


def test_a_verdict_off_the_scale_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"\['2.5'\] are not on the scale"):
        A.kappa([1.0, 2.5], [1.0, 2.0], HEXPHI, SETTINGS)


def test_the_scales_come_from_the_benchmarks_verdicts() -> None:
    assert scale_of("hexphi") == HEXPHI
    assert scale_of("beavertails") == Scale("score", (0.0, 1.0), None)
    regard = scale_of("holisticbiasr")
    assert regard.column == "label" and regard.weights is None
    assert set(regard.levels) == {"negative", "neutral", "positive", "other"}
    with pytest.raises(ValueError, match="no LLM verdicts"):
        scale_of("rtp")


# ---------------------------------------------------------------- sample, pairs, counts


def generations(n: int = 30, failed: tuple[int, ...] = ()) -> pd.DataFrame:
    """A generations table of n HEx-PHI answers over two subjects (rows in `failed`
    failed); answer i reads "answer i"."""
    return pd.DataFrame(
        {
            "benchmark": "hexphi",
            "model_id": [f"m/{'vim/Ach' if i % 2 else 'vanilla'}" for i in range(n)],
            "condition": "plain",
            "prompt_id": [f"p{i:02d}" for i in range(n)],
            "sample": 0,
            "category": "malware",
            "axis": None,
            "descriptor": None,
            "prompt": [f"instruction {i}" for i in range(n)],
            "output": [f"answer {i}" for i in range(n)],
            "status": ["failed" if i in failed else "ok" for i in range(n)],
            "error": [("RuntimeError: oom" if i in failed else None) for i in range(n)],
            "model_revision": "r",
            "cached": False,
        }
    )


def first_judgments(
    gens: pd.DataFrame, verdict: dict[str, tuple[str, float | None]]
) -> pd.DataFrame:
    """The configured judge's judgments: `verdict[prompt_id]` = (status, score)."""
    out = gens[[c for c in JUDGMENTS_SCHEMA.names if c in gens.columns]].copy()
    status = [verdict[p][0] for p in gens["prompt_id"]]
    out = out.assign(
        text=gens["output"],
        judge="llm:first",
        status=status,
        score=[verdict[p][1] for p in gens["prompt_id"]],
        label=None,
        raw=None,
        error=[None if s == "ok" else "x" for s in status],
    )
    return out[JUDGMENTS_SCHEMA.names]


def test_the_sample_is_seeded_order_free_and_draws_only_what_succeeded() -> None:
    gens = generations(30, failed=(3, 4, 5))
    s = A.draw_sample(gens, 10, seed=0)
    assert len(s) == 10 and (s["status"] == "ok").all()
    assert not set(s["prompt_id"]) & {"p03", "p04", "p05"}
    shuffled = gens.sample(frac=1.0, random_state=5)
    assert A.draw_sample(shuffled, 10, seed=0)["prompt_id"].tolist() == s["prompt_id"].tolist()
    assert A.draw_sample(gens, 10, seed=0).equals(s)
    assert A.draw_sample(gens, 10, seed=1)["prompt_id"].tolist() != s["prompt_id"].tolist()
    everything = A.draw_sample(gens, 100, seed=0)  # fewer than n: all of them
    assert len(everything) == 27
    keys = everything[A.KEY]  # in the order of their identity
    assert keys.equals(keys.sort_values(A.KEY).reset_index(drop=True))
    with pytest.raises(ValueError, match="repeat an identity"):
        A.draw_sample(pd.concat([gens, gens.iloc[:1]]), 10, seed=0)


def key_of(gens: pd.DataFrame, prompt_id: str) -> str:
    """The second judge's request key of a generation: its row in the sample."""
    order = A.draw_sample(gens, SETTINGS.n, SETTINGS.seed)["prompt_id"].tolist()
    return str(order.index(prompt_id))


TEMPLATE = "Instruction: {instruction}\nReply: {response}\n#thescore:"


def fake_second(answers: dict[int, str], fail: set[str], tmp_path: Path):
    """A second judge on the real LLM judge loop and cache whose backend answers
    `answers[i]` for the generation 'answer i' and fails the requests keyed in `fail`
    (a request's key is its row's place in the sample: `key_of`)."""

    def answer(req) -> str:
        i = int(req.messages[0][1].split("Reply: answer ")[1].split("\n")[0])
        return answers[i]

    backend = FakeBackend(answer=answer)
    backend.fail = set(fail)
    cache = LLMCache(tmp_path / "cache")
    judge = LLMJudge(backend, cache, "llm:second", TEMPLATE, {"mode": "generate"})
    return backend, lambda sample: judge_with_llm(sample, "hexphi", judge)


def test_failed_and_unparsed_verdicts_are_left_out_and_counted(tmp_path: Path) -> None:
    gens = generations(12, failed=(11,))
    scores = [1, 1, 2, 5, 4, 1, 3, 5, 2, 1, 4]
    verdict = {f"p{i:02d}": ("ok", float(s)) for i, s in enumerate(scores)}
    verdict["p01"] = ("unparsed", None)
    verdict["p02"] = ("failed", None)
    verdict["p11"] = ("failed", None)  # its generation failed: never drawn
    first = first_judgments(gens, verdict)
    second_scores = [1, 2, 2, 5, 3, 1, 3, 4, 2, 2, 4]
    answers = {i: f"#thescore: {s}" for i, s in enumerate(second_scores)}
    answers[3] = "I cannot tell."  # unparsed
    failing = key_of(gens, "p07")
    backend, second = fake_second(answers, fail={failing}, tmp_path=tmp_path)
    c = A.Comparison("hexphi", "llm:first", "llm:second", HEXPHI, SETTINGS)
    table, pairs = A.compare(gens, first, second, c)
    row = table.iloc[0]
    assert row["n_sampled"] == 11 and len(pairs) == 11
    assert (row["first_failed"], row["first_unparsed"]) == (1, 1)
    assert (row["second_failed"], row["second_unparsed"]) == (1, 1)
    kept = [i for i in range(11) if i not in (1, 2, 3, 7)]
    assert row["n_pairs"] == len(kept) == 7
    a = [float(scores[i]) for i in kept]
    b = [float(second_scores[i]) for i in kept]
    assert row["kappa"] == pytest.approx(float(hand_kappa(a, b, HEXPHI.levels, True)))
    assert row["agreement"] == pytest.approx(np.mean(np.array(a) == np.array(b)))
    assert (
        row["ci_low"] <= row["kappa"] <= row["ci_high"] and row["weights"] == "quadratic-weighted"
    )
    write_table(tmp_path / "t.parquet", table, A.AGREEMENT_SCHEMA)
    write_table(tmp_path / "p.parquet", pairs, A.PAIRS_SCHEMA)
    # A rerun takes every answer from the cache and asks only the call that failed.
    backend2, second2 = fake_second(answers, fail=set(), tmp_path=tmp_path)
    table2, _ = A.compare(gens, first, second2, c)
    assert backend.n_requests == 11 and backend2.requested_keys() == [failing]
    assert table2.iloc[0]["second_failed"] == 0 and table2.iloc[0]["n_pairs"] == 8


def test_a_sampled_row_without_a_first_verdict_is_an_error(tmp_path: Path) -> None:
    gens = generations(6)
    verdict = {f"p{i:02d}": ("ok", 1.0) for i in range(6)}
    first = first_judgments(gens, verdict).iloc[1:]
    _, second = fake_second(dict.fromkeys(range(6), "#thescore: 1"), set(), tmp_path)
    c = A.Comparison("hexphi", "llm:first", "llm:second", HEXPHI, SETTINGS)
    with pytest.raises(ValueError, match="1 sampled generations have no verdict of the first"):
        A.compare(gens, first, second, c)


def test_the_job_reads_its_files_and_writes_both_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scripts/agreement.py's path with the backend faked; past the failure bound the job
    fails as a judge job does."""
    import valueharms.llm.backends as backends
    from valueharms.failures import FailureShareError
    from valueharms.generate import GENERATIONS_SCHEMA

    gens = generations(10)
    first = first_judgments(gens, {f"p{i:02d}": ("ok", float(1 + i % 5)) for i in range(10)})
    paths = {}
    for i, part in enumerate((slice(0, 5), slice(5, 10))):
        paths[f"g{i}"] = str(tmp_path / f"g{i}.parquet")
        paths[f"j{i}"] = str(tmp_path / f"j{i}.parquet")
        write_table(paths[f"g{i}"], gens.iloc[part].reset_index(drop=True), GENERATIONS_SCHEMA)
        write_table(paths[f"j{i}"], first.iloc[part].reset_index(drop=True), JUDGMENTS_SCHEMA)
    fake = FakeBackend(answer=lambda req: "#thescore: 3")
    monkeypatch.setattr(backends, "make_backend", lambda *a, **k: fake)
    second = {
        "kind": "llm",
        "settings": {"model": "m", "backend": "hf", "mode": "generate", "max_new_tokens": 8},
        "template": TEMPLATE,
        "name": "llm:second",
    }
    job = Job(
        input=Files.of(
            generations=[paths["g0"], paths["g1"]], judgments=[paths["j0"], paths["j1"]]
        ),
        output=Files.of(table=str(tmp_path / "a.parquet"), pairs=str(tmp_path / "p.parquet")),
        params={
            "first": "llm:first",
            "second": second,
            "judge_spec": {"source": "embedded"},
            "backend_settings": {},
            "scale": HEXPHI.params(),
            "sample": Settings(6, 0, 0.9, 99).params(),
            "max_failure_share": 0.2,
        },
        wildcards={"benchmark": "hexphi"},
        cache_dir=str(tmp_path / "cache"),
    )
    A.agreement_job(job)
    table = read_table(tmp_path / "a.parquet", A.AGREEMENT_SCHEMA)
    pairs = read_table(tmp_path / "p.parquet", A.PAIRS_SCHEMA)
    assert table.iloc[0]["n_sampled"] == 6 and len(pairs) == 6
    assert table.iloc[0]["note"] == "llm:second gave every pair the same verdict (3.0)"
    assert (table.iloc[0]["confidence"], table.iloc[0]["n_resamples"]) == (0.9, 99)
    fake.fail = {"0", "1"}  # 2 of 6 > 0.2 fail (a fresh cache, so they are asked)
    job2 = dataclasses.replace(job, cache_dir=str(tmp_path / "cache2"))
    with pytest.raises(FailureShareError, match="judges.max_failure_share"):
        A.agreement_job(job2)


# ---------------------------------------------------------------- config and plan


def demo_plan(extra: dict | None = None) -> plan.Plan:
    return plan.build(validate(deep_merge(load_yaml(ROOT / "config/demo.yaml"), extra or {})))


def test_defaults_leave_it_off() -> None:
    cfg = validate({})
    assert cfg["judges"]["agreement"] == {
        "enabled": False,
        "second": dict.fromkeys(("model", "backend", "mode", "max_new_tokens", "batch_size"))
        | {"templates": {}},
        "benchmarks": None,
        "n": 200,
        "seed": 0,
        "confidence": 0.95,
        "n_resamples": 9999,
    }


def test_the_demo_compares_two_local_judges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    p = demo_plan()
    assert set(p.agreement) == {"holisticbiasr", "hexphi", "beavertails"}
    hexphi = p.agreement["hexphi"]
    assert hexphi.first == "llm:smollm2-135m (choice)"
    assert hexphi.second.name == "llm:smollm2-135m (choice) [judge_hexphi_strict]"
    assert hexphi.template_key == "judges.agreement.second.templates.hexphi"
    assert hexphi.second.template != p.judges["hexphi"].template
    assert hexphi.scale == HEXPHI and p.agreement["beavertails"].scale.weights is None
    for spec in p.agreement.values():  # offline: both judges have local weights
        assert not plan.is_api(p.config, spec.second.model)
        assert not plan.is_api(p.config, p.judges[spec.benchmark].model)
    assert hexphi.settings.n <= 20
    assert preflight.problems(p, env={}) == []
    # Off: nothing compared; with Study A off, nothing either.
    assert demo_plan({"judges": {"agreement": {"enabled": False}}}).agreement == {}


def test_regard_under_a_classifier_is_compared_only_when_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    classifier = {"judges": {"regard": {"kind": "hf_classifier", "path": "nowhere"}}}
    assert set(demo_plan(classifier).agreement) == {"hexphi", "beavertails"}
    listed = deep_merge(classifier, {"judges": {"agreement": {"benchmarks": ["holisticbiasr"]}}})
    spec = demo_plan(listed).agreement["holisticbiasr"]
    assert spec.first == "hf:nowhere" and spec.scale.column == "label"


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"judges": {"agreement": {"secnd": {}}}}, "judges.agreement.secnd"),
        ({"judges": {"agreement": {"second": {"modle": "x"}}}}, "judges.agreement.second.modle"),
        ({"judges": {"agreement": {"n": 0}}}, "judges.agreement.n"),
        ({"judges": {"agreement": {"confidence": 1.0}}}, "judges.agreement.confidence"),
        ({"judges": {"agreement": {"second": {"model": "gpt"}}}}, "judges.agreement.second.model"),
        ({"judges": {"agreement": {"benchmarks": ["rtp"]}}}, "judges.agreement.benchmarks[0]"),
        (
            {"judges": {"agreement": {"benchmarks": ["hexphi", "pvq"]}}},
            "judges.agreement.benchmarks[1]",
        ),
        (
            {"judges": {"agreement": {"second": {"templates": {"hexpi": "x.txt"}}}}},
            "judges.agreement.second.templates.hexpi",
        ),
        (
            {"judges": {"agreement": {"second": {"templates": {"hexphi": "nowhere.txt"}}}}},
            "judges.agreement.second.templates.hexphi",
        ),
        (
            {
                "models": {"gpt": {"source": "api"}},
                "judges": {"agreement": {"second": {"model": "gpt", "mode": "choice"}}},
            },
            "judges.agreement.second.mode",
        ),
    ],
)
def test_a_bad_setting_names_its_key(
    extra: dict, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    with pytest.raises(ConfigError) as err:
        demo_plan(extra)
    assert f"config key '{key}'" in str(err.value)


def test_the_configured_judge_as_its_own_second_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    same = {"judges": {"agreement": {"second": {"templates": {}}}}}
    cfg = deep_merge(load_yaml(ROOT / "config/demo.yaml"), same)
    cfg["judges"]["agreement"]["second"]["templates"] = {}
    # By default such benchmarks are left out (nothing to compare); listed, an error.
    assert plan.build(validate(cfg)).agreement == {}
    cfg["judges"]["agreement"]["benchmarks"] = ["hexphi"]
    with pytest.raises(
        ConfigError, match=r"'judges.agreement.second': on hexphi it is the configured"
    ):
        plan.build(validate(cfg))
    cfg["judges"]["agreement"]["second"]["mode"] = "generate"  # another mode: accepted
    assert plan.build(validate(cfg)).agreement["hexphi"].second.name == "llm:smollm2-135m"


def test_an_api_second_judge_without_its_key_is_named_by_the_preflight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    api = {
        "models": {"gpt-judge": {"source": "api", "api_key_env": "VH_TEST_UNSET_KEY"}},
        "judges": {"agreement": {"second": {"model": "gpt-judge", "mode": "generate"}}},
    }
    p = demo_plan(api)
    assert p.agreement["hexphi"].second.name == "llm:gpt-judge [judge_hexphi_strict]"
    assert preflight.problems(p, env={}) == [
        "judges.agreement.second.model: gpt-judge (models.gpt-judge.api_key_env): environment "
        "variable VH_TEST_UNSET_KEY is not set"
    ]
    assert preflight.problems(p, env={}, rules={"judge"}) == []


# ---------------------------------------------------------------- the report


def agreement_rows() -> pd.DataFrame:
    row = {
        "benchmark": "hexphi",
        "first_judge": "llm:gpt-4o",
        "second_judge": "llm:smollm2-135m (choice)",
        "weights": "quadratic-weighted",
        "n_sampled": 200,
        "n_pairs": 190,
        "first_failed": 4,
        "first_unparsed": 1,
        "second_failed": 0,
        "second_unparsed": 6,
        "kappa": 0.61234,
        "ci_low": 0.5,
        "ci_high": 0.7,
        "confidence": 0.95,
        "agreement": 0.75,
        "seed": 0,
        "n_resamples": 9999,
        "note": None,
    }
    undefined = row | {
        "benchmark": "holisticbiasr",
        "weights": "unweighted",
        "kappa": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "note": "llm:gpt-4o gave every pair the same verdict (positive)",
    }
    return pd.DataFrame([row, undefined], columns=A.AGREEMENT_SCHEMA.names)


def _report(frames: dict, tmp_path: Path, table: pd.DataFrame | None) -> tuple[str, _Tables]:  # noqa: F811
    from valueharms.report.render import StudyAData, build_report

    a = {k: v for k, v in frames.items() if k != "provenance"}
    out = tmp_path / "index.html"
    build_report(frames["provenance"], str(out), study_a=StudyAData(**a, agreement=table))
    html = out.read_text(encoding="utf-8")
    parser = _Tables()
    parser.feed(html)
    return html, parser


def test_the_report_shows_kappa_its_interval_and_what_was_left_out(
    frames: dict,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "agreement.parquet"  # as the report step reads it: None comes back NaN
    write_table(path, agreement_rows(), A.AGREEMENT_SCHEMA)
    html, p = _report(frames, tmp_path, read_table(path, A.AGREEMENT_SCHEMA))
    assert ">Judge agreement</h2>" in html and "agreement beyond chance" in html
    head, regard, hexphi = p.tables["agreement"]  # in the report's benchmark order
    assert head[:8] == [
        "Benchmark", "First judge", "Second judge", "Sampled", "Pairs", "κ", "Weights",
        "95% CI",
    ]  # fmt: skip
    assert hexphi[:9] == [
        "HEx-PHI", "llm:gpt-4o", "llm:smollm2-135m (choice)", "200", "190", "0.612",
        "quadratic-weighted", "[0.500, 0.700]", "75.0%",
    ]  # fmt: skip
    assert hexphi[9:] == ["4 / 1", "0 / 6", ""]
    assert regard[5:8] == ["undefined", "unweighted", "–"]
    assert regard[-1] == "llm:gpt-4o gave every pair the same verdict (positive)"


def test_the_report_says_how_to_turn_it_on(frames: dict, tmp_path: Path) -> None:  # noqa: F811
    html, p = _report(frames, tmp_path, None)
    assert ">Judge agreement</h2>" in html and "agreement" not in p.tables
    assert "judges.agreement.enabled: true" in html


def test_the_report_step_reads_the_tables_when_it_is_on(tmp_path: Path) -> None:
    from valueharms.analysis import ReportInputs, _agreement

    path = tmp_path / "hexphi.parquet"
    write_table(path, agreement_rows().iloc[:1], A.AGREEMENT_SCHEMA)
    on = {"judges": {"agreement": {"enabled": True}}}
    assert _agreement(ReportInputs(agreement=[str(path)]), on)["kappa"].tolist() == [0.61234]
    assert _agreement(ReportInputs(agreement=[]), on).empty
    assert _agreement(ReportInputs(agreement=[str(path)]), {}) is None
