"""One typed plan of a validated config, for both studies (`valueharms.plan.build`).

rules/common.smk builds it once at parse time and keeps one-line lookups into it: what
is generated and judged (subjects, groups), from which data and prompt texts, by which
judge, and the mitigation runs. Nothing here reads a dataset, so a dry run stays fast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from valueharms import benchmarks, mitigation
from valueharms import plan as P
from valueharms.judge import agreement_plan
from valueharms.judge.select import JudgeSpec, judge_spec
from valueharms.studyb import induction
from valueharms.studyb import plan as sbplan

DOWNLOAD_DIR = "results/data/raw"
MIT_PAIRS_FILE = "results/stats/mitigation_pairs.json"


def _templates(keys: dict[str, str]) -> dict[str, str]:
    """Prompt texts by their config key (key -> file path in the config)."""
    return {key: P.read_template(path, key) for key, path in keys.items()}


def _study_a_templates(config: dict[str, Any], alignment: bool, mit: bool) -> dict[str, str]:
    keys = {f"vim.prompts.{k}": p for k, p in config["vim"]["prompts"].items()}
    keys["icl.template"] = config["icl"]["template"]
    keys |= {
        f"benchmarks.{b}.template": config["benchmarks"][b]["template"]
        for b in config["benchmarks"]["select"] + ([P.PVQ] if alignment else [])
    }
    keys |= {f"judges.templates.{k}": p for k, p in config["judges"]["templates"].items()}
    if mit:
        keys |= {
            f"mitigation.templates.{k}": p for k, p in config["mitigation"]["templates"].items()
        }
    return _templates(keys)


def _studyb_templates(config: dict[str, Any], sbp: sbplan.Plan) -> dict[str, str]:
    sb = config["studyb"]
    keys = {}
    if sbp.enabled:
        keys["extract"] = sb["extract"]["template"]
    if sbp.verify:
        keys["verify"] = sb["verify"]["template"]
    if sbp.eval:
        keys["induction"] = sb["eval"]["induction_template"]
        keys |= {f"judge.{k}": p for k, p in sb["judge"]["templates"].items()}
    # Study B's texts carry their own names; errors name their config keys.
    key_of = {
        "extract": "studyb.extract.template",
        "verify": "studyb.verify.template",
        "induction": "studyb.eval.induction_template",
    }
    return {
        k: P.read_template(p, key_of.get(k, f"studyb.judge.templates.{k.removeprefix('judge.')}"))
        for k, p in keys.items()
    }


def _needed_datasets(config: dict[str, Any], dists: dict[str, Any], alignment: bool) -> set[str]:
    """Only the datasets this config needs must be obtainable."""
    needed = set(config["benchmarks"]["select"]) | ({P.PVQ} if alignment else set())
    if config["vim"]["enabled"] and dists:
        needed |= {"touche", "touche_stage2_train", "touche_stage2_valid"}
    if any(s["kind"] == "realistic" for s in dists.values()):
        needed.add("ess")
    for b in config["benign"]["select"]:
        needed |= {b} | ({"grammar_valid"} if b == "grammar" else set())
    return needed


@dataclass
class Plan:
    """Everything a config asks for, built once (see `build`)."""

    config: dict[str, Any]
    dists: dict[str, dict[str, Any]]
    subjects: list[P.Subject]
    pvq_subjects: list[P.Subject]
    mit_runs: list[dict[str, Any]]
    mit_enabled: bool
    templates: dict[str, str]
    data: dict[str, tuple[str, Any]]
    sb: sbplan.Plan
    sb_templates: dict[str, str]
    gen_items: list[P.GenItem] = field(default_factory=list)
    sb_items: list[P.GenItem] = field(default_factory=list)
    groups: dict[str, dict[str, list[P.GenItem]]] = field(default_factory=dict)
    group_of_item: dict[tuple[str, str, str], str] = field(default_factory=dict)
    sb_subject_of: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    judges: dict[str, JudgeSpec] = field(default_factory=dict)
    # training.subjects_per_job > 1: VIM training job groups, id -> distributions
    train_groups: dict[str, list[str]] = field(default_factory=dict)
    # judges.agreement: the second judge per benchmark compared (none when it is off)
    agreement: dict[str, agreement_plan.AgreementSpec] = field(default_factory=dict)

    @property
    def benchmarks(self) -> list[str]:
        return self.config["benchmarks"]["select"]

    def agreement_of(self, benchmark: str) -> agreement_plan.AgreementSpec:
        """judges.agreement's comparison on a benchmark (rules/agreement.smk)."""
        return agreement_plan.spec_of(self.agreement, benchmark)

    @property
    def mit_from_correlations(self) -> bool:
        return self.config["mitigation"]["pairs_from"] == "correlations"

    def metric_settings(self, benchmark: str) -> dict[str, Any]:
        """The config settings a benchmark's metrics take (e.g. RTP's threshold)."""
        fn = benchmarks.get(benchmark).metric_settings
        return fn(self.config) if fn else {}

    # --- groups: one generate/judge job per group of subjects --------------------------

    def group_of(self, benchmark: str, model: str, condition: str) -> str:
        """The group that generates subject (model, condition) on a benchmark."""
        key = (benchmark, model, condition)
        if key in self.group_of_item:
            return self.group_of_item[key]
        if self.mit_from_correlations and is_mitigation(benchmark, condition):
            return P.single_group(model, condition)  # known after the correlations
        raise ValueError(
            f"valueharms: no subject {model} / {condition} on {benchmark} in this config"
        )

    def group_items(self, benchmark: str, group: str) -> list[P.GenItem]:
        """The items of a group (a run-time mitigation run: just it)."""
        items = self.groups.get(benchmark, {}).get(group)
        if items is not None:
            return items
        model, condition = P.split_single_group(group)
        return [P.GenItem(benchmark, model, condition, "mitigation")]

    def group_adapters(self, benchmark: str, group: str) -> list[str]:
        items = self.group_items(benchmark, group)
        return list(dict.fromkeys(a for it in items if (a := P.adapter_dir(it.model_id))))

    def group_members(self, benchmark: str, group: str) -> list[dict[str, Any]]:
        return [self.member_params(it) for it in self.group_items(benchmark, group)]

    def member_params(self, it: P.GenItem) -> dict[str, Any]:
        """One member of a generate job: valueharms.generate.Member fields, with `adapter`
        the adapter's directory, plus `icl` (the distribution file the job builds the ICL
        profile from) and `pairs` (a mitigation run whose prompt the job reads from the
        correlation stage's pairs file). Prompt texts are params, so editing one reruns
        exactly the groups that use it."""
        m: dict[str, Any] = {
            "model_id": it.model_id,
            "condition": it.condition,
            "adapter": P.adapter_dir(it.model_id),
            "system": None,
            "categories": None,
            "chat_template": None,
            "temperature": None,
            "icl": None,
            "pairs": False,
        }
        sb = self.sb_subject_of.get((it.benchmark, it.model_id, it.condition))
        if sb is not None:  # Study B: chat-template rule, induction prompt, temperature
            m["chat_template"] = sb.chat_template
            if sb.prompted:
                m["system"] = induction.system_prompt(sb.value, self.sb_templates["induction"])
            if sb.temperature != self.config["benchmarks"][it.benchmark]["temperature"]:
                m["temperature"] = sb.temperature
        elif it.condition.startswith("icl-"):
            m["icl"] = distribution_file(it.condition.removeprefix("icl-"))
        elif is_mitigation(it.benchmark, it.condition) and self.mit_from_correlations:
            m["pairs"] = True
        elif is_mitigation(it.benchmark, it.condition):
            r = mitigation.find_run(self.mit_runs, it.model_id, it.condition)
            m["system"] = mitigation.system_prompt(
                r["setting"], r["value"], self.mitigation_templates()
            )
            m["categories"] = list(r["categories"])
        return m

    def subject_table(self) -> list[dict[str, Any]]:
        """Study A's subjects as rows (a param of the stats and report jobs)."""
        keys = ("model_id", "condition", "model_type", "distribution", "label")
        return [{k: getattr(s, k) for k in keys} for s in self.subjects]

    def train_group_of(self, dist: str) -> str:
        """The training job group that trains distribution `dist` (grouped training)."""
        for gid, members in self.train_groups.items():
            if dist in members:
                return gid
        raise ValueError(f"valueharms: no VIM distribution {dist} in this config")

    # --- mitigation ---------------------------------------------------------------------

    def mitigation_plan(self, members: list[dict[str, Any]]) -> dict[str, Any] | None:
        """What a generate job needs to rebuild its members' runs from the pairs file
        (pairs from correlations); None when no member is such a run."""
        if not any(m["pairs"] for m in members):
            return None
        return {"models": self.mitigation_models(), "templates": self.mitigation_templates()}

    def mitigation_templates(self) -> dict[str, str]:
        return {
            k: self.templates[f"mitigation.templates.{k}"]
            for k in self.config["mitigation"]["templates"]
        }

    def mitigation_models(self) -> dict[str, Any]:
        vanilla, vim = P.mitigation_models(self.config, self.dists)
        return {"vanilla": vanilla, "vim": {m: list(v) for m, v in vim.items()}}

    def mitigation_runs_from(self, pairs_file: str | None) -> list[dict[str, Any]]:
        """The runs: from config, or (pairs from correlations) from the pairs file."""
        if not self.mit_from_correlations:
            return self.mit_runs
        assert pairs_file is not None
        with open(pairs_file, encoding="utf-8") as fh:
            pairs = [(p["value"], p["category"]) for p in json.load(fh)]
        return mitigation.plan_runs(pairs, *P.mitigation_models(self.config, self.dists))

    # --- what the report says beside Study B's tables ---------------------------------

    def studyb_report_info(self) -> dict[str, Any] | None:
        """What the report's Study B section says beside the tables (None when B is off)."""
        if not self.sb.eval:
            return None
        sb = self.config["studyb"]
        notes = []
        if sb["extract"]["mode"] == "choice":
            notes.append(
                "IssueBench values: the extractor picked the likeliest one of the target "
                "values (choice mode: a forced choice, no open set and no none)."
            )
        if sb["judge"]["mode"] == "choice":
            notes.append(
                "Refusal and anthropomorphism: the judge picked the likelier verdict "
                "(choice mode; one yes/no question per behaviour)."
            )
        return {
            "judges": {b: self.judges[b].name for b in self.sb.eval_benchmarks},
            "main_beta": sbplan.main_beta(self.config),
            "models": self.sb.models,
            "values": list(self.sb.values.values()),
            "default_temperature": self.config["benchmarks"][sbplan.EXPRESSION]["temperature"],
            "benchmarks": self.sb.eval_benchmarks,
            "qa": {"enabled": sb["qa"]["enabled"], "tasks": sb["qa"]["tasks"]},
            "notes": notes,
        }


