# Generate stage: one job per (benchmark, model, condition). On SLURM the `group`
# directive bundles many of these small jobs into one submission.


def icl_system(w):
    """The in-context baseline's system prompt is built from its distribution file."""
    if w.condition.startswith("icl-"):
        return distribution_file(w.condition.removeprefix("icl-"))
    return []


rule generate:
    input:
        prompts="results/data/benchmarks/{benchmark}.parquet",
        base=lambda w: plan.base_dir(w.model.split("/")[0]),
        adapter=lambda w: adapter_input(w.model),
        distribution=icl_system,
    output:
        "results/generations/{benchmark}/{model}/{condition}.parquet",
    params:
        bench=lambda w: config["benchmarks"][w.benchmark],
        template=lambda w: template(f"benchmarks.{w.benchmark}.template"),
        icl_template=lambda w: (
            template("icl.template") if w.condition.startswith("icl-") else None
        ),
        chat=lambda w: model_spec(w.model.split("/")[0])["chat"],
        seed=config["generation"]["seed"],
        batch_size=config["generation"]["batch_size"],
        backend=config["generation"]["backend"],
        code=code("generate", "llm"),
    threads: res("generate", "threads")
    log:
        "logs/generate/{benchmark}/{model}/{condition}.log",
    benchmark:
        "benchmarks/generate/{benchmark}/{model}/{condition}.tsv"
    resources:
        mem_mb=res("generate", "mem_mb"),
        runtime=res("generate", "runtime"),
        gpu=res("generate", "gpu"),
    group:
        "generate"
    script:
        "../scripts/generate.py"
