# Validate the config against config/schema.yaml (filling defaults), and plan what the
# config asks for: distributions, subjects, datasets, templates. Input functions too.
import functools
import json
import sys

from valueharms import __version__
from valueharms import mitigation, plan
from valueharms.config import ConfigError, load_yaml, validate
from valueharms.data.sources import DataError, resolve
from valueharms.hashing import code_hash, sha256_json
from valueharms.judge.run import judge_name_for, llm_judge_name
from valueharms.studyb import induction
from valueharms.studyb import plan as sbplan

# No --configfile: run the demo. (A `configfile:` directive here would be deep-merged
# with the user's --configfile, so a study config would inherit the demo's settings.)
if not config:
    config.update(load_yaml("config/demo.yaml"))

try:
    config = validate(config)
    plan.check_models(config)
    DISTS = plan.distribution_specs(config)
    SUBJECTS = plan.subjects(config, DISTS)
    BENCHMARKS = config["benchmarks"]["select"]
    TEMPLATES = {
        **{
            f"vim.prompts.{k}": plan.read_template(p, f"vim.prompts.{k}")
            for k, p in config["vim"]["prompts"].items()
        },
        "icl.template": plan.read_template(config["icl"]["template"], "icl.template"),
        **{
            f"benchmarks.{b}.template": plan.read_template(
                config["benchmarks"][b]["template"], f"benchmarks.{b}.template"
            )
            for b in BENCHMARKS
        },
        **{
            f"judges.templates.{k}": plan.read_template(p, f"judges.templates.{k}")
            for k, p in config["judges"]["templates"].items()
        },
    }
    # The PVQ-40 check asks every subject that has (or is) a target distribution.
    PVQ_SUBJECTS = (
        [s for s in SUBJECTS if s.model_type in ("vanilla", "icl", "vim")]
        if config["alignment"]["enabled"]
        else []
    )
    if PVQ_SUBJECTS:
        TEMPLATES["benchmarks.pvq.template"] = plan.read_template(
            config["benchmarks"]["pvq"]["template"], "benchmarks.pvq.template"
        )
    MIT_RUNS = plan.mitigation_runs(config, DISTS)
    MIT_ENABLED = bool(MIT_RUNS) or (
        config["mitigation"]["enabled"]
        and config["mitigation"]["pairs_from"] == "correlations"
        and "hexphi" in BENCHMARKS
    )
    if MIT_ENABLED:
        TEMPLATES.update(
            {
                f"mitigation.templates.{k}": plan.read_template(
                    p, f"mitigation.templates.{k}"
                )
                for k, p in config["mitigation"]["templates"].items()
            }
        )
    # Only the datasets this config needs must be obtainable.
    NEEDED = set(BENCHMARKS) | ({plan.PVQ} if PVQ_SUBJECTS else set())
    if config["vim"]["enabled"] and DISTS:
        NEEDED |= {"touche", "touche_stage2_train", "touche_stage2_valid"}
    if any(s["kind"] == "realistic" for s in DISTS.values()):
        NEEDED.add("ess")
    for b in config["benign"]["select"]:
        NEEDED |= {b} | ({"grammar_valid"} if b == "grammar" else set())
    DATA = {name: resolve(name, config, "results/data/raw") for name in sorted(NEEDED)}
    # Study B (rules/studyb.smk): checked and planned only when studyb.enabled.
    SB = config["studyb"]
    SBP = sbplan.build(config, "results/data/raw")
    SB_TEMPLATES = {}
    if SBP.enabled:
        SB_TEMPLATES["extract"] = plan.read_template(
            SB["extract"]["template"], "studyb.extract.template"
        )
    if SBP.verify:
        SB_TEMPLATES["verify"] = plan.read_template(
            SB["verify"]["template"], "studyb.verify.template"
        )
    if SBP.eval:
        SB_TEMPLATES["induction"] = plan.read_template(
            SB["eval"]["induction_template"], "studyb.eval.induction_template"
        )
        for b in SBP.eval_benchmarks:
            TEMPLATES[f"benchmarks.{b}.template"] = plan.read_template(
                config["benchmarks"][b]["template"], f"benchmarks.{b}.template"
            )
        for k, p in SB["judge"]["templates"].items():
            SB_TEMPLATES[f"judge.{k}"] = plan.read_template(
                p, f"studyb.judge.templates.{k}"
            )
