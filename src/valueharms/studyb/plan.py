"""What Study B's config asks for: sources, values, models and training runs (METHODS B1-B2).

Pure functions of the validated config, used by rules/studyb.smk at parse time. Nothing
here reads data or loads a model, so a dry run of all ~500 training runs stays fast.

Path conventions (all under results/):
- studyb/triplets/<source>.parquet (+ .json load report), studyb/extractions/<source>.parquet
- studyb/subsets.parquet (every value), studyb/subsets/<value>.parquet (one value: the
  training input), studyb/subset_sizes.parquet (Table 1), studyb/value_counts.parquet
- studyb/verify/{verifications,precision,baselines}.parquet + summary.json (Table 2)
- models/<model>/<method>-b<beta>/<value>/adapter: one LoRA adapter per run, so the run's
  model id `<model>/<method>-b<beta>/<value>` follows valueharms.plan.adapter_dir.

A value's path form is its normalised name with spaces as underscores ("open-mindedness",
"social_justice"); `extract.normalise` maps it back. A beta's is its shortest float form
("0.01", "0.1").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from valueharms import benchmarks
from valueharms import plan as _plan
from valueharms.config import ConfigError
from valueharms.data.sources import require_file, resolve
from valueharms.studyb.extract import normalise
from valueharms.train.preference import PreferenceConfig

RESULTS = f"{_plan.RESULTS}/studyb"
ACCURACY = "accuracy"  # the verifier's extra label beside the induced values (Listing 1)
# Keys of studyb.train that are not PreferenceConfig fields (they pick the runs).
RUN_KEYS = ("methods", "betas", "orpo_models", "orpo_betas", "use_chat_template")
# PreferenceConfig fields set per run rather than from studyb.train.
PER_RUN = ("method", "beta")
TRAIN_KEYS: tuple[str, ...] = tuple(
    f.name for f in fields(PreferenceConfig) if f.name not in PER_RUN
)
NEVER = "(?!)"  # a regex that matches nothing: the wildcard constraint of an empty choice


def value_slug(value: str) -> str:
    """A value's path form: normalised, spaces as underscores (normalise() undoes it)."""
    return normalise(value).replace(" ", "_")


def beta_tag(beta: float) -> str:
    """A beta's path form: its shortest float text (0.01 -> "0.01", 0.1 -> "0.1")."""
    return f"{float(beta):g}"


def choice_regex(items: Iterable[str]) -> str:
    """A wildcard constraint matching exactly `items` (nothing when there are none)."""
    items = list(items)
    return "|".join(re.escape(i) for i in items) if items else NEVER


def values(config: dict[str, Any]) -> dict[str, str]:
    """The target values, path form -> normalised name, in config order."""
    out: dict[str, str] = {}
    for i, v in enumerate(config["studyb"]["values"]):
        name = normalise(v)
        if not name:
            raise ConfigError(f"config key 'studyb.values[{i}]': {v!r} is empty once normalised")
        slug = value_slug(name)
        if slug in out:
            raise ConfigError(
                f"config key 'studyb.values[{i}]': {v!r} is the same value as "
                f"{out[slug]!r} once normalised"
            )
        out[slug] = name
    return out


def _model_key(config: dict[str, Any], key: str, model: str, weights: bool) -> str:
    if model not in config["models"]:
        raise ConfigError(f"config key '{key}': '{model}' is not a key of models")
    if weights and _plan.is_api(config, model):
        raise ConfigError(
            f"config key '{key}': '{model}' is served by an API; Study B trains LoRA "
            "adapters on it, so it needs weights (source embedded, hub, path or tiny_random)"
        )
    return model


def train_models(config: dict[str, Any]) -> list[str]:
    """The models that get value adapters: studyb.models, or [base_model] when empty."""
    sb = config["studyb"]
    chosen = sb["models"] or [config["base_model"]]
    key = "studyb.models" if sb["models"] else "base_model"
    return [_model_key(config, key, m, weights=True) for m in chosen]


