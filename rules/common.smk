# Validate the config against config/schema.yaml (filling defaults) and build the plan
# (valueharms.plan.build): what is generated, judged and trained, from which data and
# prompt texts. Below: one-line lookups into it and the rules' input functions.
import atexit
import sys

from valueharms import benchmarks, plan, preflight, worker
from valueharms.config import ConfigError, deep_merge, load_yaml, validate
from valueharms.data.sources import DataError
from valueharms.hashing import code_hash, sha256_json
from valueharms.job import Job, log_here
from valueharms.mitigation import BENCHMARK as MIT_BENCHMARK
from valueharms.planner import MIT_PAIRS_FILE, distribution_file
from valueharms.studyb import plan as sbplan
from valueharms.train import groups as train_groups

# No --configfile: run the demo, with any --config key=value on top (deep-merged; here
# `config` holds only those). With a --configfile the demo plays no part. (A `configfile:`
# directive would be deep-merged with the user's --configfile, so a study config would
# inherit the demo's settings.)
if not workflow.config_settings.configfiles:
    _with_demo = deep_merge(load_yaml("config/demo.yaml"), config)
    config.clear()
    config.update(_with_demo)

try:
    config = validate(config)
    PLAN = plan.build(config)
except (ConfigError, DataError) as err:
    sys.exit(f"valueharms: {err}")

# Preflight (valueharms.preflight): printed at exit, so after a dry run's plan; a real run
# stops before its first job on a problem (onstart). Jobs re-parse this file: they skip it.
if workflow.exec_mode.name == "DEFAULT" and (PREFLIGHT := preflight.summary(PLAN)):
    atexit.register(print, PREFLIGHT, file=sys.stderr)

DISTS, SUBJECTS, BENCHMARKS = PLAN.dists, PLAN.subjects, PLAN.benchmarks
PVQ_SUBJECTS, DATA, TEMPLATES = PLAN.pvq_subjects, PLAN.data, PLAN.templates
MIT_ENABLED, MIT_FROM_CORRELATIONS = PLAN.mit_enabled, PLAN.mit_from_correlations
SB, SBP, SB_TEMPLATES = config["studyb"], PLAN.sb, PLAN.sb_templates
GEN_ITEMS, SB_ITEMS = PLAN.gen_items, PLAN.sb_items
CONFIG_HASH = sha256_json(config)[:16]
JUDGE_NAMES = {b: j.name for b, j in PLAN.judges.items()}
# The vllm backend brings its own CUDA torch and transformers pins: its own env.
GENERATE_ENV = "../envs/generate{}.yaml".format(
    "-vllm" if config["generation"]["backend"] == "vllm" else ""
)


def res(stage, key):
    """Resource value for a stage; rules read their mem/runtime/gpu/threads here."""
    return config["resources"][stage][key]


def dataset(name):
    """Path of a dataset: a local file, or the file its download job will write."""
    return DATA[name][0]


def template(key):
    return TEMPLATES[key]


def code(*roots):
    """Hash of the import closure of a rule's script (or `run:` modules): its `code` param."""
    return code_hash(*roots, base=workflow.basedir)


def model_spec(base):
    return config["models"][base]


def backend_settings(model, kind):
    return plan.backend_settings(config, model, kind)


def adapter_input(model):
    path = plan.adapter_dir(model)
    return [path] if path else []


def subject_path(stage, benchmark, s):
    return plan.subject_file(stage, benchmark, s.model_id, s.condition)


# ---------------------------------------------------------------- job groups
# A generate (or judge) job serves a group of subjects of one base model, benchmark and
# family (valueharms.plan.group_items): the base is loaded once and every adapter of the
# group rides on it. Each group writes results/groups/<stage>/<benchmark>/<group>.parquet;
# one local job per subject cuts its rows out to results/<stage>/<benchmark>/<model>/
# <condition>.parquet, the per-subject files every later stage reads.
def group_file(stage):
    """Input function: the group table a subject's rows are cut from."""
    return lambda w: plan.group_path(
        stage, w.benchmark, PLAN.group_of(w.benchmark, w.model, w.condition)
    )


def group_base(w):
    return PLAN.group_items(w.benchmark, w.group)[0].base


def group_adapters(w):
    return PLAN.group_adapters(w.benchmark, w.group)


def group_members(w):
    return PLAN.group_members(w.benchmark, w.group)


def group_distributions(w):
    """Distribution files the group's ICL members build their profiles from."""
    return [m["icl"] for m in group_members(w) if m["icl"]]


def mitigation_pairs_input(w):
    return MIT_PAIRS_FILE if PLAN.mitigation_plan(group_members(w)) else []


def mitigation_judgments(w):
    """Judgments of the mitigation runs: from config, or from the correlation checkpoint."""
    pairs = (
        checkpoints.mitigation_pairs.get().output[0] if MIT_FROM_CORRELATIONS else None
    )
    return [
        plan.subject_file("judgments", MIT_BENCHMARK, r["model_id"], r["condition"])
        for r in PLAN.mitigation_runs_from(pairs)
    ]


# ---------------------------------------------------------------- judges
def judge(w):
    """The judge of w.benchmark (valueharms.judge.select.JudgeSpec)."""
    return PLAN.judges[w.benchmark]


def judge_spec(w):
    """The LLM judge's model spec; None for a scorer, so LLM settings do not rerun it."""
    return model_spec(judge(w).model) if judge(w).model else None


def judge_backend_settings(w):
    j = judge(w)
    return backend_settings(j.model, j.settings["backend"]) if j.model else None


def judge_model_input(w):
    model = judge(w).model
    return [] if model is None or plan.is_api(config, model) else plan.base_dir(model)