except (ConfigError, DataError) as err:
    sys.exit(f"valueharms: {err}")

CONFIG_HASH = sha256_json(config)[:16]
JUDGE_NAMES = {b: judge_name_for(b, config["judges"]) for b in plan.BENCHMARKS}
MODELS = {s.model_id for s in SUBJECTS}


def res(stage, key):
    """Resource value for a stage; rules read their mem/runtime/gpu/threads here."""
    return config["resources"][stage][key]


def dataset(name):
    """Path of a dataset: a local file, or the file its download job will write."""
    return DATA[name][0]


def template(key):
    return TEMPLATES[key]


def template_hash(key):
    return plan.text_hash(TEMPLATES[key])


@functools.lru_cache(maxsize=None)
def code(*modules):
    """Hash of the library code behind a step; editing that code reruns the step only."""
    return code_hash(*modules)


def model_spec(base):
    return config["models"][base]


def backend_settings(model, kind):
    """Only the settings of the backend that serves `model`: others do not rerun its jobs."""
    used = "openai" if plan.is_api(config, model) else kind
    return {used: config["backends"][used]}


def adapter_input(model):
    path = plan.adapter_dir(model)
    return [path] if path else []


def subject_of(model, condition):
    for s in SUBJECTS:
        if s.model_id == model and s.condition == condition:
            return s
    raise ValueError(f"no subject {model} / {condition} in this config")


def distribution_file(name):
    return f"results/data/distributions/{name}.parquet"


def subject_table():
    return [
        {
            "model_id": s.model_id,
            "condition": s.condition,
            "model_type": s.model_type,
            "distribution": s.distribution,
            "label": s.label,
        }
        for s in SUBJECTS
    ]


def subject_path(stage, benchmark, s):
    return plan.subject_file(stage, benchmark, s.model_id, s.condition)


# ---------------------------------------------------------------- job groups
# A generate (or judge) job serves a group of subjects of one base model, benchmark and
# family (valueharms.plan.group_items): the base is loaded once and every adapter of the
# group rides on it. Each group writes results/groups/<stage>/<benchmark>/<group>.parquet;
# one local job per subject cuts its rows out to results/<stage>/<benchmark>/<model>/
# <condition>.parquet, the per-subject files every later stage reads.
SB_ITEMS = sbplan.eval_items(SBP.eval)
GEN_ITEMS = (
    plan.generation_items(SUBJECTS, BENCHMARKS, PVQ_SUBJECTS, MIT_RUNS) + SB_ITEMS
)
# Study B subjects by (benchmark, model_id, condition): their induction settings.
SB_SUBJECT_OF = {}
for _s in SBP.eval:
    SB_SUBJECT_OF.setdefault((_s.benchmark, _s.model_id, _s.condition), _s)
GROUPS = plan.group_items(GEN_ITEMS, config["generation"]["subjects_per_job"])
GROUP_OF = plan.group_index(GROUPS)


def group_of(w):
    """The group that generates subject (w.model, w.condition) on w.benchmark."""
    key = (w.benchmark, w.model, w.condition)
    if key in GROUP_OF:
        return GROUP_OF[key]
    if MIT_FROM_CORRELATIONS and is_mitigation(w):
        return plan.single_group(w.model, w.condition)  # known after the correlations
    raise ValueError(
        f"valueharms: no subject {w.model} / {w.condition} on {w.benchmark} in this config"
    )


def group_items(w):
    """The items of group w.group on w.benchmark (a run-time mitigation run: just it)."""
    items = GROUPS.get(w.benchmark, {}).get(w.group)
    if items is not None:
        return items
    model, condition = plan.split_single_group(w.group)
    return [plan.GenItem(w.benchmark, model, condition, "mitigation")]


def group_file(stage):
    """Input function: the group table a subject's rows are cut from."""
    return lambda w: plan.group_path(stage, w.benchmark, group_of(w))


def group_base(w):
    return group_items(w)[0].base


def group_adapters(w):
    return list(
        dict.fromkeys(
            a for it in group_items(w) if (a := plan.adapter_dir(it.model_id))
        )
    )


