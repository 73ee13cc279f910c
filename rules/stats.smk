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
        "logs/stats/stats.log",
    benchmark:
        "benchmarks/stats/stats.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=res("analysis", "mem_mb"),
        runtime=res("analysis", "runtime"),
    params:
        subjects=subject_table(),
        settings=config["stats"],
        code=code("stats", "analysis"),
    script:
        "../scripts/stats.py"
