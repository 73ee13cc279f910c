"""Study B's published figures (Arora et al., seed 004), matched to this run's setup.

The figures live in one data file (resources/published/study_b.yaml; config key
studyb.report.published), with the setup they were measured on (`setup`) and, per table,
what its numbers depend on (`needs`). The report's Study B section shows a table's
published columns only when this run has every one of those needs, and otherwise says
what differs (the file's header states the rule). A table is shown whole or not at all.

What the run is comes from the report's `studyb_info["published"]`
(valueharms.studyb.plan.published_info): the file's path and `run`, the run's Study B
setup (trained models and their Hugging Face ids, values, betas, extractor, verifier,
sources, ORPO and temperature runs, QA tasks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = "resources/published/study_b.yaml"
# The tables a block of the report shows a published column for (Table 3 is data only).
SHOWN = ("table_1", "table_2", "table_5", "table_6", "table_7", "table_8", "table_10", "table_11")


def table_label(key: str) -> str:
    """`table_5` -> "Table 5"."""
    return "Table " + key.split("_", 1)[1]


def tables_label(keys: Sequence[str]) -> str:
    """[table_1, table_2, table_5] -> "Tables 1, 2 and 5"."""
    nums = [k.split("_", 1)[1] for k in keys]
    if len(nums) == 1:
        return f"Table {nums[0]}"
    return f"Tables {', '.join(nums[:-1])} and {nums[-1]}"


def _f(x: Any) -> float:
    return float(x)


def _same(a: Any, b: Any) -> bool:
    return math.isclose(_f(a), _f(b), rel_tol=1e-9, abs_tol=1e-12)


def _names(items: Iterable[str], limit: int = 4) -> str:
    items = list(items)
    if len(items) > limit:
        return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
    return ", ".join(items)


def _fmt_beta(x: Any) -> str:
    return f"{_f(x):g}"


# ---------------------------------------------------------------- the file


def load(path: str | Path) -> dict[str, Any]:
    """The published file, checked: every table names known needs. Raises ValueError."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if data.get("units") != "fraction":
        raise ValueError(f"{path}: units must be 'fraction' (our tables' unit)")
    setup = data.get("setup") or {}
    for key in ("models", "values", "betas", "main_beta", "extractor"):
        if key not in setup:
            raise ValueError(f"{path}: setup lacks {key!r}")
    for key, table in (data.get("tables") or {}).items():
        unknown = [n for n in table.get("needs") or [] if n not in CHECKS]
        if unknown or not table.get("needs"):
            raise ValueError(f"{path}: {key} needs {unknown or 'nothing'}; known: {list(CHECKS)}")
    return data


def hf_ids(model: Mapping[str, Any]) -> list[str]:
    """A published model's Hugging Face id and its accepted aliases."""
    return [str(model["hf_id"]), *(str(a) for a in model.get("also") or [])]


# ---------------------------------------------------------------- matching


@dataclass(frozen=True)
class _Run:
    """The run's Study B setup (valueharms.studyb.plan.report_setup)."""

    raw: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.raw.get(key)

    @property
    def trained(self) -> list[str]:
        return [str(m) for m in self.raw.get("trained") or []]

    def hf(self, model: str | None) -> str | None:
        if model is None:
            return None
        return (self.raw.get("models") or {}).get(model)

    @property
    def values(self) -> list[str]:
        return [str(v) for v in self.raw.get("values") or []]


def _key_of(setup: Mapping[str, Any], run: _Run) -> dict[str, str]:
    """Run model key -> the paper's name of that model (by Hugging Face id)."""
    out = {}
    for key in run["models"] or {}:
        for m in setup["models"]:
            if run.hf(key) in hf_ids(m):
                out[key] = str(m["name"])
    return out


def _models(setup: Mapping[str, Any], table: Mapping[str, Any], run: _Run) -> str | None:
    named = {_key_of(setup, run).get(k) for k in run.trained}
    missing = [str(m["name"]) for m in setup["models"] if m["name"] not in named]
    if not missing:
        return None
    n = len(setup["models"])
    if len(missing) == n:
        here = _names(f"{k} ({run.hf(k)})" if run.hf(k) != k else k for k in run.trained)
        return f"models differ (none of the paper's {n} is trained here; here: {here or 'none'})"
    return f"models differ (not trained here: {_names(missing)})"


def _models_exact(setup: Mapping[str, Any], table: Mapping[str, Any], run: _Run) -> str | None:
    why = _models(setup, table, run)
    if why:
        return why
    names = _key_of(setup, run)
    extra = [k for k in run.trained if k not in names]
    if extra:
        return (
            f"models differ (also trained here: {_names(extra)}; the table averages over "
            f"the paper's {len(setup['models'])})"
        )
    return None


