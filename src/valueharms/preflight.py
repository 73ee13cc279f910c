"""What a run will need, checked before its first job (issue 21; METHODS: judges).

Planning needs no keys and no user files, so a dry run shows the whole plan. Before a
real run, `problems` lists what would fail late (an API model's key variable unset, a
classifier that is neither a directory nor a hub id in the local cache, a prompt
template with a field its step does not fill), one line per problem naming the config
key; `missing_data` lists user-supplied files not found (their fetch jobs fail with the
same message, the rest of the run goes on).
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from valueharms.planner import Plan

# Fields each step fills in its prompt templates (a template may use fewer).
_FIELDS = {
    "vim.prompts.stage1_prompt": {"conclusion"},
    "vim.prompts.stage1_prompt_negative": {"conclusion"},
    "vim.prompts.stage1_positive": {"agree", "premise", "conclusion"},
    "vim.prompts.stage1_negative": {"agree", "premise", "conclusion"},
    "vim.prompts.stage2_prompt": {"options", "statement"},
    "vim.prompts.stage2_answer": {"importance", "score", "value"},
    "icl.template": {"profile"},
    "mitigation.templates.safety": set(),
    "mitigation.templates.value": {"value", "description"},
    "mitigation.templates.dual": {"value", "description"},
    "studyb.extract.template": {"transcript"},
    "studyb.verify.template": {"transcript", "labels"},
    "studyb.eval.induction_template": {"value"},
    "studyb.judge.templates.refusal": {"instruction", "response"},
    "studyb.judge.templates.anthro": {"behaviours", "prompt", "response"},
    "studyb.judge.templates.anthro_behaviour": {"behaviour", "definition", "prompt", "response"},
}
_SB_KEYS = {
    "extract": "studyb.extract.template",
    "verify": "studyb.verify.template",
    "induction": "studyb.eval.induction_template",
    "judge.refusal": "studyb.judge.templates.refusal",
    "judge.anthro": "studyb.judge.templates.anthro",
    "judge.anthro_behaviour": "studyb.judge.templates.anthro_behaviour",
}


def _allowed(key: str) -> set[str] | None:
    """The fields a template under config key `key` may use; None: not checked."""
    from valueharms import benchmarks

    if key in _FIELDS:
        return _FIELDS[key]
    if key.startswith("benchmarks.") and key.endswith(".template"):
        return {"prompt"}
    if key.startswith(("judges.templates.", "judges.agreement.second.templates.")):
        name = key.rsplit(".", 1)[1]
        for b in benchmarks.all_benchmarks():
            v = b.verdicts
            if v is not None and (v.template_key or b.name) == name:
                return set(v.fields("p", "r"))
    return None


def template_problems(key: str, text: str) -> list[str]:
    """A template that cannot render with the fields its step fills, in one line."""
    try:
        used = {f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(text) if f}
    except ValueError as err:
        return [f"{key}: the template does not parse as a format string ({err})"]
    allowed = _allowed(key)
    if allowed is None or used <= allowed:
        return []
    extra = ", ".join(sorted(used - allowed))
    can = ", ".join(f"{{{f}}}" for f in sorted(allowed)) or "no fields"
    return [f"{key}: the template uses {{{extra}}}; it can use {can}"]


_MODEL_KEY = {  # judge kind -> the config key that names its model
    "llm": "judges.llm.model",
    "values": "studyb.extract.model",
    "refusal": "studyb.judge.model",
    "anthro": "studyb.judge.model",
}


Problem = tuple[frozenset[str], str]  # the rules whose jobs would fail, and the line


def _api_models(plan: Plan) -> Iterator[tuple[str, str, str]]:
    """(config key that names it, model, rule that calls it) for every model of the run."""
    yield "base_model", plan.config["base_model"], "generate"
    for spec in plan.judges.values():
        if spec.model:
            yield _MODEL_KEY.get(spec.kind, f"judges ({spec.name})"), spec.model, "judge"
    for agreement in plan.agreement.values():  # judges.agreement's second judge
        yield "judges.agreement.second.model", agreement.second.model, "agreement"
    if plan.sb.enabled and plan.sb.extract_model:
        yield "studyb.extract.model", plan.sb.extract_model, "studyb_extract"
    if plan.sb.enabled and plan.sb.verify and plan.sb.verify_model:
        yield "studyb.verify.model", plan.sb.verify_model, "studyb_verify"


def _local(spec: dict[str, Any]) -> bool:
    """An endpoint on this machine (a local vLLM server) needs no key: the openai backend
    sends a dummy one there."""
    from urllib.parse import urlsplit

    from valueharms.llm.openai_backend import LOCAL_HOSTS

    return urlsplit(spec.get("base_url") or "").hostname in LOCAL_HOSTS


def key_problems(plan: Plan, env: dict[str, str]) -> list[Problem]:
    """API models and the Perspective scorer whose key variable is unset."""
    config, where_of, rules_of = plan.config, {}, {}
    for where, model, rule in _api_models(plan):
        if (config["models"].get(model) or {}).get("source") == "api":
            where_of.setdefault(model, where)
            rules_of.setdefault(model, set()).add(rule)
    out: list[Problem] = []
    for model, where in where_of.items():
        var = config["models"][model].get("api_key_env") or "OPENAI_API_KEY"
        if not env.get(var, "").strip() and not _local(config["models"][model]):
            line = f"{where}: {model} (models.{model}.api_key_env): environment variable {var} "
            out.append((frozenset(rules_of[model]), line + "is not set"))
    tox = config["judges"]["toxicity"]
    scored = any(spec.kind == "toxicity" for spec in plan.judges.values())
    if scored and tox["kind"] == "perspective" and not env.get(tox["api_key_env"], "").strip():
        line = f"judges.toxicity.api_key_env: environment variable {tox['api_key_env']} is not set"
        out.append((frozenset({"judge"}), line))
    return out


def _classifier_problem(key: str, settings: dict[str, Any]) -> str | None:
    path, hf_id = settings.get("path"), settings.get("hf_id")
    if path:
        return None if Path(path).is_dir() else f"{key}.path: no model directory at {path}"
    if hf_id:
        return _hub_problem(key, hf_id, settings.get("revision"))
    return f"{key}: kind hf_classifier needs a path (a model directory) or an hf_id"


def _hub_problem(key: str, hf_id: str, revision: str | None) -> str | None:
    """A hub classifier must be in the local cache when the hub is off (HF_HUB_OFFLINE)."""
    if not os.environ.get("HF_HUB_OFFLINE"):
        return None  # online: the judge job downloads it at the pinned revision
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(hf_id, revision=revision, local_files_only=True)
    except Exception:
        where = f"{hf_id}@{revision or 'main'}"
        return f"{key}.hf_id: {where} is not in the local cache (HF_HUB_OFFLINE is set)"
    return None


def classifier_problems(plan: Plan) -> list[Problem]:
    judges, out = plan.config["judges"], set()
    for spec in plan.judges.values():
        if spec.kind in ("toxicity", "regard") and spec.settings.get("kind") == "hf_classifier":
            if problem := _classifier_problem(f"judges.{spec.kind}", judges[spec.kind]):
                out.add(problem)
    return [(frozenset({"judge"}), p) for p in sorted(out)]


def problems(
    plan: Plan, env: dict[str, str] | None = None, rules: set[str] | None = None
) -> list[str]:
    """Everything that would stop a job of this run late, one line each; with `rules`,
    only what the jobs of those rules need (a data-only target needs no API key)."""
    env = dict(os.environ) if env is None else env
    texts = {**plan.templates, **{_SB_KEYS.get(k, k): t for k, t in plan.sb_templates.items()}}
    texts |= {a.template_key: a.second.template for a in plan.agreement.values()}
    found = key_problems(plan, env) + classifier_problems(plan)
    out = [line for needs, line in found if rules is None or needs & rules]
    for key, text in sorted(texts.items()):
        out += template_problems(key, text)
    return out


def missing_data(plan: Plan) -> list[str]:
    """User-supplied datasets not found: their fetch jobs will fail with this message."""
    from valueharms.data.sources import CATALOGUE, missing_message, source

    data = {**plan.data, **plan.sb.data}
    out = []
    for name, (_, needs_download) in sorted(data.items()):
        src = source(name, plan.config.get("datasets")) if name in CATALOGUE else None
        if needs_download and src is not None and not src.url:
            out.append(missing_message(name, src))
    return out


def summary(plan: Plan, env: dict[str, str] | None = None, rules: set[str] | None = None) -> str:
    """The preflight's lines as printed after a dry run and before a real one."""
    lines = [f"  - {p}" for p in problems(plan, env, rules)]
    head = ["valueharms preflight: a run that reaches these jobs stops before its first job:"]
    head = [*head, *lines] if lines else []
    missing = [f"  - {m}" for m in missing_data(plan)]
    if missing:
        head += ["valueharms preflight: user-supplied files not found (their jobs will fail):"]
        head += missing
    return "\n".join(head)


def check(plan: Plan, rules: set[str] | None = None) -> None:
    """Stop a real run before its first job when `problems` finds any for the rules of
    the jobs it will run (onstart)."""
    if problems(plan, rules=rules):
        raise SystemExit(summary(plan, rules=rules))
