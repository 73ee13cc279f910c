# Stats stage: model-type comparisons and value-risk correlations (METHODS A6).


rule stats:
    input:
        metrics=expand("results/metrics/{benchmark}.parquet", benchmark=BENCHMARKS),
        scores=expand(
            "results/metrics/{benchmark}_scores.parquet", benchmark=BENCHMARKS
        ),
        distributions="results/data/distributions.parquet",
    output:
        comparisons="results/stats/comparisons.parquet",
        correlations="results/stats/correlations.parquet",
    log:
        "logs/stats.log",
    benchmark:
        "benchmarks/stats.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=res("analysis", "mem_mb"),
        runtime=res("analysis", "runtime"),
    params:
        subjects=PLAN.subject_table(),
        settings=config["stats"],
        code=code("scripts/stats.py"),
    script:
        "../scripts/stats.py"


rule alignment:
    input:
        generations=lambda w: [
            subject_path("generations", plan.PVQ, s) for s in PVQ_SUBJECTS
        ],
        distributions="results/data/distributions.parquet",
    output:
        answers="results/alignment/pvq_answers.parquet",
        nmse="results/alignment/pvq_nmse.parquet",
    log:
        "logs/alignment.log",
    benchmark:
        "benchmarks/alignment.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=res("analysis", "mem_mb"),
        runtime=res("analysis", "runtime"),
    params:
        subjects=lambda w: [
            r
            for r in PLAN.subject_table()
            if (r["model_id"], r["condition"])
            in {(s.model_id, s.condition) for s in PVQ_SUBJECTS}
        ],
        code=code("scripts/alignment.py"),
    script:
        "../scripts/alignment.py"


if MIT_FROM_CORRELATIONS:

    checkpoint mitigation_pairs:
        input:
            "results/stats/correlations.parquet",
        output:
            MIT_PAIRS_FILE,
        log:
            "logs/mitigation_pairs.log",
        benchmark:
            "benchmarks/mitigation_pairs.tsv"
        conda:
            "../envs/analysis.yaml"
        resources:
            mem_mb=res("analysis", "mem_mb"),
            runtime=res("analysis", "runtime"),
        params:
            q_max=config["mitigation"]["q_max"],
            code=code("scripts/mitigation_pairs.py"),
        script:
            "../scripts/mitigation_pairs.py"


rule mitigation:
    input:
        metrics=f"results/metrics/{MIT_BENCHMARK}.parquet",
        judgments=mitigation_judgments,
        pairs=MIT_PAIRS_FILE if MIT_FROM_CORRELATIONS else [],
    output:
        table="results/stats/mitigation.parquet",
        metrics="results/stats/mitigation_metrics.parquet",
        reasons="results/stats/mitigation_failures.parquet",
    log:
        "logs/mitigation.log",
    benchmark:
        "benchmarks/mitigation.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=res("analysis", "mem_mb"),
        runtime=res("analysis", "runtime"),
    params:
        pairs=None if MIT_FROM_CORRELATIONS else plan.mitigation_pairs(config),
        models=PLAN.mitigation_models(),
        code=code("scripts/mitigation.py"),
    script:
        "../scripts/mitigation.py"
