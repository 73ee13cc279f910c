"""Study B's workflow: the plan of config/study_b.yaml (8 models x 15 values x 4 betas of
DPO, plus ORPO on one model), the demo untouched, and the steps glued end to end on the
fixtures with a fake LLM.

Snakemake runs in a private copy of the workflow files, so results/ is never touched.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from paths import ROOT
from test_workflow import job_counts, planned_outputs, workflow_copy
from test_workflow import smk as run_snakemake

from valueharms import plan as vplan
from valueharms.config import ConfigError, deep_merge, load_schema, load_yaml, validate
from valueharms.io import read_json, read_table
from valueharms.llm.backends import BackendSetup
from valueharms.studyb import extract, steps, subsets, verify
from valueharms.studyb import plan as sbplan
from valueharms.train.preference import PreferenceConfig

FIX = ROOT / "tests" / "fixtures" / "studyb"
SOURCES = ("pku_saferlhf", "ultrafeedback", "helpsteer2", "hh_rlhf")  # the upstream layouts
# config/study_b.yaml's sources (the paper's RLHFlow releases) and our fixtures of them
PAPER_FIX = ROOT / "tests" / "fixtures" / "studyb_sources"
PAPER_SOURCES = {
    "pku_saferlhf_standard": "pku_saferlhf_standard.jsonl",
    **{f"ultrafeedback_standard_{k}of3": "ultrafeedback_standard.parquet" for k in (1, 2, 3)},
    "helpsteer2_standard": "helpsteer2_standard.jsonl",
    "hh_rlhf_standard": "hh_rlhf_standard.jsonl",
}
N_MODELS, N_VALUES, N_BETAS = 8, 15, 4


EVAL_FIX = ROOT / "tests" / "fixtures" / "studyb_eval"


def fixture_datasets() -> dict[str, dict[str, str]]:
    """The preference fixtures, and the evaluation benchmarks' (ours, public layouts)."""
    return {
        **{name: {"path": str(FIX / f"{name}.jsonl")} for name in SOURCES},
        **{name: {"path": str(PAPER_FIX / file)} for name, file in PAPER_SOURCES.items()},
        "issuebench": {
            "path": str(EVAL_FIX / "issuebench_issues.csv"),
            "templates_path": str(EVAL_FIX / "issuebench_templates.csv"),
        },
        "anthrobench": {"path": str(EVAL_FIX / "anthrobench.csv")},
        "advbench": {"path": str(ROOT / "resources" / "demo" / "studyb" / "advbench.csv")},
    }


# --- the workflow (snakemake dry runs) -------------------------------------------------