def orpo_models(config: dict[str, Any]) -> list[str]:
    return [
        _model_key(config, "studyb.train.orpo_models", m, weights=True)
        for m in config["studyb"]["train"]["orpo_models"]
    ]


def extract_model(config: dict[str, Any]) -> str:
    """The extractor: studyb.extract.model, or base_model when null."""
    model = config["studyb"]["extract"]["model"] or config["base_model"]
    return _model_key(config, "studyb.extract.model", model, weights=False)


def verify_model(config: dict[str, Any]) -> str:
    """The verifier: studyb.verify.model, or the extractor when null."""
    model = config["studyb"]["verify"]["model"] or extract_model(config)
    return _model_key(config, "studyb.verify.model", model, weights=False)


@dataclass(frozen=True)
class Run:
    """One preference-trained adapter: a value induced into a model by a method at a beta."""

    model: str
    method: str
    beta: float
    value: str  # normalised name

    @property
    def tag(self) -> str:
        return f"{self.method}-b{beta_tag(self.beta)}"

    @property
    def slug(self) -> str:
        return value_slug(self.value)

    @property
    def model_id(self) -> str:
        return f"{self.model}/{self.tag}/{self.slug}"

    @property
    def adapter(self) -> str:
        path = _plan.adapter_dir(self.model_id)
        assert path is not None
        return path


def runs(config: dict[str, Any]) -> list[Run]:
    """Every training run: each method x model x beta x value, then the ORPO robustness
    runs (studyb.train.orpo_models x orpo_betas x value); duplicates once."""
    t = config["studyb"]["train"]
    vals = list(values(config).values())
    grid = [
        (m, method, b) for method in t["methods"] for m in train_models(config) for b in t["betas"]
    ]
    grid += [(m, "orpo", b) for m in orpo_models(config) for b in t["orpo_betas"]]
    out = [Run(m, method, float(b), v) for m, method, b in grid for v in vals]
    return list(dict.fromkeys(out))


def preference_settings(config: dict[str, Any], method: str, beta: float) -> dict[str, Any]:
    """The complete PreferenceConfig of a run, as a dict (a rule param: any change reruns)."""
    t = config["studyb"]["train"]
    settings = {"method": method, "beta": float(beta), **{k: t[k] for k in TRAIN_KEYS}}
    try:
        PreferenceConfig(**settings)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config key 'studyb.train': {err}") from err
    return settings


def train_chat(config: dict[str, Any], model: str) -> bool:
    """Whether a run's pairs go through the chat template (App. A: every value-induced
    model; a tokenizer without a template trains on raw text). With use_chat_template
    false, models.<id>.chat decides."""
    if config["studyb"]["train"]["use_chat_template"]:
        return True
    return bool(config["models"][model]["chat"])


def loader_options(config: dict[str, Any], source: str) -> dict[str, Any]:
    """Options of a source's loader (only PKU-SafeRLHF has one: which label to use)."""
    if source == "pku_saferlhf":
        return {"preference": config["studyb"]["pku_preference"]}
    return {}


def base_input(config: dict[str, Any], model: str | None) -> str | list[str]:
    """The prepared base model a job loads, as a rule input: [] (none) for an API model."""
    if model is None or _plan.is_api(config, model):
        return []
    return _plan.base_dir(model)


def conda_env(backend: str) -> str:
    """Env of an LLM job (relative to rules/): vllm brings its own torch/transformers pins."""
    return "../envs/generate-vllm.yaml" if backend == "vllm" else "../envs/judge.yaml"


def sampling(block: dict[str, Any], seed: int, names: Iterable[str] = ()) -> dict[str, Any]:
    """valueharms.llm.interface.Sampling fields of the extractor or verifier; in choice
    mode the answers to pick from: one `<answer>` per name in `names`."""
    from valueharms.studyb.extract import answer_choices

    out: dict[str, Any] = {
        "max_new_tokens": block["max_new_tokens"],
        "temperature": float(block["temperature"]),
        "seed": seed,
    }
    if block.get("mode") == "choice":
        out["choices"] = list(answer_choices(names))
    return out