def _stages(setup: Mapping[str, Any], table: Mapping[str, Any], run: _Run) -> str | None:
    kinds = run["kinds"] or {}
    names = _key_of(setup, run)
    want = {str(m["name"]): str(m["kind"]) for m in setup["models"]}
    wrong = [
        f"{k} is {kinds.get(k)}"
        for k in run.trained
        if k in names and kinds.get(k) != want[names[k]]
    ]
    return f"model kinds differ ({_names(wrong)}; studyb.eval.stages)" if wrong else None


def _table_values(setup: Mapping[str, Any], table: Mapping[str, Any]) -> list[str]:
    rows = table.get("rows") or []
    vals = [str(r["value"]) for r in rows if "value" in r]
    return vals or [str(v) for v in setup["values"]]


def _values(setup: Mapping[str, Any], table: Mapping[str, Any], run: _Run) -> str | None:
    want = _table_values(setup, table)
    missing = [v for v in want if v not in run.values]
    if not missing:
        return None
    if len(missing) > 3:
        present = len(want) - len(missing)
        return f"values differ ({present} of the paper's {len(want)} in this run)"
    return f"values differ (not in this run: {', '.join(missing)})"


def _values_exact(setup: Mapping[str, Any], table: Mapping[str, Any], run: _Run) -> str | None:
    why = _values(setup, {}, run)
    if why:
        return why
    extra = [v for v in run.values if v not in [str(x) for x in setup["values"]]]
    if extra:
        n = len(setup["values"])
        return f"values differ (also here: {_names(extra)}; the table is over the paper's {n})"
    return None


def _betas(setup: Mapping[str, Any], table: Mapping[str, Any], run: _Run) -> str | None:
    have = run["betas"] or []
    want = table.get("betas") or setup["betas"]
    missing = [b for b in want if not any(_same(b, x) for x in have)]
    return f"βs differ (no β = {', '.join(map(_fmt_beta, missing))} here)" if missing else None


def _main_beta(setup: Mapping[str, Any], table: Mapping[str, Any], run: _Run) -> str | None:
    here, want = run["main_beta"], setup["main_beta"]
    if here is not None and _same(here, want):
        return None
    here_s = _fmt_beta(here) if here is not None else "none"
    return f"main β differs ({here_s} here, the paper's {_fmt_beta(want)})"


def _extractor(setup: Mapping[str, Any], table: Mapping[str, Any], run: _Run) -> str | None:
    ext, want = run["extractor"] or {}, setup["extractor"]
    wrong_model = ext.get("hf_id") != want["hf_id"]
    wrong_mode = ext.get("mode") != want.get("mode", "generate")
    if not (wrong_model or wrong_mode):
        return None
    here = f"{ext.get('hf_id')} in {ext.get('mode')} mode"
    return f"extractor differs ({here} here; the paper's {want['hf_id']} decodes an open set)"


def _sources(setup: Mapping[str, Any], table: Mapping[str, Any], run: _Run) -> str | None:
    here, want = [str(s) for s in run["sources"] or []], [str(s) for s in setup["sources"]]
    if sorted(here) == sorted(want):
        return None
    return (
        f"preference data differ ({_names(here) or 'none'} here; the paper's: the "
        f"{len(want)} RLHFlow -standard files)"
    )


def _full_data(setup: Mapping[str, Any], table: Mapping[str, Any], run: _Run) -> str | None:
    n = run["n_per_source"]
    return None if n is None else f"preference data subsampled (studyb.n_per_source = {n})"


def _orpo(setup: Mapping[str, Any], table: Mapping[str, Any], run: _Run) -> str | None:
    want = str(setup.get("orpo_model"))
    if any(run.hf(m) == want for m in run["orpo_models"] or []):
        return None
    return f"no ORPO adapters of {want} here"


def _robustness(setup: Mapping[str, Any], table: Mapping[str, Any], run: _Run) -> str | None:
    want = str(setup.get("robustness_model"))
    temps = run["temperatures"] or []
    model = run["robustness_model"]
    if not temps:
        return "temperature runs differ (none here)"
    if run.hf(model) != want:
        return f"temperature runs differ ({model} here; the paper's {want})"
    missing = [t for t in setup.get("temperatures") or [] if not any(_same(t, x) for x in temps)]
    if missing:
        return f"temperature runs differ (no T = {', '.join(map(_fmt_beta, missing))} here)"
    return None


def _qa(setup: Mapping[str, Any], table: Mapping[str, Any], run: _Run) -> str | None:
    tasks = [str(t) for t in run["qa_tasks"] or []]
    if any(t in (table.get("columns") or {}) for t in tasks):
        return None
    return f"QA tasks differ ({_names(tasks)} here)" if tasks else "no QA in this run"