def smk(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_snakemake(workdir, *args, timeout=300)


@pytest.fixture(scope="module")
def wf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = workflow_copy(tmp_path_factory.mktemp("wf_studyb"))
    (dest / "config" / "studyb_fixtures.yaml").write_text(
        yaml.safe_dump({"datasets": fixture_datasets()})
    )
    return dest


def test_study_b_dry_run_lists_every_adapter(wf: Path) -> None:
    t0 = time.time()
    # The default target: `rule all` asks for Study B's outputs when it is enabled.
    out = smk(wf, "-n", "--configfile", "config/study_b.yaml", "config/studyb_fixtures.yaml")
    elapsed = time.time() - t0
    assert out.returncode == 0, out.stderr + out.stdout
    c = job_counts(out.stdout)
    n_orpo = N_VALUES  # App. C: Mistral-Instruct, ORPO at 0.1, every value
    assert c["studyb_train"] == N_MODELS * N_VALUES * N_BETAS + n_orpo
    assert c["studyb_triplets"] == c["studyb_extract"] == len(PAPER_SOURCES)
    assert c["studyb_subsets"] == 1 and c["studyb_value_subset"] == N_VALUES
    assert c["studyb_verify"] == 1
    # the 8 trainees, the extractor and the verifier (the judge is o4-mini, an API model);
    # the fixtures need no download
    assert c["prepare_base_model"] == N_MODELS + 2 and "fetch_dataset" not in c
    assert "train_vim_stage1" not in c and c["report"] == 1 and c["studyb_metrics"] == 1
    # B3. Per model: IssueBench none 1 + prompt 15 + train 15 + both 15 x 4 betas (Table 6),
    # AdvBench and AnthroBench none 1 + both 15; Mistral-Nemo-Instruct's ORPO adapters (train,
    # Table 11) and its DPO adapters at 3 more temperatures (Table 10).
    per_model = (1 + N_VALUES + N_VALUES + N_VALUES * N_BETAS) + 2 * (1 + N_VALUES)
    subjects = N_MODELS * per_model + N_VALUES + 3 * N_VALUES
    assert c["subject_generations"] == c["subject_judgments"] == subjects
    # Jobs of up to 16 subjects per base, family and benchmark: IssueBench vanilla 1, dpo-b0.1
    # 2 (Nemo-Instruct: 5, with the temperatures) and 1 per other beta, ORPO 1; the others 2.
    issuebench = N_MODELS * (1 + 2 + (N_BETAS - 1)) + 3 + 1
    assert c["generate"] == c["judge"] == issuebench + 2 * 2 * N_MODELS
    assert c["studyb_prompts"] == 2 and c["benchmark_prompts"] == 1  # AdvBench: its loader
    assert c["studyb_qa"] == N_MODELS * (1 + N_VALUES)  # vanilla + DPO at beta 0.1 (Table 8)
    adapters = [o for o in planned_outputs(out.stdout) if o.endswith("/adapter")]
    assert len(adapters) == len(set(adapters)) == c["studyb_train"]
    assert sum("/dpo-b" in a for a in adapters) == N_MODELS * N_VALUES * N_BETAS
    orpo = sorted(a for a in adapters if "/orpo-b" in a)
    assert len(orpo) == n_orpo and all("/mistral-nemo-instruct/orpo-b0.1/" in a for a in orpo)
    # a hyphenated value in a path; its adapter follows valueharms.plan.adapter_dir
    model_id = "olmo-2-13b-sft/dpo-b0.01/open-mindedness"
    assert vplan.adapter_dir(model_id) in adapters
    assert elapsed < 30, f"dry run took {elapsed:.1f} s"


# The missing-preference-file message: tests/test_config.py (in-process, as every
# bad-config message; tests/test_workflow.py has one through snakemake).


def test_demo_dag_has_the_study_b_slice(wf: Path) -> None:
    out = smk(wf, "-n")
    assert out.returncode == 0, out.stderr + out.stdout
    c = job_counts(out.stdout)
    assert c["report"] == 1
    # One source, 2 values, 1 beta: 2 adapters; 3 lm-eval runs (vanilla + 2)
    assert c["studyb_triplets"] == 1 and c["studyb_train"] == 2 and c["studyb_qa"] == 3
    assert c["studyb_metrics"] == 1 and c["studyb_prompts"] == 2
    assert c["studyb_preference_tables"] == 1  # Tables 1-2, Figure 9 (issue 18)
    # Switched off, Study B has nothing to do, asked for explicitly or not.
    off = wf / "config" / "demo_no_b.yaml"
    cfg = yaml.safe_load((wf / "config" / "demo.yaml").read_text())
    cfg["studyb"]["enabled"] = False
    off.write_text(yaml.safe_dump(cfg))
    out = smk(wf, "-n", "--configfile", str(off.relative_to(wf)))
    assert out.returncode == 0, out.stderr + out.stdout
    assert not [rule for rule in job_counts(out.stdout) if rule.startswith("studyb")]
    out = smk(wf, "-n", "studyb_all", "--configfile", str(off.relative_to(wf)))
    assert out.returncode == 0, out.stderr + out.stdout
    assert set(job_counts(out.stdout)) <= {"studyb_all"}


# --- the plan (pure functions of the config) -------------------------------------------


def study_b(**over: object) -> dict:
    cfg = load_yaml(ROOT / "config" / "study_b.yaml")
    cfg["datasets"] = fixture_datasets()
    cfg["studyb"].update(over)
    return validate(cfg)


def test_schema_train_block_fills_every_preference_setting() -> None:
    props = load_schema()["properties"]["studyb"]["properties"]
    train = set(props["train"]["properties"])
    assert train == set(sbplan.TRAIN_KEYS) | set(sbplan.RUN_KEYS)
    assert tuple(props["values"]["default"]) == subsets.DEFAULT_VALUES
    # the schema's defaults are the library's (the paper's) recipe
    defaults = validate({})["studyb"]["train"]
    lib = PreferenceConfig()
    assert {k: defaults[k] for k in sbplan.TRAIN_KEYS} == {
        k: getattr(lib, k) for k in sbplan.TRAIN_KEYS
    }
    s = sbplan.preference_settings(validate({}), "orpo", 0.1)
    assert PreferenceConfig(**s).method == "orpo" and s["beta"] == 0.1


def test_disabled_study_b_checks_nothing() -> None:
    cfg = validate({"datasets": {"hh_rlhf": {"path": "nowhere.jsonl"}}})
    assert cfg["studyb"]["enabled"] is False
    p = sbplan.build(cfg, "results/data/raw")
    assert not p.enabled and p.targets() == []
    assert not p.runs and not p.data and p.regex("value") == sbplan.NEVER


def test_runs_and_paths() -> None:
    p = sbplan.build(study_b(), "results/data/raw")
    assert len(p.runs) == N_MODELS * N_VALUES * N_BETAS + N_VALUES
    assert p.betas == {"0.01": 0.01, "0.1": 0.1, "0.3": 0.3, "0.9": 0.9}
    assert p.extract_model == "mistral-7b-instruct"
    assert p.verify_model == "mistral-small-24b-instruct"
    assert set(p.data) == {*PAPER_SOURCES, "issuebench", "advbench", "anthrobench"}
    assert not any(dl for _, dl in p.data.values())
    r = sbplan.Run("mistral-nemo-instruct", "orpo", 0.1, "social justice")
    assert r.model_id == "mistral-nemo-instruct/orpo-b0.1/social_justice"
    assert r.adapter == "results/models/mistral-nemo-instruct/orpo-b0.1/social_justice/adapter"
    assert extract.normalise(r.slug) == "social justice"
    assert re.fullmatch(p.regex("value"), "open-mindedness")
    assert not re.fullmatch(p.regex("value"), "open")


def test_default_models_and_bad_keys() -> None:
    cfg = validate({"studyb": {"enabled": True}, "datasets": fixture_datasets()})
    p = sbplan.build(cfg, "results/data/raw")
    assert p.models == ["smollm2-135m"] and p.extract_model == p.verify_model == "smollm2-135m"
    assert len(p.runs) == N_BETAS * N_VALUES
    with pytest.raises(ConfigError, match="studyb.models"):
        sbplan.build(study_b(models=["gpt-5"]), "results/data/raw")
    with pytest.raises(ConfigError, match=r"studyb.values\[1\]"):
        sbplan.build(study_b(values=["Humor", "humor."]), "results/data/raw")
    with pytest.raises(ConfigError, match="studyb.train"):
        bad = study_b()
        bad["studyb"]["train"]["lora_dropout"] = 0.1  # with disable_dropout: no effect
        sbplan.build(bad, "results/data/raw")


# --- the steps, glued end to end on the fixtures (fake LLM) ----------------------------


def test_steps_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_backend_cls: type
) -> None:
    def answer(req):  # chosen: empathy; rejected: open minded (a synonym)
        side = req.key.rsplit("|", 1)[1]
        if "set of values" in req.messages[0][1]:  # the verifier
            return "<thinking>warm</thinking><answer>empathy, kindness</answer>"
        return "<answer>empathy</answer>" if side == "chosen" else "<answer>open minded</answer>"

    fake = fake_backend_cls(answer=answer)
    monkeypatch.setattr("valueharms.llm.backends.make_backend", lambda *a, **k: fake)
    cfg = study_b()
    values = list(sbplan.values(cfg).values())
    synonyms = {"open minded": "open-mindedness"}
    templates = {
        k: vplan.read_template(cfg["studyb"][k]["template"], k) for k in ("extract", "verify")
    }
    model = BackendSetup("m", {}, "hf", {}, cache_dir=str(tmp_path / "cache"))
    trip, ext = [], []
    for name in SOURCES:
        t, e = tmp_path / f"t_{name}.parquet", tmp_path / f"e_{name}.parquet"
        steps.triplets(name, str(FIX / f"{name}.jsonl"), None, 0, {}, str(t), str(t) + ".json")
        assert read_json(str(t) + ".json")["dataset"] == name
        steps.extract_values(
            str(t),
            model,
            templates["extract"],
            sbplan.sampling(cfg["studyb"]["extract"], 0),
            4,
            str(e),
        )
        trip.append(str(t))
        ext.append(str(e))
    n_pairs = sum(len(read_table(p)) for p in trip)
    out = {k: str(tmp_path / f"{k}.parquet") for k in ("subsets", "sizes", "counts", "om")}
    steps.value_subsets(trip, ext, values, synonyms, out["subsets"], out["sizes"], out["counts"])
    sizes = read_table(out["sizes"], subsets.SUBSET_SIZES_SCHEMA).set_index("value")
    assert sizes.loc["empathy"].tolist() == [n_pairs, 0, n_pairs]
    assert sizes.loc["honesty"].tolist() == [0, 0, 0]
    assert sizes.loc["open-mindedness"].tolist() == [0, n_pairs, n_pairs]
    steps.value_subset(trip, ext, "open-mindedness", synonyms, out["om"])
    one = read_table(out["om"], subsets.SUBSETS_SCHEMA)
    every = read_table(out["subsets"], subsets.SUBSETS_SCHEMA)
    expected = every[every["value"] == "open-mindedness"].reset_index(drop=True)
    pd.testing.assert_frame_equal(one, expected)
    assert one["flipped"].all()

    v = {k: str(tmp_path / f"v_{k}") for k in ("ver", "prec", "base", "summary")}
    steps.verify_subsets(
        steps.VerifyJob(
            subsets_path=out["subsets"],
            verifier=model,
            template=templates["verify"],
            labels=sbplan.verify_labels(cfg),
            values=values,
            sampling=sbplan.sampling(cfg["studyb"]["verify"], 0),
            synonyms=synonyms,
            batch_size=4,
            baseline_ks=[1, 5],
            include_none=True,
            verifications_out=v["ver"],
            precision_out=v["prec"],
            baselines_out=v["base"],
            summary_out=v["summary"],
        )
    )
    prec = read_table(v["prec"], verify.PRECISION_SCHEMA)
    assert prec["value"].tolist() == ["empathy", "open-mindedness"]
    assert prec["precision"].tolist() == [1.0, 0.0]
    assert prec["n_unknown_labels"].tolist() == [n_pairs, n_pairs]  # "kindness"
    base = read_table(v["base"], verify.BASELINES_SCHEMA)
    assert base["precision"].round(4).tolist() == [0.0588, 0.2941]
    assert read_json(v["summary"])["averaged_precision"]["macro"] == 0.5