def verify_labels(config: dict[str, Any]) -> list[str]:
    """The verifier's closed label set: the target values plus `accuracy` (Listing 1)."""
    return list(dict.fromkeys([*values(config).values(), ACCURACY]))


def datasets(config: dict[str, Any], download_dir: str) -> dict[str, tuple[str, bool]]:
    """(path, needs_download) of every selected source; a DataError when unobtainable.

    A configured path that does not exist fails with the message that names the key,
    the expected file, the upstream dataset, its licence and its download address.
    """
    return {name: dataset(config, name, download_dir) for name in config["studyb"]["sources"]}


def dataset(config: dict[str, Any], name: str, download_dir: str) -> tuple[str, bool]:
    """(path, needs_download) of one dataset; a configured path must exist."""
    over = (config.get("datasets") or {}).get(name) or {}
    if over.get("path"):
        require_file(name, over["path"])
    return resolve(name, config, download_dir)


# --- downstream evaluation (METHODS B3) -------------------------------------------------

# Study B's evaluation benchmarks, in the published order (valueharms.benchmarks, role
# "studyb"), and the one whose value expression is measured (the extractor judges it):
# the beta sweep, the ORPO subjects and the temperature runs are on it alone.
EVAL_BENCHMARKS: tuple[str, ...] = benchmarks.names("studyb")
EXPRESSION = benchmarks.by_judge("values")
# Those scored by Study B's LLM judge (judge_model): refusal and anthropomorphism.
LLM_JUDGED = frozenset(benchmarks.by_judge(kind) for kind in ("refusal", "anthro"))
# Those whose prompt table the studyb_prompts rule builds, and those read by their
# loader in the benchmark_prompts rule, as Study A's are (AdvBench).
OWN_PROMPTS: tuple[str, ...] = tuple(b for b in EVAL_BENCHMARKS if benchmarks.get(b).load is None)
LOADED: tuple[str, ...] = tuple(b for b in EVAL_BENCHMARKS if b not in OWN_PROMPTS)
TEMP_SEP = "+t"  # a robustness run's condition: <condition>+t<temperature>


@dataclass(frozen=True)
class EvalSubject:
    """One row of Study B's subjects table: a model under an induction setting, for one
    target value, on one benchmark. The none setting has one row per target value, all
    pointing at the same vanilla responses (model_id, condition)."""

    benchmark: str
    model: str
    kind: str  # base | post-trained (Table 7)
    setting: str  # none | prompt | train | both
    value: str  # normalised target value
    method: str | None
    beta: float | None
    temperature: float
    model_id: str
    condition: str
    chat_template: bool

    @property
    def prompted(self) -> bool:
        """Whether the value's induction prompt is the system text (prompt, both)."""
        from valueharms.studyb.induction import PROMPTED

        return self.setting in PROMPTED

    def row(self) -> dict[str, Any]:
        """The subjects-table row (valueharms.metrics.studyb)."""
        return {
            "benchmark": self.benchmark,
            "model": self.model,
            "kind": self.kind,
            "setting": self.setting,
            "value": self.value,
            "method": self.method,
            "beta": float("nan") if self.beta is None else self.beta,
            "temperature": self.temperature,
            "model_id": self.model_id,
            "condition": self.condition,
        }


def model_kind(config: dict[str, Any], model: str) -> str:
    """base | post-trained: studyb.eval.stages, else base when the model has no chat flag."""
    stage = config["studyb"]["eval"]["stages"].get(model)
    return stage or ("post-trained" if config["models"][model]["chat"] else "base")


def temperature_condition(condition: str, temperature: float) -> str:
    return f"{condition}{TEMP_SEP}{float(temperature):g}"