Check = Callable[[Mapping[str, Any], Mapping[str, Any], _Run], str | None]
CHECKS: dict[str, Check] = {
    "models": _models,
    "models_exact": _models_exact,
    "stages": _stages,
    "values": _values,
    "values_exact": _values_exact,
    "betas": _betas,
    "main_beta": _main_beta,
    "extractor": _extractor,
    "sources": _sources,
    "full_data": _full_data,
    "orpo": _orpo,
    "robustness": _robustness,
    "qa": _qa,
}


def differences(data: Mapping[str, Any], key: str, run: Mapping[str, Any]) -> list[str]:
    """What of table `key`'s needs this run does not have (empty: the table is shown)."""
    setup, table, r = data["setup"], data["tables"][key], _Run(run)
    out = [CHECKS[n](setup, table, r) for n in table["needs"]]
    return list(dict.fromkeys(x for x in out if x))


@dataclass(frozen=True)
class Published:
    """The published tables this run matches (`shown`) and why the others are not
    (`absent`: table key -> what differs); `error` when the file could not be read."""

    source: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    run: Mapping[str, Any] = field(default_factory=dict)
    shown: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    absent: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    def table(self, key: str) -> Mapping[str, Any] | None:
        return self.shown.get(key)

    def model_name(self, model: str) -> str | None:
        """The paper's name of a run model (by Hugging Face id), else None."""
        if not self.data:
            return None
        return _key_of(self.data["setup"], _Run(self.run)).get(model)

    def hf(self, model: str | None) -> str | None:
        return _Run(self.run).hf(model)

    def rows_by(self, key: str, col: str) -> dict[str, Mapping[str, Any]]:
        """A shown table's rows by one column's value."""
        t = self.table(key) or {}
        return {str(r[col]): r for r in t.get("rows") or [] if col in r}

    def note(self, key: str) -> str | None:
        """The block's line on its published figures: shown, or absent (saying what
        differs); None when the file could not be read (summary() says so)."""
        label = table_label(key)
        if self.error:
            return None
        if key in self.shown:
            return f"Columns marked “published”: the paper's {label}, as transcribed."
        if key in self.absent:
            why = "; ".join(self.absent[key])
            return f"No published figures beside ours (the paper's {label}): setup differs: {why}."
        return None

    def summary(self) -> list[str]:
        """The section's lines: which published tables are shown and which are not."""
        if self.error:
            return [f"No published figures are shown beside ours: {self.error}."]
        shown = [k for k in SHOWN if k in self.shown]
        absent = [k for k in SHOWN if k in self.absent]
        out = []
        if shown:
            out.append(f"Published figures beside ours ({self.source}): {tables_label(shown)}.")
        if absent:
            head = "Not shown" if shown else "No published figures are shown beside ours"
            out.append(
                f"{head}: this run's setup differs from the paper's for {tables_label(absent)} "
                "(each table says what differs)."
            )
        return out


def match(data: Mapping[str, Any], run: Mapping[str, Any]) -> Published:
    """The tables of `data` (a loaded file) whose needs this run (`run`) has."""
    shown: dict[str, Mapping[str, Any]] = {}
    absent: dict[str, list[str]] = {}
    for key, table in (data.get("tables") or {}).items():
        why = differences(data, key, run)
        if why:
            absent[key] = why
        else:
            shown[key] = table
    return Published(str(data.get("source") or ""), data, run, shown, absent)


def from_info(info: Mapping[str, Any]) -> Published | None:
    """The published figures for the report's Study B info (None: info names no file)."""
    pub = info.get("published")
    if not pub:
        return None
    path = pub.get("path") or DEFAULT_PATH
    if not Path(path).is_file():
        return Published(error=f"{path} not found")
    try:
        data = load(path)
    except (OSError, ValueError, yaml.YAMLError) as err:
        return Published(error=f"{path} could not be read ({err})")
    return match(data, pub.get("run") or {})


# ---------------------------------------------------------------- derived figures


def table5_both_mean(data: Mapping[str, Any]) -> float:
    """Table 5's Both column averaged over its models (a fraction)."""
    rows = data["tables"]["table_5"]["rows"]
    return sum(_f(r["both"]["mean"]) for r in rows) / len(rows)


def table6_mean(data: Mapping[str, Any], beta: float) -> float:
    """Table 6's column at `beta` averaged over its values (a fraction)."""
    t = data["tables"]["table_6"]
    i = next(i for i, b in enumerate(t["betas"]) if _same(b, beta))
    return sum(_f(r["shares"][i]) for r in t["rows"]) / len(t["rows"])


def mean(xs: Sequence[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else math.nan
