"""What a configuration asks for: distributions, models, subjects and their files.

Pure functions of the config, used by rules/common.smk to build the DAG at parse time.
Nothing here reads data, so a dry run of the full study stays fast.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from valueharms import VALUES, benchmarks, mitigation
from valueharms.config import ConfigError
from valueharms.data.distributions import SHORT_NAMES
from valueharms.data.distributions import realistic_name as _realistic_name
from valueharms.hashing import sha256_text

RESULTS = "results"
# Study A's safety benchmarks, and every benchmark whose prompts come from its loader
# (the PVQ-40 check too), as registered in valueharms.benchmarks.
BENCHMARKS: tuple[str, ...] = benchmarks.names("safety")
PROMPT_BENCHMARKS: tuple[str, ...] = tuple(
    b.name for b in benchmarks.all_benchmarks() if b.load is not None and b.role != "studyb"
)
# The PVQ-40 alignment check (METHODS A2) is generated like a benchmark, but parsed, not
# judged: the benchmark registered with the role "alignment".
(PVQ,) = benchmarks.names("alignment")


def extreme_specs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    d = config["distributions"]
    hi, lo = float(d["extreme"]["high"]), float(d["extreme"]["low"])
    groups = [[v] for v in VALUES] + list(d["groups"].values())
    names = [SHORT_NAMES[v] for v in VALUES] + list(d["groups"])
    for gname, members in d["groups"].items():
        unknown = [m for m in members if m not in VALUES]
        if unknown:
            raise ConfigError(
                f"config key 'distributions.groups.{gname}': unknown values {unknown}"
            )
    return {
        name: {"kind": "extreme", "scores": {v: hi if v in members else lo for v in VALUES}}
        for name, members in zip(names, groups, strict=True)
    }


def distribution_specs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every target distribution the config selects, name -> spec (ordered)."""
    d = config["distributions"]
    extremes = extreme_specs(config)
    specs: dict[str, dict[str, Any]] = dict(extremes)
    for anchor, spec in extremes.items():
        for rank in range(1, d["realistic"]["per_anchor"] + 1):
            specs[_realistic_name(anchor, rank)] = {
                "kind": "realistic",
                "anchor": anchor,
                "rank": rank,
                "anchor_scores": spec["scores"],
                "per_anchor": d["realistic"]["per_anchor"],
                "reverse_code": d["realistic"]["reverse_code"],
            }
    for name, scores in d["custom"].items():
        missing = [v for v in VALUES if v not in scores]
        if missing or set(scores) - set(VALUES):
            raise ConfigError(
                f"config key 'distributions.custom.{name}': needs exactly the 10 values "
                f"{list(VALUES)} (missing {missing})"
            )
        specs[name] = {"kind": "custom", "scores": {v: float(scores[v]) for v in VALUES}}
    if d["select"] is not None:
        unknown = [n for n in d["select"] if n not in specs]
        if unknown:
            raise ConfigError(f"config key 'distributions.select': unknown distributions {unknown}")
        specs = {n: specs[n] for n in d["select"]}
    return specs


@dataclass(frozen=True)
class Subject:
    """A model under a condition: the unit that is generated from, judged and compared."""

    model_id: str  # e.g. smollm2-135m/vim/Ach
    condition: str  # plain | icl-<distribution>
    model_type: str  # vanilla | icl | vim | benign
    distribution: str | None
    label: str

    @property
    def base(self) -> str:
        return self.model_id.split("/")[0]


def subjects(config: dict[str, Any], dists: dict[str, dict[str, Any]]) -> list[Subject]:
    base = config["base_model"]
    out: list[Subject] = []
    if config["vanilla"]["enabled"]:
        out.append(Subject(f"{base}/vanilla", "plain", "vanilla", None, "Vanilla"))
    if config["icl"]["enabled"]:
        out += [Subject(f"{base}/vanilla", f"icl-{d}", "icl", d, f"ICL {d}") for d in dists]
    if config["vim"]["enabled"]:
        out += [Subject(f"{base}/vim/{d}", "plain", "vim", d, f"VIM {d}") for d in dists]
    out += [
        Subject(f"{base}/benign/{b}", "plain", "benign", None, f"Benign {b}")
        for b in config["benign"]["select"]
    ]
    return out


