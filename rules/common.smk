# Validate the config against config/schema.yaml (filling defaults), and plan what the
# config asks for: distributions, subjects, datasets, templates. Input functions too.
import sys

from valueharms import __version__
from valueharms import plan
from valueharms.config import ConfigError, load_yaml, validate
from valueharms.data.sources import DataError, resolve
from valueharms.hashing import code_hash, sha256_json
from valueharms.judge.run import judge_name_for

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
    # Only the datasets this config needs must be obtainable.
    NEEDED = set(BENCHMARKS)
    if config["vim"]["enabled"] and DISTS:
        NEEDED |= {"touche", "touche_stage2_train", "touche_stage2_valid"}
    if any(s["kind"] == "realistic" for s in DISTS.values()):
        NEEDED.add("ess")
    for b in config["benign"]["select"]:
        NEEDED |= {b} | ({"grammar_valid"} if b == "grammar" else set())
    DATA = {name: resolve(name, config, "results/data/raw") for name in sorted(NEEDED)}
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
    return f"results/{stage}/{benchmark}/{s.model_id}/{s.condition}.parquet"


def base_of(w):
    """Base model id of a `{model}` wildcard (smollm2-135m/vim/Ach -> smollm2-135m)."""
    return w.model.split("/")[0]


def icl_system(w):
    """The in-context baseline's system prompt is built from its distribution file."""
    if w.condition.startswith("icl-"):
        return distribution_file(w.condition.removeprefix("icl-"))
    return []


def judge_kind(benchmark):
    """Which judge scores a benchmark: toxicity scorer, regard classifier or the LLM."""
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


def llm_judge_param(w, value):
    """`value` for jobs the LLM judges; None otherwise, so its settings do not rerun them."""
    return value if judge_kind(w.benchmark) == "llm" else None


def judge_model_input(w):
    if judge_kind(w.benchmark) != "llm" or plan.is_api(config, JUDGE_LLM):
        return []
    return plan.base_dir(JUDGE_LLM)


def judge_template(benchmark):
    key = {"holisticbiasr": "regard"}.get(benchmark, benchmark)
    return (
        template(f"judges.templates.{key}") if judge_kind(benchmark) == "llm" else None
    )