MIT_FROM_CORRELATIONS = config["mitigation"]["pairs_from"] == "correlations"
MIT_PAIRS_FILE = "results/stats/mitigation_pairs.json"


def is_mitigation(x):
    """Whether wildcards (or a plan.GenItem) name a mitigation run: HEx-PHI, mit-*."""
    return x.benchmark == "hexphi" and x.condition.startswith(mitigation.PREFIX)


def mitigation_templates():
    return {
        k: template(f"mitigation.templates.{k}")
        for k in config["mitigation"]["templates"]
    }


def member_params(it):
    """One member of a generate job: valueharms.generate.Member fields, with `adapter`
    the adapter's directory, plus `icl` (the distribution file the job builds the ICL
    profile from) and `pairs` (a mitigation run whose prompt the job reads from the
    correlation stage's pairs file). Prompt texts are params, so editing one reruns
    exactly the groups that use it."""
    m = {
        "model_id": it.model_id,
        "condition": it.condition,
        "adapter": plan.adapter_dir(it.model_id),
        "system": None,
        "categories": None,
        "chat_template": None,
        "temperature": None,
        "icl": None,
        "pairs": False,
    }
    sb = SB_SUBJECT_OF.get((it.benchmark, it.model_id, it.condition))
    if sb is not None:  # Study B: chat-template rule, induction prompt, temperature
        m["chat_template"] = sb.chat_template
        if sb.prompted:
            m["system"] = induction.system_prompt(sb.value, SB_TEMPLATES["induction"])
        if sb.temperature != config["benchmarks"][it.benchmark]["temperature"]:
            m["temperature"] = sb.temperature
    elif it.condition.startswith("icl-"):
        m["icl"] = distribution_file(it.condition.removeprefix("icl-"))
    elif is_mitigation(it) and MIT_FROM_CORRELATIONS:
        m["pairs"] = True
    elif is_mitigation(it):
        r = mitigation.find_run(MIT_RUNS, it.model_id, it.condition)
        m["system"] = mitigation.system_prompt(
            r["setting"], r["value"], mitigation_templates()
        )
        m["categories"] = list(r["categories"])
    return m


def group_members(w):
    return [member_params(it) for it in group_items(w)]


def group_distributions(w):
    """Distribution files the group's ICL members build their profiles from."""
    return [m["icl"] for m in group_members(w) if m["icl"]]


def mitigation_pairs_input(w):
    return MIT_PAIRS_FILE if any(m["pairs"] for m in group_members(w)) else []


def mitigation_plan(w):
    """What a generate job needs to rebuild its runs from the pairs file (correlations)."""
    if not any(m["pairs"] for m in group_members(w)):
        return None
    return {"models": mitigation_models(), "templates": mitigation_templates()}


def mitigation_models():
    vanilla, vim = plan.mitigation_models(config, DISTS)
    return {"vanilla": vanilla, "vim": {m: list(v) for m, v in vim.items()}}


def current_mitigation_runs():
    """The runs: from config, or from the correlation checkpoint's pairs file."""
    if not MIT_FROM_CORRELATIONS:
        return MIT_RUNS
    with open(checkpoints.mitigation_pairs.get().output[0]) as fh:
        pairs = [(p["value"], p["category"]) for p in json.load(fh)]
    return mitigation.plan_runs(pairs, *plan.mitigation_models(config, DISTS))


def mitigation_judgments(w):
    return [
        plan.subject_file("judgments", "hexphi", r["model_id"], r["condition"])
        for r in current_mitigation_runs()
    ]


# Study B's judges: IssueBench values by the extractor, AdvBench refusal and AnthroBench
# behaviours by studyb.judge.
SB_JUDGE_KIND = {"issuebench": "values", "advbench": "refusal", "anthrobench": "anthro"}
LLM_KINDS = ("llm", *SB_JUDGE_KIND.values())


def judge_kind(benchmark):
    """Which judge scores a benchmark: toxicity scorer, regard classifier or an LLM
    (llm: Study A's judges.llm; values, refusal, anthro: Study B's)."""
    if benchmark in SB_JUDGE_KIND:
        return SB_JUDGE_KIND[benchmark]
    if benchmark == "rtp":
        return "toxicity"
    if (
        benchmark == "holisticbiasr"
        and config["judges"]["regard"]["kind"] == "hf_classifier"
    ):
        return "regard"
    return "llm"