def top_value(spec: dict[str, Any]) -> str | None:
    """The value a distribution is aligned to: its unique highest score (None if tied).

    Realistic distributions count as their anchor's value; group extremes have no single
    value. Custom distributions count when one value is strictly the most important.
    """
    scores = spec["anchor_scores"] if spec["kind"] == "realistic" else spec["scores"]
    best = max(scores.values())
    top = [v for v, s in scores.items() if s == best]
    return top[0] if len(top) == 1 else None


def mitigation_pairs(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(value, HEx-PHI category) pairs of the mitigation study, checked against known names."""
    pairs = []
    for i, pair in enumerate(config["mitigation"]["pairs"]):
        key = f"mitigation.pairs[{i}]"
        if pair["value"] not in VALUES:
            raise ConfigError(
                f"config key '{key}.value': unknown value {pair['value']!r}; known: {list(VALUES)}"
            )
        known = benchmarks.get(mitigation.BENCHMARK).categories
        if pair["category"] not in known:
            raise ConfigError(
                f"config key '{key}.category': unknown {mitigation.BENCHMARK} category "
                f"{pair['category']!r}; known: {list(known)}"
            )
        pairs.append((pair["value"], pair["category"]))
    return list(dict.fromkeys(pairs))


def mitigation_models(
    config: dict[str, Any], dists: dict[str, dict[str, Any]]
) -> tuple[str | None, dict[str, tuple[str, str | None]]]:
    """The models mitigation may run on: vanilla's id, and each VIM model's value."""
    m, base = config["mitigation"], config["base_model"]
    vanilla = (
        f"{base}/vanilla" if config["vanilla"]["enabled"] and "vanilla" in m["models"] else None
    )
    vim = (
        {f"{base}/vim/{d}": (d, top_value(spec)) for d, spec in dists.items()}
        if config["vim"]["enabled"] and "vim" in m["models"]
        else {}
    )
    return vanilla, vim


def mitigation_runs(
    config: dict[str, Any], dists: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Mitigation runs of the config's pairs (none when the pairs come from correlations:
    those are known only after the correlation stage)."""
    m = config["mitigation"]
    if not m["enabled"] or mitigation.BENCHMARK not in config["benchmarks"]["select"]:
        return []
    pairs = mitigation_pairs(config)
    if m["pairs_from"] == "correlations":
        return []
    return mitigation.plan_runs(pairs, *mitigation_models(config, dists))


def adapter_dir(model_id: str) -> str | None:
    """Trained adapter of a model id, or None for the plain base model."""
    parts = model_id.split("/")
    if parts[1] == "vanilla":
        return None
    return f"{RESULTS}/models/{model_id}/adapter"


def is_api(config: dict[str, Any], model: str) -> bool:
    """Whether `model` is served by an OpenAI-compatible endpoint (no local weights)."""
    return config["models"][model].get("source") == "api"


def backend_settings(config: dict[str, Any], model: str, kind: str) -> dict[str, Any]:
    """Only the settings of the backend that serves `model`: others do not rerun its jobs.
    A local backend also gets `tokenization` (it changes the token ids the model sees)."""
    if is_api(config, model):
        return {"openai": config["backends"]["openai"]}
    return {kind: config["backends"][kind], "tokenization": config["tokenization"]}


def base_dir(base: str) -> str:
    return f"{RESULTS}/models/{base}/base"


def check_models(config: dict[str, Any]) -> None:
    for key in ("base_model",):
        if config[key] not in config["models"]:
            raise ConfigError(f"config key '{key}': '{config[key]}' is not a key of models")
    if config["judges"]["llm"]["model"] not in config["models"]:
        raise ConfigError(
            f"config key 'judges.llm.model': '{config['judges']['llm']['model']}' "
            "is not a key of models"
        )
    if config["models"][config["base_model"]].get("source") == "api":
        raise ConfigError(
            f"config key 'base_model': '{config['base_model']}' is served by an API; "
            "Study A trains adapters on it, so it needs weights (source embedded, hub, path or "
            "tiny_random)"
        )
    judge = config["judges"]["llm"]
    if is_api(config, judge["model"]) and judge["mode"] == "choice":
        raise ConfigError(
            "config key 'judges.llm.mode': choice mode scores the verdicts' likelihoods, "
            f"which an API model ('{judge['model']}') does not expose; use mode: generate"
        )
    for mid, spec in config["models"].items():
        if spec.get("source") == "hub" and not spec.get("hf_id") and not spec.get("path"):
            raise ConfigError(f"config key 'models.{mid}': a hub model needs hf_id (or a path)")
        if "tiny_random" in spec and spec.get("source") != "tiny_random":
            raise ConfigError(
                f"config key 'models.{mid}.tiny_random': only for source tiny_random "
                f"(this model's source is {spec.get('source')})"
            )
        if spec.get("path") and not Path(spec["path"]).exists():
            raise ConfigError(f"config key 'models.{mid}.path': not found: {spec['path']}")


def check_benchmarks(config: dict[str, Any]) -> None:
    """Every benchmark the config names is registered (valueharms.benchmarks), and every
    dataset it names is declared (valueharms.data.sources) or a registered benchmark."""
    from valueharms.data.sources import CATALOGUE

    known = benchmarks.names()
    datasets = sorted(set(CATALOGUE) | set(known))
    for key in config.get("datasets") or {}:
        if key not in datasets:
            raise ConfigError(f"config key 'datasets.{key}': no such dataset; known: {datasets}")
    for key in config["benchmarks"]:
        if key not in ("select", "seed") and key not in known:
            raise ConfigError(
                f"config key 'benchmarks.{key}': no such benchmark; registered: {list(known)}"
            )
    for i, name in enumerate(config["benchmarks"]["select"]):
        if name not in BENCHMARKS:
            raise ConfigError(
                f"config key 'benchmarks.select[{i}]': {name!r} is not one of Study A's "
                f"benchmarks {list(BENCHMARKS)}"
            )
        if "template" not in config["benchmarks"].get(name, {}):
            raise ConfigError(
                f"config key 'benchmarks.{name}.template': a prompt template is needed"
            )


def read_template(path: str, key: str) -> str:
    """A prompt template file's text (one trailing newline stripped)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config key '{key}': prompt template not found: {path}")
    text = p.read_text(encoding="utf-8")
    return text[:-1] if text.endswith("\n") else text


def text_hash(text: str) -> str:
    return sha256_text(text)[:16]


# --- generation and judge jobs: subjects grouped per (benchmark, base, family) -------------


@dataclass(frozen=True)
class GenItem:
    """One subject (model under a condition) to generate for on one benchmark.

    `family` decides which job it shares: subjects of one base and family (vanilla, icl,
    vim, benign; a Study B method-beta) go to the same jobs, so retraining the VIM
    adapters reruns VIM jobs only.
    """

    benchmark: str
    model_id: str
    condition: str
    family: str

    @property
    def base(self) -> str:
        return self.model_id.split("/")[0]


def generation_items(
    subjects: list[Subject],
    benchmarks: list[str],
    pvq_subjects: list[Subject],
    mitigation_runs: list[dict[str, Any]],
) -> list[GenItem]:
    """Study A's generation subjects: every subject on every benchmark, the PVQ-40 check,
    and the mitigation runs known at parse time."""
    items = [
        GenItem(b, s.model_id, s.condition, s.model_type) for b in benchmarks for s in subjects
    ]
    items += [GenItem(PVQ, s.model_id, s.condition, s.model_type) for s in pvq_subjects]
    items += [
        GenItem(mitigation.BENCHMARK, r["model_id"], r["condition"], r["model_type"])
        for r in mitigation_runs
    ]
    return items


def group_items(items: list[GenItem], per_job: int) -> dict[str, dict[str, list[GenItem]]]:
    """benchmark -> group id -> its items: up to `per_job` subjects of one base and family
    per group, in plan order. A group id is `<base>/<family>-<k>` (k from 1), so appending
    a subject to the config changes the last group of its family only."""
    if per_job < 1:
        raise ValueError(f"per_job must be >= 1, got {per_job}")
    by_key: dict[tuple[str, str, str], list[GenItem]] = {}
    for it in dict.fromkeys(items):
        by_key.setdefault((it.benchmark, it.base, it.family), []).append(it)
    out: dict[str, dict[str, list[GenItem]]] = {}
    for (bench, base, family), members in by_key.items():
        for k, start in enumerate(range(0, len(members), per_job), 1):
            out.setdefault(bench, {})[f"{base}/{family}-{k}"] = members[start : start + per_job]
    return out


def train_groups(dists: Iterable[str], per_job: int) -> dict[str, list[str]]:
    """Training job groups (training.subjects_per_job): group id `vim-<k>` (k from 1) ->
    up to `per_job` distributions, in plan order, so appending a distribution to the
    config changes the last group only."""
    if per_job < 1:
        raise ValueError(f"per_job must be >= 1, got {per_job}")
    names = list(dict.fromkeys(dists))
    return {
        f"vim-{k}": names[start : start + per_job]
        for k, start in enumerate(range(0, len(names), per_job), 1)
    }


def group_index(groups: dict[str, dict[str, list[GenItem]]]) -> dict[tuple[str, str, str], str]:
    """(benchmark, model_id, condition) -> the id of the group that generates it."""
    return {
        (it.benchmark, it.model_id, it.condition): gid
        for bench in groups.values()
        for gid, members in bench.items()
        for it in members
    }


def single_group(model_id: str, condition: str) -> str:
    """Group id of a subject known only at run time (mitigation pairs from correlations):
    a group of its own, `<model_id>/<condition>` (three or more path parts)."""
    return f"{model_id}/{condition}"


def split_single_group(group: str) -> tuple[str, str]:
    model_id, _, condition = group.rpartition("/")
    return model_id, condition


def subject_file(stage: str, benchmark: str, model_id: str, condition: str) -> str:
    """A subject's own file of a stage (generations, judgments) on a benchmark."""
    return f"{RESULTS}/{stage}/{benchmark}/{model_id}/{condition}.parquet"


def item_path(stage: str, it: GenItem) -> str:
    return subject_file(stage, it.benchmark, it.model_id, it.condition)


def group_path(stage: str, benchmark: str, group: str) -> str:
    """The table one generate or judge job writes for its whole group."""
    return f"{RESULTS}/groups/{stage}/{benchmark}/{group}.parquet"


def drop_subject_files(
    benchmark: str, subjects: Iterable[tuple[str, str]], stages: Iterable[str]
) -> list[str]:
    """Remove the per-subject files a group job's output is cut into, before it runs.

    Snakemake does not rerun a missing intermediate (the group table) while the files cut
    from it are present, so a group job that fails (more failed calls than its bound) or
    is killed would otherwise leave the next run with "nothing to be done" on the old
    files. With them gone, the same command reruns the group job. Returns what it removed.
    """
    removed = []
    for stage in stages:
        for model_id, condition in dict.fromkeys(subjects):
            path = Path(subject_file(stage, benchmark, model_id, condition))
            if path.exists():
                path.unlink()
                removed.append(str(path))
    return removed


def build(config: dict[str, Any]) -> Any:
    """The typed plan of a validated config for both studies (valueharms.planner.Plan)."""
    from valueharms.planner import build as _build

    return _build(config)
