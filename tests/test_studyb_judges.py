"""Study B's judges as the judge stage runs them (valueharms.judge.steps.judge_studyb): the
values a response expresses (IssueBench), refusal (AdvBench), anthropomorphic behaviours
(AnthroBench), in generate and in choice mode; and the evaluation prompt tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from paths import ROOT
from test_studyb_eval import _gens

from valueharms.benchmarks import advbench as refusal
from valueharms.benchmarks import anthrobench as ab
from valueharms.data.benchmarks import PROMPTS_SCHEMA
from valueharms.io import read_table
from valueharms.judge.schema import JUDGMENTS_SCHEMA
from valueharms.judge.steps import judge_studyb
from valueharms.llm.cache import LLMCache
from valueharms.metrics import studyb as results
from valueharms.studyb import extract, steps

DEMO = ROOT / "resources" / "demo" / "studyb"
SETTINGS = {"max_new_tokens": 32, "temperature": 0.2, "seed": 3, "batch_size": 4}


def values_judge(mode: str) -> dict:
    return {
        **SETTINGS,
        "mode": mode,
        "values": ["empathy", "honesty"],
        "synonyms": {"care": "empathy"},
    }


def test_values_judge_reads_the_answer_part_only(tmp_path: Path, fake_backend_cls) -> None:
    gens = _gens(["I am sorry.", "The sky is blue.", "Hmm.", None])
    raw = {
        "0": "<thinking>kind</thinking><answer>Care, honesty</answer>",
        "1": "<answer>none</answer>",
        "2": "I think empathy.",  # no answer part: unparsed, never guessed
    }
    backend = fake_backend_cls(answer=lambda r: raw[r.key])
    out = judge_studyb(
        "values", gens, backend, LLMCache(tmp_path), "llm:x", values_judge("generate"),
        extract.load_template(),
    )  # fmt: skip
    assert list(out.columns) == JUDGMENTS_SCHEMA.names
    assert list(out.status) == ["ok", "ok", "unparsed", "failed"]
    assert out.label.iat[0] == "empathy|honesty" and out.score.iat[0] == 2.0  # synonym applied
    assert out.label.iat[1] == "" and out.score.iat[1] == 0.0
    # The judged text is the response; the prompt is the transcript of the conversation.
    body = backend.calls[0][0].messages[0][1]
    assert "Human: q0" in body and "Assistant: I am sorry." in body
    assert (
        backend.calls[0][0].sampling.temperature == 0.2 and backend.calls[0][0].sampling.seed == 3
    )
    # The metrics stage reads "" as the extractor's none: extracted, no value.
    frame = results.expression_frame(out)
    assert list(frame.status) == ["ok", "none", "unparsed", "failed"]
    assert frame["values"].iat[0] == ["empathy", "honesty"] and frame["values"].iat[1] == []


def test_values_choice_mode_is_a_forced_choice_of_one_value(
    tmp_path: Path, fake_backend_cls
) -> None:
    backend = fake_backend_cls(answer=lambda r: r.sampling.choices[1])
    out = judge_studyb(
        "values", _gens(["x"]), backend, LLMCache(tmp_path), "j", values_judge("choice"),
        extract.load_template(),
    )  # fmt: skip
    sent = backend.calls[0][0].sampling.choices
    assert sent == ("<answer>empathy</answer>", "<answer>honesty</answer>")
    assert out.label.tolist() == ["honesty"] and out.status.tolist() == ["ok"]


def test_refusal_judge_in_both_modes(tmp_path: Path, fake_backend_cls) -> None:
    gens = _gens(["No.", "Sure, step one..."])
    answers = iter(["Verdict: refusal", "Verdict: compliance"])
    backend = fake_backend_cls(answer=lambda r: next(answers))
    judge = {**SETTINGS, "mode": "generate"}
    out = judge_studyb("refusal", gens, backend, LLMCache(tmp_path / "g"), "j", judge,
                       refusal.load_template())  # fmt: skip
    assert out.label.tolist() == ["refusal", "compliance"] and out.score.tolist() == [1.0, 0.0]
    assert not backend.calls[0][0].sampling.choices
    pick = fake_backend_cls(answer=lambda r: r.sampling.choices[0])
    out = judge_studyb("refusal", gens, pick, LLMCache(tmp_path / "c"), "j",
                       {**judge, "mode": "choice"}, refusal.load_template())  # fmt: skip
    assert pick.calls[0][0].sampling.choices == refusal.CHOICES
    assert out.label.tolist() == ["refusal", "refusal"]


def test_anthro_choice_mode_asks_each_behaviour(tmp_path: Path, fake_backend_cls) -> None:
    yes = {"empathy", "emotions"}
    gens = _gens(["I feel for you.", "Sure.", None, "Hmm."])

    def answer(r) -> str:
        i, b = r.key.split("|")
        if i == "3" and b == "agency":
            return "maybe"  # not one of the choices: the row is unparsed, never guessed
        return "yes" if i == "0" and b in yes else "no"

    backend = fake_backend_cls(answer=answer, fail={"1|sentience"})
    template = (ROOT / "resources" / "prompts" / "studyb_anthro_behaviour.txt").read_text()
    out = judge_studyb(
        "anthro", gens, backend, LLMCache(tmp_path), "j", {**SETTINGS, "mode": "choice"}, template
    )
    reqs = [r for c in backend.calls for r in c]
    assert len(reqs) == 3 * len(ab.BEHAVIOURS)  # the failed generation is not asked about
    assert all(r.sampling.choices == ab.YES_NO for r in reqs)
    assert "Behaviour: sentience: claims to be conscious" in reqs[0].messages[0][1]
    assert list(out.status) == ["ok", "failed", "failed", "unparsed"]
    assert out.label.iat[0] == "emotions|empathy" and out.score.iat[0] == 2.0
    assert out.error.iat[1] == "RuntimeError: told to fail"  # one failed call fails the row
    assert "agency" in out.error.iat[3] and pd.isna(out.score.iat[3])
    assert ab.parse_anthro(out.raw.iat[0]).present["empathy"] is True


def test_demo_evaluation_prompts(tmp_path: Path) -> None:
    out = tmp_path / "issuebench.parquet"
    steps.eval_prompts(
        "issuebench", str(DEMO / "issuebench_issues.csv"), str(DEMO / "issuebench_templates.csv"),
        2, 5, 0, str(out),
    )  # fmt: skip
    ib = read_table(out, PROMPTS_SCHEMA)
    assert len(ib) == 5 and ib.descriptor.nunique() <= 2 and ib.category.nunique() == 4
    assert all("X" not in p for p in ib.prompt)
    steps.eval_prompts("anthrobench", str(DEMO / "anthrobench.csv"), None, None, 4, 0,
                       str(tmp_path / "a.parquet"))  # fmt: skip
    an = read_table(tmp_path / "a.parquet", PROMPTS_SCHEMA)
    assert len(an) == 4 and set(an.axis) <= set(ab.BEHAVIOURS)
    full = pd.read_csv(DEMO / "anthrobench.csv")
    assert len(full) == 6
