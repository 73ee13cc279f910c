# Data stage: datasets, value distributions, VIM examples, benchmark prompts.
from valueharms.data.benchmarks import duplicates_setting
from valueharms.data.sources import expected_rows as _expected_rows
from valueharms.data.sources import local_path, require_local

# Optional: load distributions from a published table (Study A's extreme_distributions.csv
# layout) instead of computing them; read defensively until the schema declares it.
DIST_TABLE = config["distributions"].get("table")
SUMMARY_DATA = {
    **{name: DATA[name][0] for name in DATA},
    **{
        name: path
        for name in (*sbplan.LOADED, "published_distributions")
        if (path := local_path(name, config))
    },
}


REALISTIC = any(s["kind"] == "realistic" for s in DISTS.values()) and not DIST_TABLE


rule fetch_dataset:
    output:
        data="results/data/raw/{dataset}/{file}",
        provenance="results/data/raw/{dataset}/{file}.source.json",
    log:
        "logs/fetch_dataset/{dataset}/{file}.log",
    benchmark:
        "benchmarks/fetch_dataset/{dataset}/{file}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        overrides=config["datasets"],
    script:
        "../scripts/fetch_dataset.py"


rule ess_scores:
    input:
        ess=dataset("ess") if "ess" in DATA else [],
    output:
        scores="results/data/ess_scores.parquet",
        counts="results/data/ess_scores.json",
    log:
        "logs/ess_scores.log",
    benchmark:
        "benchmarks/ess_scores.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        reverse_code=config["distributions"]["realistic"]["reverse_code"],
        expected_rows=_expected_rows("ess", config),
        code=code("scripts/ess_scores.py"),
    script:
        "../scripts/ess_scores.py"


rule distribution:
    input:
        ess_scores=lambda w: (
            "results/data/ess_scores.parquet"
            if DISTS[w.dist]["kind"] == "realistic" and not DIST_TABLE
            else []
        ),
        table=DIST_TABLE or [],
    output:
        "results/data/distributions/{dist}.parquet",
    log:
        "logs/distribution/{dist}.log",
    benchmark:
        "benchmarks/distribution/{dist}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        spec=lambda w: DISTS[w.dist],
        code=code("scripts/distribution.py"),
    script:
        "../scripts/distribution.py"


# All distributions in one job (the per-distribution files above feed training; this table
# feeds the statistics and the data checks, and is computed by the same library code).
rule distributions:
    input:
        ess_scores="results/data/ess_scores.parquet" if REALISTIC else [],
        table=DIST_TABLE or [],
    output:
        "results/data/distributions.parquet",
    log:
        "logs/distributions.log",
    benchmark:
        "benchmarks/distributions.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        specs=DISTS,
        code=code("scripts/distributions_table.py"),
    script:
        "../scripts/distributions_table.py"


rule vim_examples:
    input:
        distribution=lambda w: distribution_file(w.dist),
        touche=dataset("touche") if "touche" in DATA else [],
        stage2_train=(
            dataset("touche_stage2_train") if "touche_stage2_train" in DATA else []
        ),
        stage2_valid=(
            dataset("touche_stage2_valid") if "touche_stage2_valid" in DATA else []
        ),
    output:
        "results/data/vim/{dist}.parquet",
    log:
        "logs/vim_examples/{dist}.log",
    benchmark:
        "benchmarks/vim_examples/{dist}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        templates={k: template(f"vim.prompts.{k}") for k in config["vim"]["prompts"]},
        threshold=config["vim"]["threshold"],
        strategy=config["vim"]["strategy"],
        seed=config["vim"]["seed"],
        stage1_questions=config["vim"]["stage1_questions"],
        stage2_labels=config["vim"]["stage2_labels"],
        code=code("scripts/vim_examples.py"),
    script:
        "../scripts/vim_examples.py"


rule benchmark_prompts:
    input:
        # Study A's plan's file, else Study B's (its loaded benchmarks), else the local one.
        lambda w: (
            dataset(w.benchmark)
            if w.benchmark in DATA
            else (
                SBP.data[w.benchmark][0]
                if w.benchmark in SBP.data
                else require_local(w.benchmark, config)
            )
        ),
    output:
        prompts="results/data/benchmarks/{benchmark}.parquet",
        # Rows in, dropped and kept by reason (the report's Data table).
        load_report="results/data/benchmarks/{benchmark}.load.json",
    log:
        "logs/benchmark_prompts/{benchmark}.log",
    benchmark:
        "benchmarks/benchmark_prompts/{benchmark}.tsv"
    wildcard_constraints:
        benchmark="|".join(plan.PROMPT_BENCHMARKS + sbplan.LOADED),
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        name=lambda w: w.benchmark,
        n=lambda w: config["benchmarks"][w.benchmark]["n_prompts"],
        mode=lambda w: config["benchmarks"][w.benchmark]["subsample"],
        seed=config["benchmarks"]["seed"],
        expected_rows=lambda w: _expected_rows(w.benchmark, config),
        duplicates=lambda w: duplicates_setting(w.benchmark, config),
        code=code("scripts/benchmark_prompts.py"),
    script:
        "../scripts/benchmark_prompts.py"


rule benign_examples:
    input:
        data=lambda w: dataset(w.name),
        valid=lambda w: dataset("grammar_valid") if w.name == "grammar" else [],
    output:
        "results/data/benign/{name}.parquet",
    log:
        "logs/benign_examples/{name}.log",
    benchmark:
        "benchmarks/benign_examples/{name}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        seed=config["benign"]["train"]["seed"],
        max_examples=config["benign"]["train"]["max_train_examples"],
        exclude_categories=config["benign"]["dolly_exclude_categories"],
        expected_rows=lambda w: _expected_rows(w.name, config),
        valid_expected_rows=_expected_rows("grammar_valid", config),
        code=code("scripts/benign_examples.py"),
    script:
        "../scripts/benign_examples.py"


# Example counts of every distribution's VIM table, computed in one job from the same
# split code the per-distribution vim_examples jobs run (tests check both agree).
rule vim_split_sizes:
    input:
        distributions="results/data/distributions.parquet",
        touche=dataset("touche") if "touche" in DATA else [],
        stage2_train=(
            dataset("touche_stage2_train") if "touche_stage2_train" in DATA else []
        ),
        stage2_valid=(
            dataset("touche_stage2_valid") if "touche_stage2_valid" in DATA else []
        ),
    output:
        "results/data/vim_split_sizes.parquet",
    log:
        "logs/vim_split_sizes.log",
    benchmark:
        "benchmarks/vim_split_sizes.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        threshold=config["vim"]["threshold"],
        strategy=config["vim"]["strategy"],
        seed=config["vim"]["seed"],
        stage2_labels=config["vim"]["stage2_labels"],
        code=code("scripts/vim_split_sizes.py"),
    script:
        "../scripts/vim_split_sizes.py"


# Rows in / dropped (with reasons) / out of every dataset; docs/data.md is checked
# against it.
rule data_summary:
    input:
        data=list(SUMMARY_DATA.values()),
        distributions="results/data/distributions.parquet",
        split_sizes=("results/data/vim_split_sizes.parquet" if "touche" in DATA else []),
    output:
        "results/data/summary.json",
    log:
        "logs/data_summary.log",
    benchmark:
        "benchmarks/data_summary.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        names=list(SUMMARY_DATA),
        config={
            "distributions": config["distributions"],
            "benign": config["benign"],
            "datasets": config["datasets"],
        },
        code=code("scripts/data_summary.py"),
    script:
        "../scripts/data_summary.py"
