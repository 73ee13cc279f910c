"""Question-answering ability after value induction (Study B, B3; paper Sec. 5.3, Table 8).

The paper runs MMLU, TruthfulQA and GSM8K "from the LM-evaluation-harness library with
the default settings" and reports each value-induced model's score minus the vanilla
model's (Table 8: mean over the 15 values, standard deviation in subscript). It cites
MMLU-Pro (Wang et al. 2024a) for its MMLU row and plots MMLU_pro per value (Fig. 6).
Which lm-eval (0.4.x) task name gives which number:

| paper                       | lm-eval task    | metric (filter)                       |
|-----------------------------|-----------------|---------------------------------------|
| Table 8 "MMLU"              | `mmlu`          | acc (group, weighted by subtask size) |
| Table 8 "MMLU", Fig. 6      | `mmlu_pro`      | exact_match (custom-extract)          |
| Table 8 "TruthfulQA"        | `truthfulqa_mc2`| acc                                   |
| Table 8 "GSM-8k"            | `gsm8k`         | exact_match (strict-match; also       |
|                             |                 | flexible-extract)                     |

The paper does not say which TruthfulQA variant; `truthfulqa_mc2` is the harness's usual
headline (Open LLM Leaderboard), `truthfulqa_mc1` and `truthfulqa_gen` are the others. Its
Table 8 puts GSM8K and MMLU deltas as fractions and TruthfulQA as percentage points;
`qa_deltas` keeps lm-eval's units (fractions) for all. "Default settings": each task's own
few-shot count (MMLU 0, MMLU-Pro 5, GSM8K 5, TruthfulQA 0 with its 6-QA preamble), no chat
template, lm-eval's default seeds (seed=None keeps them).

`run_lm_eval` calls `lm_eval.simple_evaluate(model="hf", model_args={pretrained, peft})`.
Task folders passed as `include_path` may refer to their data by paths relative to the
task YAML: `datasets` would resolve those against the working directory, so a copy of the
folder with those paths made absolute is what lm-eval reads (`resolved_include_path`).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import yaml

from valueharms.io import write_json, write_table

log = logging.getLogger(__name__)

DEFAULT_TASKS = ["mmlu", "mmlu_pro", "truthfulqa_mc2", "gsm8k"]
VANILLA = "vanilla"  # the adapter label of a run without an adapter
TINY_TASK = "valueharms_tiny_mc"  # resources/lm_eval_tasks: offline tests and the demo

QA_SCHEMA = pa.schema(
    [
        ("task", pa.string()),
        ("metric", pa.string()),
        ("filter", pa.string()),
        ("value", pa.float64()),
        ("stderr", pa.float64()),
        ("n", pa.int64()),
        ("model", pa.string()),
        ("adapter", pa.string()),
    ]
)
KEYS = ["model", "task", "metric", "filter"]


class _Tagged(str):
    """A YAML scalar with a custom tag (lm-eval's `!function`), kept through a rewrite."""

    tag: str


class _TagLoader(yaml.SafeLoader):
    pass


class _TagDumper(yaml.SafeDumper):
    pass


def _construct_tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> _Tagged:
    out = _Tagged(loader.construct_scalar(node))  # type: ignore[arg-type]
    out.tag = "!" + suffix
    return out


_TagLoader.add_multi_constructor("!", _construct_tagged)
_TagDumper.add_representer(_Tagged, lambda d, v: d.represent_scalar(v.tag, str(v)))


def _absolute(value: Any, base: Path) -> Any:
    """Local relative paths in `data_files`/`data_dir` made absolute against `base`."""
    if isinstance(value, str):
        if "://" in value or Path(value).is_absolute():
            return value
        return str((base / value).resolve())
    if isinstance(value, list):
        return [_absolute(v, base) for v in value]
    if isinstance(value, dict):
        return {k: _absolute(v, base) for k, v in value.items()}
    return value


def _resolve_yaml(src: Path, dest: Path) -> None:
    cfg = yaml.load(src.read_text(encoding="utf-8"), Loader=_TagLoader)
    kwargs = cfg.get("dataset_kwargs") if isinstance(cfg, dict) else None
    if not isinstance(kwargs, dict) or not ({"data_files", "data_dir"} & kwargs.keys()):
        return  # copied verbatim by copytree
    for key in ("data_files", "data_dir"):
        if key in kwargs:
            kwargs[key] = _absolute(kwargs[key], src.parent)
    dest.unlink()  # a link to the source file (see resolved_include_path)
    dest.write_text(yaml.dump(cfg, Dumper=_TagDumper, sort_keys=False), encoding="utf-8")


@contextmanager
def resolved_include_path(include_path: str | Path) -> Iterator[Path]:
    """A temporary copy of a task folder whose YAMLs name their data by absolute paths.

    Files are linked, not copied, so data and `!function` modules cost nothing; only a
    YAML that names data files by relative paths is rewritten. lm-eval's YAMLs also come
    without a suffix (`_default_template_yaml`), hence the name test.
    """
    src = Path(include_path).resolve()
    with tempfile.TemporaryDirectory(prefix="lm_eval_tasks.") as tmp:
        dest = Path(tmp) / src.name
        shutil.copytree(
            src, dest, copy_function=os.symlink, ignore=shutil.ignore_patterns("__pycache__")
        )
        for path in sorted(src.rglob("*")):
            if path.is_file() and path.name.endswith(("yaml", "yml")):
                _resolve_yaml(path, dest / path.relative_to(src))
        yield dest


def _float(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):  # lm-eval writes "N/A" where it has no stderr
        return math.nan


def _n_samples(results: dict[str, Any], task: str) -> int:
    """Documents scored for a task, or for a group the sum over its subtasks."""
    n = results.get("n-samples", {})
    if task in n:
        return int(n[task]["effective"])
    subtasks = results.get("group_subtasks", {}).get(task, [])
    return sum(_n_samples(results, t) for t in subtasks)


def tidy_results(results: dict[str, Any], model: str, adapter: str) -> pd.DataFrame:
    """One row per (task or group, metric, filter) of an lm-eval results dict."""
    rows = []
    for task, metrics in results["results"].items():
        for key, value in metrics.items():
            if "," not in key or "_stderr," in key:
                continue  # "alias", "name", "sample_len"; stderrs are joined below
            metric, filt = key.split(",", 1)
            rows.append(
                {
                    "task": task,
                    "metric": metric,
                    "filter": filt,
                    "value": _float(value),
                    "stderr": _float(metrics.get(f"{metric}_stderr,{filt}")),
                    "n": _n_samples(results, task),
                    "model": model,
                    "adapter": adapter,
                }
            )
    return pd.DataFrame(rows, columns=QA_SCHEMA.names)


@dataclass(frozen=True)
class LMEvalSettings:
    """How lm-eval runs: its `tasks`, at most `limit` items each, `batch_size`, extra task
    folders (`include_path`), `device` (None: the best available), `seed` (None: lm-eval's
    defaults, as in the paper), whether to index lm-eval's ~14k built-in tasks
    (`include_defaults=False` skips 6 s when only `include_path` tasks run) and whether
    to apply the model's chat template."""

    tasks: Sequence[str] = tuple(DEFAULT_TASKS)
    limit: int | float | None = None
    batch_size: int | str = 8
    include_path: str | Path | None = None
    device: str | None = None
    seed: int | None = None
    include_defaults: bool = True
    apply_chat_template: bool = False


def run_lm_eval(
    base_dir: str | Path,
    adapter_dir: str | Path | None,
    settings: LMEvalSettings,
    out_path: str | Path,
    *,
    model_name: str | None = None,
    adapter_name: str | None = None,
) -> pd.DataFrame:
    """Score the base model (with the LoRA adapter, if given) with lm-eval (`settings`).

    Writes the tidy table to `out_path` (Parquet, QA_SCHEMA) and lm-eval's own results
    (without per-sample logs) to `out_path` with suffix `.json`; returns the table. The
    `model` column is `model_name` (default: the base folder's name), `adapter` is
    `adapter_name`, else the adapter path, else "vanilla".
    """
    from valueharms.llm.hf import pick_device

    device = settings.device or pick_device()[0]
    model_args: dict[str, Any] = {
        "pretrained": str(base_dir),
        # lm-eval's default "auto" (the checkpoint's dtype, bf16 for the paper's models)
        # on a GPU; on CPU bf16 is far slower than fp32 (FACTS).
        "dtype": "float32" if device == "cpu" else "auto",
    }
    if adapter_dir is not None:
        model_args["peft"] = str(adapter_dir)
    results = _evaluate(model_args, settings, device)
    adapter = adapter_name or (str(adapter_dir) if adapter_dir is not None else VANILLA)
    table = tidy_results(results, model_name or Path(base_dir).name, adapter)
    out_path = Path(out_path)
    write_json(out_path.with_suffix(".json"), results)
    write_table(out_path, table, QA_SCHEMA)
    return table


def _evaluate(model_args: dict[str, Any], settings: LMEvalSettings, device: str) -> dict:
    """lm-eval's results dict: `simple_evaluate` of the hf model `model_args` on `device`."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    seeds: dict[str, Any] = {}
    if settings.seed is not None:  # else lm-eval's defaults (0, 1234, 1234, 1234)
        seeds = {
            "random_seed": settings.seed,
            "numpy_random_seed": settings.seed,
            "torch_random_seed": settings.seed,
            "fewshot_random_seed": settings.seed,
        }
    with _include(settings.include_path) as path:
        manager = TaskManager(
            include_path=str(path) if path else None,
            include_defaults=settings.include_defaults,
            metadata=dict(model_args),
        )
        results = lm_eval.simple_evaluate(
            model="hf",
            model_args=model_args,
            tasks=list(settings.tasks),
            limit=settings.limit,
            batch_size=settings.batch_size,
            device=device,
            task_manager=manager,
            log_samples=False,
            apply_chat_template=settings.apply_chat_template,
            **seeds,
        )
    if results is None:  # a non-zero rank under a distributed launcher
        raise RuntimeError("lm-eval returned no results on this process")
    return results


@contextmanager
def _include(include_path: str | Path | None) -> Iterator[Path | None]:
    if include_path is None:
        yield None
        return
    with resolved_include_path(include_path) as path:
        yield path


def qa_deltas(table: pd.DataFrame, vanilla_key: str = VANILLA) -> pd.DataFrame:
    """Each adapter's score minus the vanilla model's, per model, task, metric, filter.

    `vanilla_key` is the `adapter` label of the vanilla rows. Rows whose vanilla score is
    missing get NaN deltas. Units are lm-eval's (fractions), see the module docstring.
    """
    vanilla = table[table.adapter == vanilla_key]
    dup = vanilla.duplicated(KEYS)
    if dup.any():
        raise ValueError(f"several vanilla rows for {vanilla[dup][KEYS].to_dict('records')}")
    ref = vanilla[[*KEYS, "value"]].rename(columns={"value": "vanilla"})
    out = table[table.adapter != vanilla_key].merge(ref, on=KEYS, how="left")
    out["delta"] = out["value"] - out["vanilla"]
    return out[[*KEYS, "adapter", "value", "vanilla", "delta"]].reset_index(drop=True)


def qa_delta_summary(deltas: pd.DataFrame) -> pd.DataFrame:
    """Table 8: per model, task, metric and filter, the mean delta and its std over adapters."""
    grouped = deltas.groupby(KEYS, sort=True)["delta"]
    return grouped.agg(mean="mean", std="std", n_adapters="count").reset_index()
