"""Issue 20, item 2: grouped VIM training (training.subjects_per_job).

Groups are planned in plan order; a group job trains only members missing from the
adapter store, on one loaded base, and its adapters equal those of one job per stage;
after one distribution's examples change, Snakemake schedules that distribution's
training and downstream only.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from paths import ROOT
from test_workflow import job_counts, planned_outputs, smk, workflow_copy

from valueharms import plan as P
from valueharms.config import load_yaml, validate
from valueharms.data.vim import VIM_SCHEMA
from valueharms.io import write_table
from valueharms.models import adapter_hash
from valueharms.train import groups, sft, steps

# ------------------------------------------------------------------------- planning


def test_groups_cut_the_distributions_in_plan_order() -> None:
    dists = ["Ach", "Uni", "close_Ach", "Ben", "Sec"]
    assert P.train_groups(dists, 2) == {
        "vim-1": ["Ach", "Uni"],
        "vim-2": ["close_Ach", "Ben"],
        "vim-3": ["Sec"],
    }
    assert P.train_groups(dists, 8) == {"vim-1": dists}
    # Appending a distribution changes the last group only.
    assert P.train_groups([*dists, "Pow"], 2)["vim-2"] == ["close_Ach", "Ben"]
    with pytest.raises(ValueError):
        P.train_groups(dists, 0)


def _plan(monkeypatch: pytest.MonkeyPatch, **training: Any) -> Any:
    monkeypatch.chdir(ROOT)  # template and data paths in the config are repository-relative
    cfg = load_yaml(ROOT / "config" / "demo.yaml")
    if training:
        cfg["training"] = training
    return P.build(validate(cfg))


def test_the_default_plans_no_groups_and_n_plans_them(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _plan(monkeypatch).train_groups == {}  # one job per stage and distribution
    grouped = _plan(monkeypatch, subjects_per_job=2)
    assert grouped.train_groups == {"vim-1": ["Ach", "close_Ach"], "vim-2": ["Uni"]}
    assert grouped.train_group_of("Uni") == "vim-2"


# ------------------------------------------------------ the group job and its store

SETTINGS = {
    "stage1": {"epochs": 2, "batch_size": 4, "learning_rate": 1e-2, "max_steps": 3},
    "stage2": {"epochs": 1, "batch_size": 4, "learning_rate": 1e-2, "max_steps": 2},
    "chat": False,
    "tokenization": {"add_special_tokens": True},
    "code": "test",
}
STAGES = ("stage1", "stage2")


def _examples(path: Path, word: str) -> str:
    rows = [
        {
            "stage": stage,
            "split": "train" if i < 8 else "valid",
            "example_id": f"{stage}-{i}",
            "arg_id": str(i),
            "kind": "argument",
            "value": "Achievement",
            "prompt": f"Stage {stage}, question {i}: what about {word}?",
            "completion": f" {word} matters {i % 3} times.",
        }
        for stage in (1, 2)
        for i in range(10)
    ]
    write_table(path, pd.DataFrame(rows), VIM_SCHEMA)
    return str(path)


def _members(tmp: Path, base: Path, words: dict[str, str]) -> dict[str, tuple[str, str]]:
    out = {}
    for dist, word in words.items():
        ex = _examples(tmp / f"{dist}.parquet", word)
        out[dist] = (ex, groups.write_key(ex, base, SETTINGS, tmp / f"{dist}.key.json"))
    return out


def test_the_store_trains_each_key_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake training: which stages run, and how often the base is loaded."""
    calls: list[tuple[str, int]] = []
    loads: list[int] = []

    def fake_stage(base_dir, examples, stage, cfg, out_dir, init_adapter=None, **_) -> None:
        calls.append((Path(examples).stem, stage))
        Path(out_dir).mkdir(parents=True)
        (Path(out_dir) / "adapter_config.json").write_text("{}")

    class Loaded:
        def fits(self, cfg: Any) -> bool:
            return True

    def fake_load(*a: Any) -> Loaded:
        loads.append(1)
        return Loaded()

    monkeypatch.setattr(steps, "vim_stage", fake_stage)
    monkeypatch.setattr(sft, "load_base", fake_load)
    base, store = tmp_path / "base", tmp_path / "store"
    base.mkdir()
    members = _members(tmp_path, base, {"A": "cats", "B": "dogs", "C": "owls"})
    manifest = groups.train_group(str(base), members, SETTINGS, store)
    assert calls == [(d, s) for d in "ABC" for s in (1, 2)] and len(loads) == 1
    assert all(m["trained"] for m in manifest.values())
    # Rerun with one member's examples changed: only it trains.
    calls.clear()
    loads.clear()
    members |= _members(tmp_path, base, {"B": "bats"})
    manifest = groups.train_group(str(base), members, SETTINGS, store)
    assert calls == [("B", 1), ("B", 2)] and len(loads) == 1
    assert [d for d, m in manifest.items() if m["trained"]] == ["B"]
    # Nothing missing: no training and no base load.
    calls.clear()
    loads.clear()
    groups.train_group(str(base), members, SETTINGS, store)
    assert calls == [] and loads == []
    # A job killed after a stage 1: stage 2 continues it.
    shutil.rmtree(store / members["C"][1] / "adapter")
    groups.train_group(str(base), members, SETTINGS, store)
    assert calls == [("C", 2)]
    # Materialised per distribution; a cleared store asks the group job to run again.
    outs = {"stage1": str(tmp_path / "A" / "stage1"), "adapter": str(tmp_path / "A" / "adapter")}
    man = tmp_path / "vim-1.json"
    man.write_text("{}")
    groups.place_adapters("A", members["A"][1], store, man, outs)
    assert (tmp_path / "A" / "adapter" / "adapter_config.json").exists()
    shutil.rmtree(store)
    with pytest.raises(FileNotFoundError, match="next run reruns the group job"):
        groups.place_adapters("A", members["A"][1], store, man, outs)
    assert not man.exists()


