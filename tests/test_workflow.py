"""The workflow as a user runs it: dry runs of the full study, bad configs, and the demo
end to end with its rerun behaviour (touch, template and distribution changes).

Each test runs snakemake in a private copy of the workflow files, so results/ of the
checkout is never touched.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from paths import ROOT, SHARED

COPY = ["Snakefile", "rules", "scripts", "config", "resources", "profiles", "envs"]


def workflow_copy(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            shutil.copy2(src, dest / name)
    return dest


def smk(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def job_counts(output: str) -> Counter[str]:
    """The 'Job stats' table of a dry run as {rule: count} (empty when nothing is to run)."""
    counts: Counter[str] = Counter()
    if "Job stats:" not in output:
        return counts
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    for line in table.splitlines():
        m = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if m:
            counts[m.group(1)] = int(m.group(2))
    return counts


def planned_outputs(output: str) -> list[str]:
    return re.findall(r"^\s*output: (.+)$", output, flags=re.M)


@pytest.fixture(scope="module")
def wf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return workflow_copy(tmp_path_factory.mktemp("wf"))


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/study_a")
def test_study_a_dry_run_lists_every_job(wf: Path) -> None:
    # The copy lives elsewhere, so point the study's relative search path at shared/.
    # PVQ-40 is user-supplied: the demo's own items stand in for the real questionnaire.
    shared = {
        "data_search_paths": [str(SHARED)],
        "datasets": {"pvq": {"path": "resources/demo/pvq40.csv"}},
    }
    (wf / "config" / "shared.yaml").write_text(yaml.safe_dump(shared))
    t0 = time.time()
    out = smk(wf, "-n", "--configfile", "config/study_a.yaml", "config/shared.yaml")
    elapsed = time.time() - t0
    assert out.returncode == 0, out.stderr + out.stdout
    c = job_counts(out.stdout)
    assert c["train_vim_stage1"] == 154 and c["train_vim_stage2"] == 154
    assert c["train_benign"] == 4
    # (154 VIM + 4 benign + vanilla + 154 ICL) subjects x 4 benchmarks; PVQ-40 for every
    # subject but the benign ones; mitigation on HEx-PHI: vanilla x (safety + 2 settings x
    # 2 values) + 11 VIM models per paired value (Self-direction, Universalism) x 3 settings
    safety, pvq, mitigation = (154 + 4 + 1 + 154) * 4, 1 + 154 + 154, 5 + 2 * 11 * 3
    # Every subject's own file, cut from its group's table.
    assert c["subject_generations"] == safety + pvq + mitigation
    assert c["subject_judgments"] == safety + mitigation
    # Jobs serve up to 16 subjects of one family (generation.subjects_per_job): per safety
    # benchmark vanilla 1 + ICL ceil(154/16) = 10 + VIM 10 + benign 1; on HEx-PHI the VIM
    # family also holds the 66 VIM mitigation runs (ceil(220/16) = 14), vanilla its 5;
    # PVQ-40 1 + 10 + 10.
    assert c["generate"] == 22 * 3 + 26 + 21
    assert c["judge"] == 22 * 3 + 26
    assert c["distribution"] == 154 and c["metrics"] == 4 and c["report"] == 1
    assert c["alignment"] == 1 and c["mitigation"] == 1
    assert elapsed < 20, f"dry run took {elapsed:.1f} s"


def test_one_target_builds_only_what_it_needs(wf: Path) -> None:
    target = "results/judgments/hexphi/smollm2-135m/vim/Ach/plain.parquet"
    # One subject per job: the target's own chain and nothing else.
    cfg = yaml.safe_load((wf / "config" / "demo.yaml").read_text())
    (wf / "config" / "one_per_job.yaml").write_text(
        yaml.safe_dump({**cfg, "generation": {"subjects_per_job": 1}})
    )
    out = smk(wf, "-n", "--configfile", "config/one_per_job.yaml", "--", target)
    assert out.returncode == 0, out.stderr + out.stdout
    c = job_counts(out.stdout)
    assert c == Counter(
        prepare_base_model=1,
        distribution=1,
        vim_examples=1,
        train_vim_stage1=1,
        train_vim_stage2=1,
        benchmark_prompts=1,
        generate=1,
        judge=1,
        subject_judgments=1,
    )
    outs = " ".join(planned_outputs(out.stdout))
    assert "close_Ach" not in outs and "ess_scores" not in outs and "rtp" not in outs
    assert "studyb" not in outs and "/Uni/" not in outs
    # Grouped (the demo's default), the target's job serves its whole family: every VIM
    # model on HEx-PHI, with their mitigation runs; still nothing of other benchmarks.
    grouped = smk(wf, "-n", target)
    assert grouped.returncode == 0, grouped.stderr + grouped.stdout
    g = job_counts(grouped.stdout)
    assert g["train_vim_stage2"] == 3 and g["generate"] == 1 and g["judge"] == 1
    outs = " ".join(planned_outputs(grouped.stdout))
    assert "rtp" not in outs and "vanilla" not in outs and "studyb" not in outs


# Every bad-config message is checked in-process (tests/test_config.py, parse_time_checks);
# this one case shows that such a message reaches the user through snakemake, alone.
def test_bad_config_reaches_the_user_through_snakemake(wf: Path) -> None:
    override, needle = {"vim": {"threshhold": 3}}, "vim.threshhold"
    base = yaml.safe_load((wf / "config" / "demo.yaml").read_text())
    bad = wf / "config" / f"bad_{needle.replace('.', '_')}.yaml"
    merged = {**base, **{k: {**base.get(k, {}), **v} for k, v in override.items()}}
    bad.write_text(yaml.safe_dump(merged))
    out = smk(wf, "-n", "--configfile", str(bad.relative_to(wf)))
    assert out.returncode != 0
    msg = [line for line in (out.stderr + out.stdout).splitlines() if "valueharms:" in line]
    assert len(msg) == 1 and needle in msg[0], out.stderr + out.stdout
    assert "Traceback" not in out.stderr
    assert not (wf / "results").exists()


# ----------------------------------------------------------------- end to end (slow)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = workflow_copy(tmp_path_factory.mktemp("demo"))
    t0 = time.time()
    out = smk(wd, "--profile", "profiles/local", timeout=1200)
    elapsed = time.time() - t0
    assert out.returncode == 0, out.stderr[-5000:]
    # The acceptance bound is 600 s on 2 cores; leave CI headroom for a loaded machine.
    assert elapsed < 900, f"demo took {elapsed:.0f} s"
    return wd


@pytest.mark.slow
def test_demo_report_numbers_come_from_outputs(demo: Path) -> None:
    html = (demo / "results" / "report" / "index.html").read_text()
    m = pd.read_parquet(demo / "results" / "metrics" / "rtp.parquet")
    vanilla = m[(m.model_id == "smollm2-135m/vanilla") & (m.condition == "plain")]
    emt = vanilla[(vanilla.metric == "expected_max_toxicity") & (vanilla.category == "all")]
    assert len(emt) == 1
    assert f"{emt.value.iloc[0]:.3f}" in html
    assert "profanity-check" in html and "llm:smollm2-135m" in html
    # Every subject x benchmark was generated and judged from real outputs.
    for bench in ("rtp", "holisticbiasr", "hexphi", "beavertails"):
        g = pd.read_parquet(
            demo / "results/generations" / bench / "smollm2-135m/vim/Ach/plain.parquet"
        )
        assert (g.status == "ok").all() and g.output.str.len().gt(0).any()
    rtp = pd.read_parquet(demo / "results/generations/rtp/smollm2-135m/vanilla/plain.parquet")
    assert len(rtp) == 6 * 2  # 6 prompts x 2 samples in the demo config
    # The Study A findings: five tables / plots, each from this run's outputs.
    for table in ('id="safety"', 'id="nmse"', 'id="comparisons"', 'id="mitigation"'):
        assert table in html
    assert 'alt="Spearman rho heat-map"' in html
    assert "no published figures are\nshown" in html  # the demo is not the published setup
    nmse = pd.read_parquet(demo / "results/alignment/pvq_nmse.parquet")
    # VIM and ICL against their own target, vanilla against each of the 3 targets
    assert len(nmse) == 3 + 3 + 3 and (nmse.n_parsed + nmse.n_unparsed + nmse.n_failed == 10).all()
    vim = nmse[nmse.model_id.str.contains("/vim/")].nmse.dropna()
    assert (f"<td>{vim.mean():.4f}</td>" if len(vim) else "<td>–</td>") in html
    mit = pd.read_parquet(demo / "results/stats/mitigation.parquet")
    assert set(mit.setting) == {"input_only", "safety", "value", "dual"}
    assert set(mit.model_type) == {"vanilla", "vim"}
    assert set(mit.category) == {"fraud_deception"}
    # Judge agreement (issue 20, acceptance 4): the two local judges' kappa and its
    # interval for each judged benchmark, as results/agreement holds them.
    agreement = html.split('id="agreement"', 1)[1].split("</table>", 1)[0]
    for bench in ("holisticbiasr", "hexphi", "beavertails"):
        row = pd.read_parquet(demo / "results" / "agreement" / f"{bench}.parquet").iloc[0]
        assert row.n_pairs > 0
        if pd.isna(row.kappa):  # one judge gave a single verdict: no kappa, said so
            assert "undefined" in agreement and pd.notna(row.note)
        else:
            assert f"<td>{row.kappa:.3f}</td>" in agreement
            assert f"[{row.ci_low:.3f}, {row.ci_high:.3f}]" in agreement


@pytest.mark.slow
def test_demo_report_failure_table_equals_a_count_over_the_judgments(demo: Path) -> None:
    """Issue 21: the Failures table's totals are the failed and unparsed rows of every
    Study A judgment table, the mitigation runs' included."""
    html = (demo / "results" / "report" / "index.html").read_text()
    judged = [
        pd.read_parquet(p)
        for bench in ("rtp", "holisticbiasr", "hexphi", "beavertails")
        for p in (demo / "results/judgments" / bench).rglob("*.parquet")
    ]
    j = pd.concat(judged, ignore_index=True)
    assert j.condition.str.startswith("mit-").any(), "the demo judges mitigation runs"
    table = html.split('<table id="failures">', 1)[1].split("</table>", 1)[0]
    total = re.search(r'<tr class="total">(.*?)</tr>', table).group(1)
    cells = re.findall(r"<td>(.*?)</td>", total)
    assert int(cells[-2]) == int((j.status == "failed").sum())
    assert int(cells[-1]) == int((j.status == "unparsed").sum())


