"""Data-stage steps: file in, file out. Each Snakemake script calls exactly one of these."""

from __future__ import annotations

from typing import Any

import pandas as pd

from valueharms import VALUES
from valueharms.data import benchmarks, distributions, sources, vim
from valueharms.io import read_table, write_json, write_table


def fetch_dataset(name: str, out: str, overrides: dict[str, Any], provenance_out: str) -> None:
    src = sources.source(name, overrides)
    digest = sources.download(src, out)
    write_json(
        provenance_out,
        {"dataset": name, "url": src.url, "sha256": digest, "declared_sha256": src.sha256},
    )


def ess_scores(ess_path: str, reverse_code: bool, out: str, counts_out: str) -> None:
    scores, counts = distributions.score_ess(
        distributions.read_ess(ess_path), reverse_code=reverse_code
    )
    write_table(out, scores, distributions.ESS_SCORES_SCHEMA)
    write_json(counts_out, {**counts, "reverse_code": reverse_code, "source": ess_path})


def distribution(name: str, spec: dict[str, Any], ess_scores_path: str | None, out: str) -> None:
    """One target distribution as a one-row `distributions` table."""
    if spec["kind"] in ("extreme", "custom"):
        row = {
            "name": name,
            "kind": spec["kind"],
            "anchor": name,
            "rank": 0,
            "distance": 0.0,
            "respondent_id": None,
            **spec["scores"],
        }
        df = pd.DataFrame([row])
    else:
        if ess_scores_path is None:
            raise ValueError(f"{name}: a realistic distribution needs the ESS scores")
        anchor = pd.DataFrame(
            [
                {
                    "name": spec["anchor"],
                    "kind": "extreme",
                    "anchor": spec["anchor"],
                    "rank": 0,
                    "distance": 0.0,
                    "respondent_id": None,
                    **spec["anchor_scores"],
                }
            ]
        )
        scores = read_table(ess_scores_path, distributions.ESS_SCORES_SCHEMA)
        near = distributions.realistic_distributions(anchor, scores, k=spec["rank"])
        df = near[near["name"] == name]
        if len(df) != 1:
            raise ValueError(f"{name}: only {len(near)} valid respondents to rank")
    write_table(out, df, distributions.DISTRIBUTIONS_SCHEMA)


def combine_distributions(paths: list[str], out: str) -> None:
    frames = [read_table(p, distributions.DISTRIBUTIONS_SCHEMA) for p in paths]
    write_table(out, pd.concat(frames, ignore_index=True), distributions.DISTRIBUTIONS_SCHEMA)


def target_of(distribution_path: str) -> dict[str, float]:
    row = read_table(distribution_path, distributions.DISTRIBUTIONS_SCHEMA).iloc[0]
    return {v: float(row[v]) for v in VALUES}


def vim_examples(
    distribution_path: str,
    touche: str,
    stage2_train: str,
    stage2_valid: str,
    templates: dict[str, str],
    threshold: float,
    strategy: str,
    seed: int,
    out: str,
) -> None:
    target = target_of(distribution_path)
    s1 = vim.stage1_examples(vim.read_touche(touche), target, templates, threshold, strategy, seed)
    s2 = vim.stage2_examples(
        vim.read_touche(stage2_train), vim.read_touche(stage2_valid), target, templates, seed
    )
    write_table(out, pd.concat([s1, s2], ignore_index=True), vim.VIM_SCHEMA)


def benchmark_prompts(name: str, path: str, n: int | None, mode: str, seed: int, out: str) -> None:
    df = benchmarks.load_benchmark(name, path)
    df = benchmarks.subsample(
        df, n, seed=seed, stratify=name in ("hexphi", "beavertails"), mode=mode
    )
    write_table(out, df, benchmarks.PROMPTS_SCHEMA)


def benign(
    name: str,
    path: str,
    valid_path: str | None,
    seed: int,
    max_examples: int | None,
    exclude_categories: list[str],
    out: str,
) -> None:
    from valueharms.data.benign import BENIGN_SCHEMA, benign_examples

    kwargs = {"exclude_categories": exclude_categories} if name == "dolly" else {}
    df = benign_examples(name, path, valid_path, seed=seed, max_examples=max_examples, **kwargs)
    write_table(out, df, BENIGN_SCHEMA)
