# Report stage: one self-contained HTML page with tables, plots and provenance.


rule report:
    input:
        # Study A's tables when it has subjects, Study B's when its evaluation is on.
        metrics=(
            expand("results/metrics/{benchmark}.parquet", benchmark=BENCHMARKS)
            if SUBJECTS
            else []
        ),
        comparisons="results/stats/comparisons.parquet" if SUBJECTS else [],
        correlations="results/stats/correlations.parquet" if SUBJECTS else [],
        distributions="results/data/distributions.parquet" if SUBJECTS else [],
        load_reports=(
            expand(
                "results/data/benchmarks/{benchmark}.load.json", benchmark=BENCHMARKS
            )
            if SUBJECTS
            else []
        ),
        nmse="results/alignment/pvq_nmse.parquet" if PVQ_SUBJECTS else [],
        mitigation="results/stats/mitigation.parquet" if MIT_ENABLED else [],
        mitigation_metrics=(
            "results/stats/mitigation_metrics.parquet" if MIT_ENABLED else []
        ),
        failure_reasons=(
            [
                *expand(
                    "results/metrics/{benchmark}_failures.parquet",
                    benchmark=BENCHMARKS,
                ),
                *(
                    ["results/stats/mitigation_failures.parquet"]
                    if MIT_ENABLED
                    else []
                ),
            ]
            if SUBJECTS
            else []
        ),
        # judges.agreement: one table per benchmark compared (none when it is off).
        agreement=expand(
            "results/agreement/{benchmark}.parquet", benchmark=list(PLAN.agreement)
        ),
        studyb_tables=SB_TABLES,
        bases=sorted(
            {plan.base_dir(s.base) for s in SUBJECTS}
            | {plan.base_dir(m) for m in SBP.models if SBP.eval}
        ),
    output:
        "results/report/index.html",
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=res("analysis", "mem_mb"),
        runtime=res("analysis", "runtime"),
    params:
        subjects=PLAN.subject_table(),
        config_hash=CONFIG_HASH,
        judge_names=JUDGE_NAMES,
        # Study B's info, with the published figures' file and this run's setup.
        studyb=sbplan.with_published(PLAN.studyb_report_info(), config),
        code=code("scripts/report.py"),
    script:
        "../scripts/report.py"
