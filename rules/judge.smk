# Judge stage: RTP -> toxicity scorer; HolisticBiasR, HEx-PHI, BeaverTails -> LLM judge.
# One job per generation group (rules/generate.smk); a local job per subject cuts out
# results/judgments/<benchmark>/<model>/<condition>.parquet.


rule judge:
    input:
        generations="results/groups/generations/{benchmark}/{group}.parquet",
        judge_model=judge_model_input,
    output:
        "results/groups/judgments/{benchmark}/{group}.parquet",
    log:
        "logs/judge/{benchmark}/{group}.log",
    benchmark:
        "benchmarks/judge/{benchmark}/{group}.tsv"
    group:
        "judge"
    conda:
        "../envs/judge.yaml"
    threads: res("judge", "threads")
    resources:
        mem_mb=res("judge", "mem_mb"),
        runtime=res("judge", "runtime"),
        gpu=lambda w: res("judge", "gpu") if judge_model_input(w) else 0,
    params:
        kind=lambda w: judge(w).kind,
        judge=lambda w: judge(w).settings,
        template=lambda w: judge(w).template,
        judge_name=lambda w: judge(w).name,
        judge_spec=judge_spec,
        backend_settings=judge_backend_settings,
        max_failure_share=config["judges"]["max_failure_share"],
        code=code("scripts/judge.py"),
    script:
        "../scripts/judge.py"


# One subject's rows of its group's judgments; runs inside Snakemake (no job submitted).
rule subject_judgments:
    input:
        group_file("judgments"),
    output:
        "results/judgments/{benchmark}/{model}/{condition}.parquet",
    log:
        "logs/subject_judgments/{benchmark}/{model}/{condition}.log",
    localrule: True
    params:
        code=code("valueharms.io", "valueharms.judge.schema"),
    run:
        from valueharms.io import split_rows
        from valueharms.judge.schema import JUDGMENTS_SCHEMA

        split_rows(
            input[0],
            JUDGMENTS_SCHEMA,
            wildcards.model,
            wildcards.condition,
            output[0],
        )