def main_beta(config: dict[str, Any]) -> float:
    b = float(config["studyb"]["eval"]["main_beta"])
    if b not in [float(x) for x in config["studyb"]["train"]["betas"]]:
        raise ConfigError(
            f"config key 'studyb.eval.main_beta': {b:g} is not one of studyb.train.betas "
            f"{config['studyb']['train']['betas']}"
        )
    return b


def robustness_model(config: dict[str, Any]) -> str:
    ev = config["studyb"]["eval"]
    if ev["robustness_model"]:
        model = _model_key(config, "studyb.eval.robustness_model", ev["robustness_model"], True)
        if model not in train_models(config):
            raise ConfigError(
                f"config key 'studyb.eval.robustness_model': '{model}' gets no DPO adapters "
                "(add it to studyb.models)"
            )
        return model
    return (orpo_models(config) or train_models(config))[0]


def eval_subjects(config: dict[str, Any]) -> list[EvalSubject]:
    """Every Study B subject of every selected benchmark (studyb.eval), in plan order.

    Per benchmark and trained model: the configured settings at main_beta for each value
    (the beta_sweep setting at every beta on IssueBench: Table 6); on IssueBench also the
    ORPO adapters (Table 11) and the robustness model's DPO adapters at each extra
    temperature (Table 10).
    """
    from valueharms.studyb.induction import induction_subjects

    sb, ev = config["studyb"], config["studyb"]["eval"]
    vals = list(values(config).values())
    main = main_beta(config)
    t = sb["train"]
    betas = [float(b) for b in t["betas"]]
    robust = robustness_model(config) if ev["temperatures"] or ev["robustness_model"] else None
    out: list[EvalSubject] = []

    def add(b: str, model: str, setting: str, value: str, method: str | None,
            beta: float | None, temp: float | None = None) -> None:  # fmt: skip
        is_base = not config["models"][model]["chat"]
        (s,) = induction_subjects(model, value, beta or main, method or "dpo", is_base, [setting])
        default_t = float(config["benchmarks"][b]["temperature"])
        cond = s.condition if temp is None else temperature_condition(s.condition, temp)
        out.append(
            EvalSubject(
                b,
                model,
                model_kind(config, model),
                setting,
                value,
                method,
                beta,
                default_t if temp is None else float(temp),
                s.model_id,
                cond,
                s.chat_template,
            )
        )

    for b in ev["benchmarks"]:
        for model in train_models(config):
            for v in vals:
                for setting in ev["settings"][b]:
                    if setting in ("none", "prompt"):
                        add(b, model, setting, v, None, None)
                        continue
                    sweep = b == EXPRESSION and setting == ev["beta_sweep"]
                    for beta in betas if sweep else [main]:
                        add(b, model, setting, v, "dpo", beta)
        if b != EXPRESSION:
            continue
        for model in orpo_models(config):
            for ob in t["orpo_betas"]:
                for v in vals:
                    add(b, model, ev["orpo_setting"], v, "orpo", float(ob))
        if ev["temperatures"] and robust:
            for temp in ev["temperatures"]:
                for v in vals:
                    add(b, robust, "train", v, "dpo", main, float(temp))
    return list(dict.fromkeys(out))


def eval_items(subjects: list[EvalSubject]) -> list[Any]:
    """Generation items (valueharms.plan.GenItem) of the subjects, once each; the family is
    the model id's middle part (vanilla, or the adapters' method-beta)."""
    items = [
        _plan.GenItem(s.benchmark, s.model_id, s.condition, s.model_id.split("/")[1])
        for s in subjects
    ]
    return list(dict.fromkeys(items))


def qa_subjects(config: dict[str, Any]) -> list[dict[str, Any]]:
    """lm-eval runs (Table 8): each trained model's vanilla and its DPO adapters at main_beta."""
    if not config["studyb"]["qa"]["enabled"]:
        return []
    main = main_beta(config)
    rows = []
    for model in train_models(config):
        rows.append(
            {"model": model, "model_id": f"{model}/vanilla", "value": None,
             "method": None, "beta": float("nan")}
        )  # fmt: skip
        for v in values(config).values():
            r = Run(model, "dpo", main, v)
            rows.append(
                {"model": model, "model_id": r.model_id, "value": v, "method": "dpo", "beta": main}
            )
    return rows