def is_mitigation(benchmark: str, condition: str) -> bool:
    """Whether (benchmark, condition) names a mitigation run (mit-* on its benchmark)."""
    return benchmark == mitigation.BENCHMARK and condition.startswith(mitigation.PREFIX)


def distribution_file(name: str) -> str:
    return f"{P.RESULTS}/data/distributions/{name}.parquet"


def build(config: dict[str, Any]) -> Plan:
    """The plan of a validated config. Raises ConfigError (naming the key) or DataError
    (naming the dataset) with a one-line message."""
    from valueharms.data.sources import resolve

    P.check_models(config)
    P.check_benchmarks(config)
    dists = P.distribution_specs(config)
    subjects = P.subjects(config, dists)
    # The PVQ-40 check asks every subject that has (or is) a target distribution.
    pvq_subjects = (
        [s for s in subjects if s.model_type in ("vanilla", "icl", "vim")]
        if config["alignment"]["enabled"]
        else []
    )
    mit_runs = P.mitigation_runs(config, dists)
    mit = config["mitigation"]
    mit_enabled = bool(mit_runs) or (
        mit["enabled"]
        and mit["pairs_from"] == "correlations"
        and mitigation.BENCHMARK in config["benchmarks"]["select"]
    )
    templates = _study_a_templates(config, bool(pvq_subjects), mit_enabled)
    needed = _needed_datasets(config, dists, bool(pvq_subjects))
    data = {name: resolve(name, config, DOWNLOAD_DIR) for name in sorted(needed)}
    sbp = sbplan.build(config, DOWNLOAD_DIR)
    if sbp.eval:
        templates |= _study_a_templates_for(config, sbp.eval_benchmarks)
    plan = Plan(
        config=config,
        dists=dists,
        subjects=subjects,
        pvq_subjects=pvq_subjects,
        mit_runs=mit_runs,
        mit_enabled=mit_enabled,
        templates=templates,
        data=data,
        sb=sbp,
        sb_templates=_studyb_templates(config, sbp),
    )
    plan.sb_items = sbplan.eval_items(sbp.eval)
    plan.gen_items = (
        P.generation_items(subjects, plan.benchmarks, pvq_subjects, mit_runs) + plan.sb_items
    )
    for s in sbp.eval:
        plan.sb_subject_of.setdefault((s.benchmark, s.model_id, s.condition), s)
    plan.groups = P.group_items(plan.gen_items, config["generation"]["subjects_per_job"])
    plan.group_of_item = P.group_index(plan.groups)
    if config["training"]["subjects_per_job"] > 1 and config["vim"]["enabled"]:
        plan.train_groups = P.train_groups(dists, config["training"]["subjects_per_job"])
    plan.judges = {
        b: judge_spec(b, config, plan.templates, plan.sb_templates, sbp)
        for b in (*P.BENCHMARKS, *sbp.eval_benchmarks)
    }
    plan.agreement = agreement_plan.build(config, plan.judges, bool(subjects))
    return plan


def _study_a_templates_for(config: dict[str, Any], benchmarks: list[str]) -> dict[str, str]:
    """Study B's evaluation benchmarks' prompt templates (same keys as Study A's)."""
    return _templates(
        {f"benchmarks.{b}.template": config["benchmarks"][b]["template"] for b in benchmarks},
    )