@pytest.mark.slow
def test_demo_study_b_slice_from_preferences_to_the_report(demo: Path) -> None:
    """Issue 6: the Study B slice (2 values, 1 beta) end to end, numbers from outputs."""
    html = (demo / "results" / "report" / "index.html").read_text()
    sb = demo / "results" / "studyb"
    sizes = pd.read_parquet(sb / "subset_sizes.parquet")
    assert set(sizes.value) == {"empathy", "honesty"} and (sizes.total > 0).all()
    for v in ("empathy", "honesty"):
        log = demo / f"results/models/smollm2-135m/dpo-b0.1/{v}/adapter/preference_log.json"
        assert log.is_file()
    # The four settings on IssueBench, both against vanilla on AdvBench and AnthroBench.
    expr = pd.read_parquet(sb / "metrics" / "expression.parquet")
    assert sorted(expr.setting.unique()) == ["both", "none", "prompt", "train"]
    assert (expr.n + expr.n_unparsed + expr.n_failed == 4).all()  # 4 prompts each
    gens = pd.read_parquet(
        demo / "results/generations/issuebench/smollm2-135m/dpo-b0.1/empathy/prompt-empathy.parquet"
    )
    assert len(gens) == 4 and (gens.status == "ok").all()
    refusal = pd.read_parquet(sb / "metrics" / "refusal.parquet")
    assert set(refusal.setting) == {"none", "both"} and (refusal.n == 3).all()
    anthro = pd.read_parquet(sb / "metrics" / "anthro.parquet")
    assert set(anthro.setting) == {"none", "both"} and anthro.difference.notna().all()
    qa = pd.read_parquet(sb / "metrics" / "qa.parquet")
    assert set(qa.adapter) == {
        "smollm2-135m/dpo-b0.1/empathy", "smollm2-135m/dpo-b0.1/honesty"
    }  # fmt: skip
    assert set(qa.task) == {"valueharms_tiny_mc"} and qa.vanilla.notna().all()
    # The report's Study B section shows those tables (the summary's means among them).
    for table in ("sb-expression-summary", "sb-refusal-by-value", "sb-anthro-by-value"):
        assert f'id="{table}"' in html
    summary = pd.read_parquet(sb / "metrics" / "expression_summary.parquet")
    assert len(summary) == 4 and "Study B" in html