@dataclass
class Plan:
    """Everything rules/studyb.smk needs, computed (and checked) once at parse time."""

    enabled: bool = False
    sources: list[str] = field(default_factory=list)
    data: dict[str, tuple[str, bool]] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)  # path form -> name
    betas: dict[str, float] = field(default_factory=dict)  # path form -> beta
    runs: list[Run] = field(default_factory=list)
    extract_model: str | None = None
    verify_model: str | None = None
    verify: bool = False
    eval: list[EvalSubject] = field(default_factory=list)
    qa: list[dict[str, Any]] = field(default_factory=list)
    judge_model: str | None = None  # AdvBench / AnthroBench judge

    @property
    def eval_benchmarks(self) -> list[str]:
        return list(dict.fromkeys(s.benchmark for s in self.eval))

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.runs))

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(r.method for r in self.runs))

    def regex(self, wildcard: str) -> str:
        """Wildcard constraint of `source`, `model`, `method`, `beta` or `value`."""
        items = {
            "source": self.sources,
            "model": self.models,
            "method": self.methods,
            "beta": list(self.betas),
            "value": list(self.values),
        }[wildcard]
        return choice_regex(items)

    def local_models(self, config: dict[str, Any]) -> list[str]:
        """Models whose weights the Study B jobs load (the extractor, verifier, trainees)."""
        judged = LLM_JUDGED & set(self.eval_benchmarks)
        used = [self.extract_model, self.verify_model if self.verify else None, *self.models]
        used.append(self.judge_model if judged else None)
        return [m for m in dict.fromkeys(used) if m and not _plan.is_api(config, m)]

    def targets(self) -> list[str]:
        """Every final output of Study B (the studyb_all rule's input)."""
        if not self.enabled:
            return []
        out = [f"{RESULTS}/subsets.parquet", f"{RESULTS}/subset_sizes.parquet"]
        out.append(f"{RESULTS}/value_counts.parquet")
        if self.verify:
            out += [f"{RESULTS}/verify/precision.parquet", f"{RESULTS}/verify/summary.json"]
        return out + [r.adapter for r in self.runs]


def build(config: dict[str, Any], download_dir: str) -> Plan:
    """The plan of an enabled Study B; an empty plan when studyb.enabled is false.

    Raises ConfigError (a key) or DataError (a dataset) with a one-line message.
    """
    sb = config["studyb"]
    if not sb["enabled"]:
        return Plan()
    all_runs = runs(config)
    betas: dict[str, float] = {}
    for r in all_runs:
        if betas.setdefault(beta_tag(r.beta), r.beta) != r.beta:
            raise ConfigError(
                f"config key 'studyb.train': betas {betas[beta_tag(r.beta)]} and {r.beta} "
                f"share the path form {beta_tag(r.beta)!r}"
            )
    for method, beta in dict.fromkeys((r.method, r.beta) for r in all_runs):
        preference_settings(config, method, beta)  # a bad recipe fails now, not in a job
    subjects = eval_subjects(config)
    judge = sb["judge"]["model"] or config["judges"]["llm"]["model"]
    _model_key(config, "studyb.judge.model", judge, weights=False)
    llms = [("extract", extract_model(config)), ("judge", judge)]
    if sb["verify"]["enabled"]:
        llms.append(("verify", verify_model(config)))
    for block, model in llms:
        if sb[block]["mode"] == "choice" and _plan.is_api(config, model):
            raise ConfigError(
                f"config key 'studyb.{block}.mode': choice mode scores the answers' "
                f"likelihoods, which an API model ('{model}') does not expose; use generate"
            )
    data = datasets(config, download_dir)
    for b in dict.fromkeys(x.benchmark for x in subjects):
        data[b] = eval_dataset(config, b, download_dir)
    return Plan(
        enabled=True,
        sources=list(sb["sources"]),
        data=data,
        values=values(config),
        betas=betas,
        runs=all_runs,
        extract_model=extract_model(config),
        verify_model=verify_model(config) if sb["verify"]["enabled"] else None,
        verify=sb["verify"]["enabled"],
        eval=subjects,
        qa=qa_subjects(config),
        judge_model=judge,
    )