JUDGE_LLM = config["judges"]["llm"]["model"]
# The vllm backend brings its own CUDA torch and transformers pins: its own env.
GENERATE_ENV = "../envs/generate{}.yaml".format(
    "-vllm" if config["generation"]["backend"] == "vllm" else ""
)


SB_JUDGE_KEYS = ("backend", "mode", "max_new_tokens", "temperature", "batch_size")


def judge_settings(benchmark):
    """The judge's settings block (a param of the judge jobs: changing it reruns them)."""
    kind = judge_kind(benchmark)
    if kind == "values":
        return {
            **{k: SB["extract"][k] for k in SB_JUDGE_KEYS},
            "model": SBP.extract_model,
            "values": list(SBP.values.values()),
            "synonyms": SB["extract"]["synonyms"],
            "seed": SB["seed"],
        }
    if kind in ("refusal", "anthro"):
        return {
            **{k: SB["judge"][k] for k in SB_JUDGE_KEYS},
            "model": SBP.judge_model,
            "seed": SB["seed"],
        }
    return config["judges"][kind]


def judge_llm(benchmark):
    """The LLM behind a benchmark's judge, or None for a scorer or classifier."""
    return (
        judge_settings(benchmark)["model"]
        if judge_kind(benchmark) in LLM_KINDS
        else None
    )


def judge_spec(w):
    """The LLM judge's model spec; None for a scorer, so LLM settings do not rerun it."""
    model = judge_llm(w.benchmark)
    return model_spec(model) if model else None


def judge_backend_settings(w):
    model = judge_llm(w.benchmark)
    if model is None:
        return None
    return backend_settings(model, judge_settings(w.benchmark)["backend"])


def judge_model_input(w):
    model = judge_llm(w.benchmark)
    if model is None or plan.is_api(config, model):
        return []
    return plan.base_dir(model)


def judge_template(benchmark):
    kind = judge_kind(benchmark)
    if kind == "values":
        return SB_TEMPLATES["extract"]
    if kind == "refusal":
        return SB_TEMPLATES["judge.refusal"]
    if kind == "anthro":
        choice = SB["judge"]["mode"] == "choice"
        return SB_TEMPLATES["judge.anthro_behaviour" if choice else "judge.anthro"]
    key = {"holisticbiasr": "regard"}.get(benchmark, benchmark)
    return template(f"judges.templates.{key}") if kind == "llm" else None


def judge_name(benchmark):
    """The name the report shows for the judge behind a benchmark's numbers."""
    if benchmark not in SB_JUDGE_KIND:
        return JUDGE_NAMES[benchmark]
    js = judge_settings(benchmark)
    return llm_judge_name(js["model"], js["mode"])


def judge_code(benchmark):
    """Library modules behind a Study B judge beside the judge stage's own."""
    return {
        "values": ("studyb.extract",),
        "refusal": ("studyb.refusal",),
        "anthro": ("studyb.anthrobench",),
    }.get(judge_kind(benchmark), ())


def studyb_report_info():
    """What the report's Study B section says beside the tables (None when B is off)."""
    if not SBP.eval:
        return None
    notes = []
    if SB["extract"]["mode"] == "choice":
        notes.append(
            "IssueBench values: the extractor picked the likeliest one of the target "
            "values (choice mode: a forced choice, no open set and no none)."
        )
    if SB["judge"]["mode"] == "choice":
        notes.append(
            "Refusal and anthropomorphism: the judge picked the likelier verdict "
            "(choice mode; one yes/no question per behaviour)."
        )
    return {
        "judges": {b: judge_name(b) for b in SBP.eval_benchmarks},
        "main_beta": sbplan.main_beta(config),
        "models": SBP.models,
        "values": list(SBP.values.values()),
        "default_temperature": config["benchmarks"]["issuebench"]["temperature"],
        "benchmarks": SBP.eval_benchmarks,
        "qa": {"enabled": SB["qa"]["enabled"], "tasks": SB["qa"]["tasks"]},
        "notes": notes,
    }