@pytest.mark.slow
def test_demo_rerun_touch_and_changes(demo: Path) -> None:
    t0 = time.time()
    again = smk(demo, "--profile", "profiles/local")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    assert time.time() - t0 < 30

    for f in (
        "resources/demo/hex-phi.csv",
        "resources/demo/ess.csv",
        "resources/prompts/judge_hexphi.txt",
    ):
        (demo / f).touch()
    touched = smk(demo, "-n", "--profile", "profiles/local")
    assert "Nothing to be done" in touched.stdout + touched.stderr, touched.stdout

    # A changed judge prompt reruns that judge's jobs and what is downstream, only.
    tmpl = demo / "resources/prompts/judge_hexphi.txt"
    original = tmpl.read_text()
    tmpl.write_text(original + "Be brief.\n")
    out = smk(demo, "-n", "--profile", "profiles/local")
    # The HEx-PHI judge jobs: vanilla (+ its 3 mitigation runs), ICL (3 subjects), VIM
    # (3 + 6 mitigation runs); then each of those 16 subjects' own judgments, and the
    # judge agreement on HEx-PHI, which reads them (judges.agreement).
    assert job_counts(out.stdout) == Counter(
        judge=3,
        subject_judgments=7 + 9,
        agreement=1,
        metrics=1,
        stats=1,
        mitigation=1,
        report=1,
        all=1,
    )
    assert all(
        "hexphi" in o or "stats" in o or "report" in o
        for o in planned_outputs(out.stdout)
        if "judgments" in o or "metrics" in o
    )

    tmpl.write_text(original)
    restored = smk(demo, "-n", "--profile", "profiles/local")
    assert "Nothing to be done" in restored.stdout + restored.stderr

    # A changed distribution (realistic scoring) reruns its chain, not the extreme one's.
    cfg = yaml.safe_load((demo / "config/demo.yaml").read_text())
    cfg["distributions"]["realistic"] = {"reverse_code": False}
    (demo / "config/changed.yaml").write_text(yaml.safe_dump(cfg))
    out = smk(demo, "-n", "--profile", "profiles/local", "--configfile", "config/changed.yaml")
    outs = planned_outputs(out.stdout)
    assert not any(o.endswith("/Ach.parquet") or "vim/Ach/adapter" in o for o in outs)
    c = job_counts(out.stdout)
    assert c["train_vim_stage1"] == 1 and c["train_vim_stage2"] == 1
    # The jobs of close_Ach's two families (ICL and VIM) on 4 benchmarks and PVQ-40 rerun;
    # their other members' answers come from the LLM cache. Vanilla, benign and Study B
    # jobs do not.
    assert c["generate"] == 5 + 5 and c["judge"] == 4 + 4
    groups = [o for o in outs if "results/groups/" in o]
    assert groups and all("/icl-" in o or "/vim-" in o for o in groups), groups
    assert not any("studyb" in o for o in outs)