def prompt_templates(config: dict[str, Any], name: str) -> str | list[str]:
    """The templates file the expression benchmark's prompts are filled from, when set
    (datasets.<name>.templates_path); none for the others."""
    if name != EXPRESSION:
        return []
    return ((config.get("datasets") or {}).get(name) or {}).get("templates_path") or []


def n_templates(config: dict[str, Any], name: str) -> int | None:
    """How many templates the expression benchmark's prompts draw (eval.issuebench_templates)."""
    return config["studyb"]["eval"]["issuebench_templates"] if name == EXPRESSION else None


def eval_dataset(config: dict[str, Any], name: str, download_dir: str) -> tuple[str, bool]:
    """(path, needs_download) of an evaluation benchmark's file; IssueBench's templates file
    must exist too when set. A DataError names the config key and where to get the file."""
    over = (config.get("datasets") or {}).get(name) or {}
    check = benchmarks.get(name).check_dataset
    if check is not None:
        check(over)
    return dataset(config, name, download_dir)


# --- the report: what the published figures are matched against -------------------------


def hf_id(config: dict[str, Any], model: str) -> str:
    """A model's Hugging Face id (models.<key>.hf_id), else its API name, else its key."""
    spec = config["models"].get(model) or {}
    return str(spec.get("hf_id") or spec.get("name") or model)


def report_setup(config: dict[str, Any]) -> dict[str, Any]:
    """This run's Study B setup as valueharms.report.published_b matches it against the
    paper's (resources/published/study_b.yaml, `setup` and each table's `needs`)."""
    sb, ev = config["studyb"], config["studyb"]["eval"]
    trained, orpo = train_models(config), orpo_models(config)
    robust = robustness_model(config) if ev["temperatures"] or ev["robustness_model"] else None
    extractor = extract_model(config)
    verifier = verify_model(config) if sb["verify"]["enabled"] else None
    return {
        "models": {m: hf_id(config, m) for m in dict.fromkeys([*trained, *orpo])},
        "trained": trained,
        "kinds": {m: model_kind(config, m) for m in trained},
        "values": list(values(config).values()),
        "betas": [float(b) for b in sb["train"]["betas"]],
        "main_beta": main_beta(config),
        "extractor": {
            "model": extractor,
            "hf_id": hf_id(config, extractor),
            "mode": sb["extract"]["mode"],
        },
        "verifier": (
            None if verifier is None else {"model": verifier, "hf_id": hf_id(config, verifier)}
        ),
        "sources": list(sb["sources"]),
        "n_per_source": sb["n_per_source"],
        "orpo_models": orpo,
        "robustness_model": robust,
        "temperatures": [float(t) for t in ev["temperatures"]],
        "qa_tasks": list(sb["qa"]["tasks"]) if sb["qa"]["enabled"] else [],
    }


def published_info(config: dict[str, Any]) -> dict[str, Any]:
    """The report's `published` entry: the published file (studyb.report.published), its
    sha256 (so that editing it reruns the report) and this run's setup."""
    import hashlib
    from pathlib import Path

    path = config["studyb"]["report"]["published"]
    p = Path(path)
    digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
    return {"path": path, "sha256": digest, "run": report_setup(config)}


def with_published(info: dict[str, Any] | None, config: dict[str, Any]) -> dict[str, Any] | None:
    """The report's Study B info (valueharms.planner.Plan.studyb_report_info) with the
    published figures' entry; None stays None (Study B's evaluation is off)."""
    if info is None:
        return None
    return {**info, "published": published_info(config)}
