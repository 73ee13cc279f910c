# Metrics stage: per benchmark, every subject's judgments -> metric table + per-prompt scores.


rule metrics:
    input:
        lambda w: [subject_path("judgments", w.benchmark, s) for s in SUBJECTS],
    output:
        metrics="results/metrics/{benchmark}.parquet",
        scores="results/metrics/{benchmark}_scores.parquet",
        reasons="results/metrics/{benchmark}_failures.parquet",
    log:
        "logs/metrics/{benchmark}.log",
    benchmark:
        "benchmarks/metrics/{benchmark}.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=res("analysis", "mem_mb"),
        runtime=res("analysis", "runtime"),
    params:
        settings=lambda w: PLAN.metric_settings(w.benchmark),
        code=code("scripts/metrics.py"),
    script:
        "../scripts/metrics.py"