def test_grouped_adapters_equal_one_job_per_stage(tiny_model_dir: Path, tmp_path: Path) -> None:
    members = _members(tmp_path, tiny_model_dir, {"A": "cats", "B": "dogs"})
    manifest = groups.train_group(str(tiny_model_dir), members, SETTINGS, tmp_path / "store")
    cfg = {s: steps.with_special_tokens(SETTINGS[s], SETTINGS["tokenization"]) for s in STAGES}
    for dist, (examples, key) in members.items():
        assert manifest[dist]["key"] == key
        one = tmp_path / "one" / dist
        for stage, name in ((1, "stage1"), (2, "adapter")):
            steps.vim_stage(
                str(tiny_model_dir),
                examples,
                stage,
                cfg[f"stage{stage}"],
                str(one / name),
                init_adapter=str(one / "stage1") if stage == 2 else None,
                chat=False,
            )
            stored = tmp_path / "store" / key / name
            assert adapter_hash(stored) == adapter_hash(one / name), (dist, name)


# ------------------------------------------------- what Snakemake reruns (dry runs)

DISTS = ("Ach", "close_Ach", "Uni")


def _done_state(wd: Path, cfg: str, targets: list[str]) -> None:
    """Every job's outputs as placeholders, marked up to date with --touch."""
    dry = smk(wd, "-n", "--configfile", "config/demo.yaml", cfg, "--", *targets)
    assert dry.returncode == 0, dry.stderr + dry.stdout
    for out in ", ".join(planned_outputs(dry.stdout)).split(", "):
        path = wd / out
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("placeholder")
        else:
            path.mkdir(parents=True, exist_ok=True)
    touch = smk(wd, "--touch", "-F", "-c1", "--configfile", "config/demo.yaml", cfg, "--", *targets)
    assert touch.returncode == 0, touch.stderr


@pytest.mark.parametrize("per_job", [1, 3])
def test_one_changed_distribution_reruns_only_its_training_and_downstream(
    tmp_path: Path, per_job: int
) -> None:
    wd = workflow_copy(tmp_path / "wf")
    # One subject per generate job, so "downstream" is per distribution to the last file.
    cfg = {"training": {"subjects_per_job": per_job}, "generation": {"subjects_per_job": 1}}
    (wd / "config" / "t.yaml").write_text(yaml.safe_dump(cfg))
    targets = [f"results/generations/rtp/smollm2-135m/vim/{d}/plain.parquet" for d in DISTS]
    _done_state(wd, "config/t.yaml", targets)
    (wd / "results/data/vim/Ach.parquet").write_text("changed examples")
    out = smk(wd, "-n", "--configfile", "config/demo.yaml", "config/t.yaml", "--", *targets)
    assert out.returncode == 0, out.stderr + out.stdout
    training = (
        {"train_vim_stage1": 1, "train_vim_stage2": 1}
        if per_job == 1
        else {"vim_key": 1, "train_vim_group": 1, "vim_adapters": 1}
    )
    assert job_counts(out.stdout) == {**training, "generate": 1, "subject_generations": 1}
    outs = planned_outputs(out.stdout)
    assert all("/Ach" in o or "vim-1" in o for o in outs), outs
    if per_job > 1:
        # A training setting is every distribution's: all keys and adapters follow it.
        cfg["vim"] = {"stage1": {"learning_rate": 1e-3}}
        (wd / "config" / "t.yaml").write_text(yaml.safe_dump(cfg))
        out = smk(wd, "-n", "--configfile", "config/demo.yaml", "config/t.yaml", "--", *targets)
        c = job_counts(out.stdout)
        assert c["vim_key"] == 3 and c["train_vim_group"] == 1 and c["vim_adapters"] == 3
