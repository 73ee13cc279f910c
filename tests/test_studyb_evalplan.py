"""Study B's evaluation plan (valueharms.studyb.plan.eval_subjects, METHODS B2-B3): which
subjects generate on which benchmark, under which setting, chat-template rule and system
prompt; the lm-eval runs; and the parse-time errors."""

from __future__ import annotations

from collections import Counter

import pytest
from test_studyb_workflow import fixture_datasets

from valueharms import plan as vplan
from valueharms.config import ConfigError, validate
from valueharms.studyb import plan as sbplan


def config(**studyb: object) -> dict:
    """Two trained models (a base one without chat flag, an instruct one), two values, two
    betas; any studyb keys over that."""
    cfg = {
        "models": {
            "smollm2-135m": {"source": "embedded", "chat": True},
            "base-lm": {"source": "path", "path": None, "chat": False},
        },
        "datasets": fixture_datasets(),
        "studyb": {
            "enabled": True,
            "models": ["base-lm", "smollm2-135m"],
            "values": ["empathy", "open-mindedness"],
            "train": {"betas": [0.01, 0.1]},
            **studyb,
        },
    }
    return validate(cfg)


def by(subjects, *keys):
    return Counter(tuple(getattr(s, k) for k in keys) for s in subjects)


def test_settings_per_benchmark_and_the_beta_sweep() -> None:
    subj = sbplan.eval_subjects(config())
    counts = by(subj, "benchmark", "setting")
    # per model and value: IssueBench none, prompt, train at 0.1, both at 0.01 and 0.1
    assert counts[("issuebench", "none")] == 2 * 2
    assert counts[("issuebench", "prompt")] == 2 * 2
    assert counts[("issuebench", "train")] == 2 * 2
    assert counts[("issuebench", "both")] == 2 * 2 * 2
    # AdvBench and AnthroBench: vanilla and both at the main beta (Figures 3-5)
    for b in ("advbench", "anthrobench"):
        assert counts[(b, "none")] == 4 and counts[(b, "both")] == 4
        assert not counts[(b, "prompt")] and not counts[(b, "train")]
    both = {s.beta for s in subj if s.setting == "both" and s.benchmark == "issuebench"}
    assert both == {0.01, 0.1}
    assert {s.beta for s in subj if s.setting == "both" and s.benchmark == "advbench"} == {0.1}


def test_subject_ids_conditions_and_the_chat_template_rule() -> None:
    subj = {
        (s.benchmark, s.model, s.setting, s.value, s.beta): s
        for s in sbplan.eval_subjects(config())
    }
    none = subj[("issuebench", "base-lm", "none", "empathy", None)]
    assert (none.model_id, none.condition, none.prompted) == ("base-lm/vanilla", "plain", False)
    prompt = subj[("issuebench", "base-lm", "prompt", "open-mindedness", None)]
    assert (prompt.model_id, prompt.condition) == ("base-lm/vanilla", "prompt-open-mindedness")
    # App. A: the chat template for all but base models in the prompt-only setting
    assert prompt.chat_template is False and prompt.prompted
    assert subj[("issuebench", "smollm2-135m", "prompt", "empathy", None)].chat_template
    train = subj[("issuebench", "base-lm", "train", "empathy", 0.1)]
    assert (train.model_id, train.condition) == ("base-lm/dpo-b0.1/empathy", "plain")
    assert train.chat_template and not train.prompted
    both = subj[("issuebench", "base-lm", "both", "empathy", 0.01)]
    assert (both.model_id, both.condition) == ("base-lm/dpo-b0.01/empathy", "prompt-empathy")
    assert both.chat_template and both.prompted
    assert vplan.adapter_dir(both.model_id) == "results/models/base-lm/dpo-b0.01/empathy/adapter"
    assert {s.kind for s in subj.values() if s.model == "base-lm"} == {"base"}
    assert {s.kind for s in subj.values() if s.model == "smollm2-135m"} == {"post-trained"}


def test_items_share_the_vanilla_responses_and_group_by_method_beta() -> None:
    subj = sbplan.eval_subjects(config())
    items = sbplan.eval_items(subj)
    assert len(items) == len(set(items))
    issue = [i for i in items if i.benchmark == "issuebench" and i.base == "base-lm"]
    # none once (shared by both values), prompt x2, train x2 at 0.1, both x2 per beta
    assert Counter(i.family for i in issue) == {"vanilla": 3, "dpo-b0.1": 4, "dpo-b0.01": 2}
    groups = vplan.group_items(items, per_job=16)["issuebench"]
    assert set(groups) == {
        f"{m}/{f}-1"
        for m in ("base-lm", "smollm2-135m")
        for f in ("vanilla", "dpo-b0.1", "dpo-b0.01")
    }


