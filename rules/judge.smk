# Judge stage: RTP -> toxicity scorer; HolisticBiasR, HEx-PHI, BeaverTails -> LLM judge.


def judge_model_input(w):
    if w.benchmark == "rtp":
        return []
    return plan.base_dir(config["judges"]["llm"]["model"])


def judge_template(benchmark):
    key = {"holisticbiasr": "regard"}.get(benchmark, benchmark)
    return template(f"judges.templates.{key}") if benchmark != "rtp" else None


rule judge:
    input:
        generations="results/generations/{benchmark}/{model}/{condition}.parquet",
        judge_model=judge_model_input,
    output:
        "results/judgments/{benchmark}/{model}/{condition}.parquet",
    params:
        judge=lambda w: config["judges"]["toxicity" if w.benchmark == "rtp" else "llm"],
        template=lambda w: judge_template(w.benchmark),
        judge_name=lambda w: JUDGE_NAMES[w.benchmark],
        judge_chat=model_spec(config["judges"]["llm"]["model"])["chat"],
        code=code("judge", "llm"),
    threads: res("judge", "threads")
    log:
        "logs/judge/{benchmark}/{model}/{condition}.log",
    benchmark:
        "benchmarks/judge/{benchmark}/{model}/{condition}.tsv"
    resources:
        mem_mb=res("judge", "mem_mb"),
        runtime=res("judge", "runtime"),
        gpu=lambda w: res("judge", "gpu") if w.benchmark != "rtp" else 0,
    group:
        "judge"
    script:
        "../scripts/judge.py"
