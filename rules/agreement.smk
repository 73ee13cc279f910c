# Judge agreement (judges.agreement; docs/llm.md): per benchmark, a second judge scores a
# seeded sample of the generations the configured judge scored; Cohen's kappa with a
# bootstrap interval goes to the report (valueharms.judge.agreement). PLAN.agreement_of
# gives a benchmark's comparison (valueharms.judge.agreement_plan.AgreementSpec).


rule agreement:
    input:
        generations=lambda w: [
            subject_path("generations", w.benchmark, s) for s in SUBJECTS
        ],
        judgments=lambda w: [
            subject_path("judgments", w.benchmark, s) for s in SUBJECTS
        ],
        judge_model=lambda w: PLAN.agreement_of(w.benchmark).model_input(),
    output:
        table="results/agreement/{benchmark}.parquet",
        pairs="results/agreement/{benchmark}_pairs.parquet",
    log:
        "logs/agreement/{benchmark}.log",
    benchmark:
        "benchmarks/agreement/{benchmark}.tsv"
    conda:
        "../envs/judge.yaml"
    threads: res("judge", "threads")
    resources:
        mem_mb=res("judge", "mem_mb"),
        runtime=res("judge", "runtime"),
        gpu=lambda w: (
            res("judge", "gpu") if PLAN.agreement_of(w.benchmark).model_input() else 0
        ),
    params:
        first=lambda w: PLAN.agreement_of(w.benchmark).first,
        second=lambda w: PLAN.agreement_of(w.benchmark).second_params(),
        judge_spec=lambda w: PLAN.agreement_of(w.benchmark).model_spec,
        backend_settings=lambda w: PLAN.agreement_of(w.benchmark).backend_settings,
        scale=lambda w: PLAN.agreement_of(w.benchmark).scale.params(),
        sample=lambda w: PLAN.agreement_of(w.benchmark).settings.params(),
        max_failure_share=config["judges"]["max_failure_share"],
        code=code("scripts/agreement.py"),
    script:
        "../scripts/agreement.py"