@pytest.mark.slow
def test_demo_changed_training_seed_reruns_only_that_adapters_downstream(demo: Path) -> None:
    """Issue 10: a changed stage-2 seed retrains the stage-2 adapters and reruns what reads
    them; stage 1, the base model and the vanilla/ICL subjects stay as they are."""
    cfg = yaml.safe_load((demo / "config/demo.yaml").read_text())
    cfg["vim"]["stage2"] = {**cfg["vim"]["stage2"], "seed": 7}
    (demo / "config/seed.yaml").write_text(yaml.safe_dump(cfg))
    out = smk(demo, "-n", "--profile", "profiles/local", "--configfile", "config/seed.yaml")
    assert out.returncode == 0, out.stderr[-3000:]
    c = job_counts(out.stdout)
    assert c["train_vim_stage2"] == 3 and c["generate"] > 0
    assert c["train_vim_stage1"] == 0 and c["prepare_base_model"] == 0
    outs = planned_outputs(out.stdout)
    generated = [o for o in outs if "results/generations/" in o]
    assert generated and all("/vim/" in o for o in generated), generated
    groups = [o for o in outs if "results/groups/" in o]
    assert groups and all("/smollm2-135m/vim-" in o for o in groups), groups


@pytest.mark.slow
def test_demo_with_an_api_judge_pays_each_call_once(demo: Path) -> None:
    """The judge stage through the openai backend: a model with `source: api`, served by a
    local OpenAI-compatible server. Runs last: it changes the demo's judgments."""
    from openai_mock import MockOpenAI

    target = "results/judgments/hexphi/smollm2-135m/vanilla/plain.parquet"
    with MockOpenAI() as mock:
        cfg = {
            "models": {
                "smollm2-135m": {"source": "embedded", "chat": True},
                "api-judge": {"source": "api", "name": "judge-7b", "base_url": mock.base_url},
            },
            "judges": {"llm": {"model": "api-judge", "mode": "generate"}},
            # Study B's judge (judges.llm.model when unset) stays the local choice judge.
            "studyb": {"judge": {"model": "smollm2-135m"}},
        }
        (demo / "config/api_judge.yaml").write_text(yaml.safe_dump(cfg))
        args = ["--profile", "profiles/local", "--configfile", "config/demo.yaml"]
        args += ["config/api_judge.yaml", "--", target]
        out = smk(demo, *args)
        assert out.returncode == 0, out.stderr[-3000:]
        j = pd.read_parquet(demo / target)
        # The judge job served the target's group: vanilla and its mitigation runs.
        group = "results/groups/generations/hexphi/smollm2-135m/vanilla-1.parquet"
        gens = pd.read_parquet(demo / group)
        calls = mock.generate_calls()
        assert len(calls) == int((gens.status == "ok").sum()) > len(j) > 0
        assert {c.body["model"] for c in calls} == {"judge-7b"}
        assert set(j.judge) == {"llm:api-judge"}
        # The mock echoes the prompt, which is no verdict: unparsed, never scored.
        assert set(j.status) <= {"ok", "unparsed"} and j.raw.str.startswith("echo:").all()
        assert j.loc[j.status == "unparsed", "score"].isna().all()

        # The job again from scratch: every answer comes from the cache, no call is paid.
        (demo / target).unlink()
        (demo / group.replace("generations", "judgments")).unlink()
        again = smk(demo, *args)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "Rule: judge" in again.stdout + again.stderr  # the judge job did run again
        assert len(mock.generate_calls()) == len(calls)
        pd.testing.assert_frame_equal(pd.read_parquet(demo / target), j)