def test_orpo_and_temperature_runs_for_the_robustness_tables() -> None:
    cfg = config(
        train={"betas": [0.01, 0.1], "orpo_models": ["smollm2-135m"]},
        eval={"temperatures": [0.1, 0.9]},
    )
    subj = sbplan.eval_subjects(cfg)
    orpo = [s for s in subj if s.method == "orpo"]
    assert {(s.benchmark, s.setting, s.model_id) for s in orpo} == {
        ("issuebench", "train", "smollm2-135m/orpo-b0.1/empathy"),
        ("issuebench", "train", "smollm2-135m/orpo-b0.1/open-mindedness"),
    }
    temps = [s for s in subj if s.temperature != 0.7]
    # the robustness model is the ORPO model; its DPO adapters at main beta, train setting
    assert {(s.temperature, s.condition) for s in temps} == {
        (0.1, "plain+t0.1"),
        (0.9, "plain+t0.9"),
    }
    assert {s.model_id for s in temps} == {
        "smollm2-135m/dpo-b0.1/empathy", "smollm2-135m/dpo-b0.1/open-mindedness"
    }  # fmt: skip
    assert all(s.benchmark == "issuebench" and s.setting == "train" for s in temps)


def test_qa_runs_and_the_plan() -> None:
    cfg = config()
    qa = sbplan.qa_subjects(cfg)
    assert [q["model_id"] for q in qa] == [
        "base-lm/vanilla", "base-lm/dpo-b0.1/empathy", "base-lm/dpo-b0.1/open-mindedness",
        "smollm2-135m/vanilla", "smollm2-135m/dpo-b0.1/empathy",
        "smollm2-135m/dpo-b0.1/open-mindedness",
    ]  # fmt: skip
    assert sbplan.qa_subjects(config(qa={"enabled": False})) == []
    p = sbplan.build(cfg, "results/data/raw")
    assert p.eval_benchmarks == ["issuebench", "advbench", "anthrobench"]
    assert set(p.data) >= {"issuebench", "advbench", "anthrobench"}
    assert p.judge_model == "smollm2-135m"
    only = sbplan.build(config(eval={"benchmarks": ["advbench"]}), "results/data/raw")
    assert only.eval_benchmarks == ["advbench"] and "issuebench" not in only.data


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"eval": {"main_beta": 0.3}}, "studyb.eval.main_beta"),
        ({"eval": {"robustness_model": "gpt-5"}}, "studyb.eval.robustness_model"),
        ({"judge": {"model": "gpt-5"}}, "studyb.judge.model"),
    ],
)
def test_bad_eval_keys_name_the_key(over: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        sbplan.build(config(**over), "results/data/raw")


def test_choice_mode_needs_local_weights() -> None:
    cfg = config(judge={"model": "api-judge", "mode": "choice"})
    cfg["models"]["api-judge"] = {"source": "api", "name": "j", "chat": True}
    with pytest.raises(ConfigError, match=r"studyb\.judge\.mode"):
        sbplan.build(cfg, "results/data/raw")


def test_missing_evaluation_files_say_where_to_get_them() -> None:
    from valueharms.data.sources import DataError, download, source

    for name, key in [
        ("issuebench", "datasets.issuebench.path"),
        ("anthrobench", "datasets.anthrobench.path"),
    ]:
        cfg = config()
        cfg["datasets"][name] = {"path": f"nowhere/{name}.csv"}
        with pytest.raises(DataError, match=key.replace(".", r"\.")):
            sbplan.build(cfg, "results/data/raw")
        # Not set at all: planning goes on (issue 17); its fetch job fails saying how to
        # get the file, and the preflight names it.
        cfg["datasets"].pop(name)
        path, needs = sbplan.build(cfg, "results/data/raw").data[name]
        assert needs and path.startswith("results/data/raw")
        with pytest.raises(DataError, match=rf"datasets\.{name}\.path") as err:
            download(source(name), path)
        assert "github.com/paul-rottger/issuebench" in str(err.value) or name == "anthrobench"
    cfg = config()
    cfg["datasets"]["issuebench"]["templates_path"] = "nowhere/templates.csv"
    with pytest.raises(DataError, match=r"datasets\.issuebench\.templates_path"):
        sbplan.build(cfg, "results/data/raw")
