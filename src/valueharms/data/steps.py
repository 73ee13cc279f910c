"""Data-stage steps: file in, file out.

Each Snakemake script calls exactly one of the `*_job` entry points at the end, which
read the rule's job record (valueharms.job.Job) and call the step of that name.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from valueharms import VALUES
from valueharms import benchmarks as registry
from valueharms.data import benchmarks, distributions, sources, vim
from valueharms.data.benign import ExpectedRows
from valueharms.io import read_table, write_json, write_table
from valueharms.job import Job


def fetch_dataset(name: str, out: str, overrides: dict[str, Any], provenance_out: str) -> None:
    src = sources.source(name, overrides)
    digest = sources.download(src, out)
    write_json(
        provenance_out,
        {"dataset": name, "url": src.url, "sha256": digest, "declared_sha256": src.sha256},
    )


def ess_scores(
    ess_path: str,
    reverse_code: bool,
    out: str,
    counts_out: str,
    expected_rows: int | None = None,
) -> None:
    scores, counts = distributions.score_ess(
        distributions.read_ess(ess_path, expected_rows=expected_rows), reverse_code=reverse_code
    )
    write_table(out, scores, distributions.ESS_SCORES_SCHEMA)
    write_json(counts_out, {**counts, "reverse_code": reverse_code, "source": ess_path})


def _spec_row(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "kind": spec["kind"],
        "anchor": name,
        "rank": 0,
        "distance": 0.0,
        "respondent_id": None,
        **spec["scores"],
    }


def _from_table(table_path: str, names: list[str]) -> pd.DataFrame:
    """Rows `names` of a published distributions table, in that order."""
    table = distributions.load_published_table(table_path).set_index("name", drop=False)
    absent = [n for n in names if n not in table.index]
    if absent:
        raise sources.DataError(
            f"distributions.table: {table_path} lacks distributions {absent[:5]}"
        )
    return table.loc[names].reset_index(drop=True)


def distribution(
    name: str,
    spec: dict[str, Any],
    ess_scores_path: str | None,
    out: str,
    table_path: str | None = None,
) -> None:
    """One target distribution as a one-row `distributions` table."""
    if table_path:
        df = _from_table(table_path, [name])
    elif spec["kind"] in ("extreme", "custom"):
        df = pd.DataFrame([_spec_row(name, spec)])
    else:
        if ess_scores_path is None:
            raise ValueError(f"{name}: a realistic distribution needs the ESS scores")
        anchor = pd.DataFrame(
            [
                _spec_row(
                    spec["anchor"], {**spec, "kind": "extreme", "scores": spec["anchor_scores"]}
                )
            ]
        )
        scores = read_table(ess_scores_path, distributions.ESS_SCORES_SCHEMA)
        near = distributions.realistic_distributions(anchor, scores, k=spec["rank"])
        df = near[near["name"] == name]
        if len(df) != 1:
            raise ValueError(f"{name}: only {len(near)} valid respondents to rank")
    write_table(out, df, distributions.DISTRIBUTIONS_SCHEMA)


def distributions_table(
    specs: dict[str, dict[str, Any]],
    ess_scores_path: str | None,
    out: str,
    table_path: str | None = None,
) -> None:
    """All planned distributions in one table, computed in one pass (same code as the
    per-distribution files: extremes from their spec, realistic ones ranked per anchor)."""
    names = list(specs)
    if table_path:
        write_table(out, _from_table(table_path, names), distributions.DISTRIBUTIONS_SCHEMA)
        return
    rows = {n: _spec_row(n, s) for n, s in specs.items() if s["kind"] != "realistic"}
    realistic = {n: s for n, s in specs.items() if s["kind"] == "realistic"}
    if realistic:
        if ess_scores_path is None:
            raise ValueError("realistic distributions need the ESS scores")
        scores = read_table(ess_scores_path, distributions.ESS_SCORES_SCHEMA)
        by_anchor: dict[str, dict[str, Any]] = {}
        for s in realistic.values():
            k = max(by_anchor.get(s["anchor"], {}).get("k", 0), s["rank"])
            by_anchor[s["anchor"]] = {"k": k, "scores": s["anchor_scores"]}
        anchors = pd.DataFrame(
            [_spec_row(a, {"kind": "extreme", "scores": v["scores"]}) for a, v in by_anchor.items()]
        )
        k = max(v["k"] for v in by_anchor.values())
        near = distributions.realistic_distributions(anchors, scores, k=k)
        for r in near.to_dict("records"):
            if r["name"] in realistic:
                rows[r["name"]] = r
    missing = [n for n in names if n not in rows]
    if missing:
        raise ValueError(f"too few valid respondents to rank {missing[:5]}")
    df = pd.DataFrame([rows[n] for n in names])
    write_table(out, df, distributions.DISTRIBUTIONS_SCHEMA)


def target_of(distribution_path: str) -> dict[str, float]:
    row = read_table(distribution_path, distributions.DISTRIBUTIONS_SCHEMA).iloc[0]
    return {v: float(row[v]) for v in VALUES}


def vim_examples(
    distribution_path: str,
    touche: vim.ToucheFiles,
    templates: dict[str, str],
    threshold: float,
    strategy: str,
    seed: int,
    out: str,
    stage1_questions: str = "per_polarity",
) -> None:
    target = target_of(distribution_path)
    args, s2_train, s2_valid = touche.read()
    s1 = vim.stage1_examples(
        args,
        target,
        templates,
        threshold,
        strategy,  # type: ignore[arg-type]
        seed,
        stage1_questions,  # type: ignore[arg-type]
    )
    s2 = vim.stage2_examples(s2_train, s2_valid, target, templates, seed)
    write_table(out, pd.concat([s1, s2], ignore_index=True), vim.VIM_SCHEMA)


def benchmark_prompts(
    name: str,
    path: str,
    sample: dict[str, Any],
    out: str,
    report_out: str,
    expected_rows: int | None = None,
    duplicates: str | None = None,
) -> None:
    """Benchmark `name`'s prompts, subsampled as `sample` says (n, mode, seed), and its
    LoadReport as JSON (`report_out`, with the prompts kept: the report's Data table)."""
    report = sources.LoadReport(name, path)
    df = benchmarks.load_benchmark(
        name, path, expected_rows=expected_rows, report=report, duplicates=duplicates
    )
    df = benchmarks.subsample(
        df,
        sample["n"],
        seed=sample["seed"],
        stratify=registry.get(name).stratify,
        mode=sample["mode"],
    )
    write_table(out, df, benchmarks.PROMPTS_SCHEMA)
    write_json(report_out, {**report.as_dict(), "prompts": len(df)})


def benign(
    name: str,
    path: str,
    valid_path: str | None,
    seed: int,
    max_examples: int | None,
    exclude_categories: list[str],
    out: str,
    expected_rows: ExpectedRows | None = None,
) -> None:
    from valueharms.data.benign import BENIGN_SCHEMA, benign_examples

    kwargs = {"exclude_categories": exclude_categories} if name == "dolly" else {}
    df = benign_examples(
        name,
        path,
        valid_path,
        seed=seed,
        max_examples=max_examples,
        expected_rows=expected_rows,
        **kwargs,
    )
    write_table(out, df, BENIGN_SCHEMA)


def vim_split_sizes(
    distributions_path: str,
    touche: vim.ToucheFiles,
    threshold: float,
    strategy: str,
    seed: int,
    out: str,
) -> None:
    """One row per distribution: the example counts its VIM table has (vim.split_sizes_row)."""
    dists = read_table(distributions_path, distributions.DISTRIBUTIONS_SCHEMA)
    args, s2t, s2v = touche.read()
    rows = [
        vim.split_sizes_row(
            str(d["name"]),
            args,
            s2t,
            s2v,
            {v: float(d[v]) for v in VALUES},
            threshold,
            strategy,  # type: ignore[arg-type]
            seed,
        )
        for d in dists.to_dict("records")
    ]
    write_table(out, pd.DataFrame(rows), vim.SPLIT_SIZES_SCHEMA)


def data_summary(
    paths: dict[str, str],
    config: dict[str, Any],
    distributions_path: str | None,
    split_sizes_path: str | None,
    out: str,
) -> None:
    from valueharms.data.summary import build_summary

    dists = (
        read_table(distributions_path, distributions.DISTRIBUTIONS_SCHEMA)
        if distributions_path
        else None
    )
    sizes = read_table(split_sizes_path, vim.SPLIT_SIZES_SCHEMA) if split_sizes_path else None
    write_json(out, build_summary(paths, config, dists, sizes))


# --- the scripts' entry points: a rule's job record -> its step ------------------------


def _touche(job: Job) -> vim.ToucheFiles:
    return vim.ToucheFiles(
        job.input["touche"],
        job.input["stage2_train"],
        job.input["stage2_valid"],
        job.params.get("stage2_labels", "correct"),
    )


def fetch_dataset_job(job: Job) -> None:
    fetch_dataset(
        job.wildcards["dataset"],
        job.output["data"],
        job.params["overrides"],
        job.output["provenance"],
    )


def ess_scores_job(job: Job) -> None:
    p = job.params
    ess_scores(
        job.input["ess"],
        p["reverse_code"],
        job.output["scores"],
        job.output["counts"],
        p["expected_rows"],
    )


def distribution_job(job: Job) -> None:
    distribution(
        job.wildcards["dist"],
        job.params["spec"],
        job.input.get("ess_scores"),
        job.output[0],
        job.input.get("table"),
    )


def distributions_table_job(job: Job) -> None:
    distributions_table(
        dict(job.params["specs"]),
        job.input.get("ess_scores"),
        job.output[0],
        job.input.get("table"),
    )


def vim_examples_job(job: Job) -> None:
    p = job.params
    vim_examples(
        job.input["distribution"],
        _touche(job),
        dict(p["templates"]),
        p["threshold"],
        p["strategy"],
        p["seed"],
        job.output[0],
        p.get("stage1_questions", "per_polarity"),
    )


def benchmark_prompts_job(job: Job) -> None:
    p = job.params
    benchmark_prompts(
        p["name"],
        job.input[0],
        {"n": p["n"], "mode": p["mode"], "seed": p["seed"]},
        job.output["prompts"],
        job.output["load_report"],
        p["expected_rows"],
        p.get("duplicates"),
    )


def benign_job(job: Job) -> None:
    p = job.params
    benign(
        job.wildcards["name"],
        job.input["data"],
        job.input.get("valid"),
        p["seed"],
        p["max_examples"],
        list(p["exclude_categories"]),
        job.output[0],
        ExpectedRows(p["expected_rows"], p["valid_expected_rows"]),
    )


def vim_split_sizes_job(job: Job) -> None:
    p = job.params
    vim_split_sizes(
        job.input["distributions"],
        _touche(job),
        p["threshold"],
        p["strategy"],
        p["seed"],
        job.output[0],
    )


def data_summary_job(job: Job) -> None:
    data_summary(
        dict(zip(job.params["names"], job.input.list("data"), strict=True)),
        dict(job.params["config"]),
        job.input["distributions"],
        job.input.get("split_sizes"),
        job.output[0],
    )
