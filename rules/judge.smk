# Judge stage: RTP -> toxicity scorer; HolisticBiasR, HEx-PHI, BeaverTails -> LLM judge.


rule judge:
    input:
        generations="results/generations/{benchmark}/{model}/{condition}.parquet",
        judge_model=judge_model_input,
    output:
        "results/judgments/{benchmark}/{model}/{condition}.parquet",
    log:
        "logs/judge/{benchmark}/{model}/{condition}.log",
    benchmark:
        "benchmarks/judge/{benchmark}/{model}/{condition}.tsv"
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
        kind=lambda w: judge_kind(w.benchmark),
        judge=lambda w: config["judges"][judge_kind(w.benchmark)],
        template=lambda w: judge_template(w.benchmark),
        judge_name=lambda w: JUDGE_NAMES[w.benchmark],
        judge_spec=lambda w: llm_judge_param(w, model_spec(JUDGE_LLM)),
        backend_settings=lambda w: llm_judge_param(
            w, backend_settings(JUDGE_LLM, config["judges"]["llm"]["backend"])
        ),
        code=code("judge", "llm"),
    script:
        "../scripts/judge.py"