# --- the demo's Study B slice end to end (slow) ----------------------------------------

# Study A off, as in config/study_b.yaml: the demo's Study B slice alone.
STUDY_A_OFF = {
    "distributions": {"select": []},
    "vim": {"enabled": False},
    "vanilla": {"enabled": False},
    "icl": {"enabled": False},
    "benchmarks": {"select": []},
    "alignment": {"enabled": False},
    "mitigation": {"enabled": False},
}


@pytest.fixture(scope="module")
def demo_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = workflow_copy(tmp_path_factory.mktemp("demo_b"))
    cfg = deep_merge(load_yaml(wd / "config" / "demo.yaml"), STUDY_A_OFF)
    (wd / "config" / "demo_b.yaml").write_text(yaml.safe_dump(cfg))
    args = ["--profile", "profiles/local", "--configfile", "config/demo_b.yaml"]
    out = run_snakemake(wd, *args, timeout=1800)
    assert out.returncode == 0, out.stderr[-5000:]
    return wd


def _table_rows(html: str, table_id: str) -> list[list[str]]:
    body = html.split(f'<table id="{table_id}">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S)
    return [re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S) for r in rows]


@pytest.mark.slow
def test_demo_report_shows_the_analyses(demo_b: Path) -> None:
    """Issue 18: value diversity, the value-expression heat-map, per-source counts and
    Tables 1-2 in the demo report, their numbers from this run's outputs."""
    html = (demo_b / "results" / "report" / "index.html").read_text()
    m = demo_b / "results" / "studyb" / "metrics"
    # Table 1, with the verifier's precision per value (Table 2)
    sizes = pd.read_parquet(m / "subset_sizes.parquet")
    prec = pd.read_parquet(m / "verification_by_value.parquet").set_index("value")
    assert sizes["value"].tolist() == ["empathy", "honesty"]
    rows = {r[0]: r for r in _table_rows(html, "sb-subset-sizes") if r}
    for r in sizes.itertuples():
        p = prec.loc[r.value, "precision"]
        expected = "–" if pd.isna(p) else f"{100 * p:.1f}"
        assert rows[r.value][1:4] == [str(r.chosen), str(r.rejected), str(r.total)]
        assert rows[r.value][5] == expected
    # Table 2: the random baselines and the verifier
    ver = pd.read_parquet(m / "verification.parquet")
    assert ver["kind"].tolist() == ["random", "random", "verifier"]
    t2 = [r for r in _table_rows(html, "sb-verification") if r]
    assert [r[0] for r in t2] == ver["annotator"].tolist()
    assert ver["n_verified"].iat[-1] > 0
    # Figure 9: the one demo source, 12 pairs, both sides extracted in choice mode
    src = pd.read_parquet(m / "source_values.parquet")
    assert set(src["source"]) == {"pku_saferlhf"}
    assert (src["chosen_extracted"] == 12).all() and (src["rejected_extracted"] == 12).all()
    assert 'alt="Chosen and rejected values per preference source"' in html
    # Figure 7: value diversity in the four settings
    div = pd.read_parquet(m / "diversity.parquet")
    assert set(div["setting"]) == {"none", "prompt", "train", "both"}
    t7 = _table_rows(html, "sb-diversity")
    assert [r[0] for r in t7 if r] == ["smollm2-135m"]
    none = div[div["setting"] == "none"].iloc[0]
    assert t7[-1][2].startswith(f"{none.mean_unique:.1f} ±")
    # Figures 2, 10, 11: the heat-map and its numbers
    vm = pd.read_parquet(m / "value_matrix.parquet")
    assert len(vm) and set(vm["setting"]) <= {"none", "prompt", "train", "both"}
    assert 'alt="Value expression heat-map of smollm2-135m"' in html
    assert 'id="sb-value-matrix-smollm2-135m"' in html
    for sec in ("sec-sb-subsets", "sec-sb-verification", "sec-sb-sources", "sec-sb-diversity"):
        assert f'id="{sec}"' in html
