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
        gpu=lambda w: res("judge", "gpu") if w.benchmark != "rtp" else 0,
    params:
        judge=lambda w: config["judges"]["toxicity" if w.benchmark == "rtp" else "llm"],
        template=lambda w: judge_template(w.benchmark),
        judge_name=lambda w: JUDGE_NAMES[w.benchmark],
        judge_spec=model_spec(config["judges"]["llm"]["model"]),
        backend_settings=backend_settings(
            config["judges"]["llm"]["model"], config["judges"]["llm"]["backend"]
        ),
        code=code("judge", "llm"),
    script:
        "../scripts/judge.py"