@pytest.mark.slow
def test_demo_judge_outage_fails_the_job_and_the_rerun_pays_only_the_failed_calls(
    demo: Path,
) -> None:
    """Issue 21: with more failed calls than judges.max_failure_share the judge job fails,
    so the same command run again (endpoint back) retries it, paying only the calls that
    failed: the answers that succeeded come from the cache. The per-subject file an
    earlier run cut is gone with the failed job, or Snakemake would find nothing to do."""
    from collections import deque

    from openai_mock import GENERATE, MockOpenAI

    target = "results/judgments/beavertails/smollm2-135m/vanilla/plain.parquet"
    with MockOpenAI() as mock:
        cfg = {
            "models": {
                "smollm2-135m": {"source": "embedded", "chat": True},
                "flaky": {"source": "api", "name": "judge-flaky", "base_url": mock.base_url},
            },
            "judges": {"llm": {"model": "flaky", "mode": "generate"}},
            "studyb": {"judge": {"model": "smollm2-135m"}},
            # One call at a time, no retries: the first k calls are the failed ones.
            "backends": {"openai": {"concurrency": 1, "max_retries": 0}},
        }
        (demo / "config/flaky_judge.yaml").write_text(yaml.safe_dump(cfg))
        args = ["--profile", "profiles/local", "--configfile", "config/demo.yaml"]
        args += ["config/flaky_judge.yaml", "--", target]
        k = 3
        mock.faults[GENERATE] = deque([("500",)] * k)
        down = smk(demo, *args)
        assert down.returncode != 0
        assert "judges.max_failure_share" in down.stdout + down.stderr
        assert not (demo / target).exists()  # else the rerun has "nothing to be done"
        first = mock.generate_calls()
        failed = [c.body["messages"][-1]["content"] for c in first[:k]]
        assert len(first) > k

        up = smk(demo, *args)  # the same command, endpoint up
        assert up.returncode == 0, up.stderr[-3000:]
        second = mock.generate_calls()[len(first) :]
        assert sorted(c.body["messages"][-1]["content"] for c in second) == sorted(failed)
        j = pd.read_parquet(demo / target)
        assert set(j.status) <= {"ok", "unparsed"}
