# Generate stage: one job per group of subjects (a base model's subjects of one family on
# one benchmark, up to generation.subjects_per_job; rules/common.smk). The job loads the
# base once, serves all the group's adapters from it and writes the group's table; a
# local job per subject then cuts out results/generations/<benchmark>/<model>/<condition>.
from valueharms.generate import job_bench


rule generate:
    input:
        prompts="results/data/benchmarks/{benchmark}.parquet",
        base=lambda w: plan.base_dir(group_base(w)),
        adapters=group_adapters,
        distributions=group_distributions,
        mitigation_pairs=mitigation_pairs_input,
    output:
        "results/groups/generations/{benchmark}/{group}.parquet",
    log:
        "logs/generate/{benchmark}/{group}.log",
    benchmark:
        "benchmarks/generate/{benchmark}/{group}.tsv"
    group:
        "generate"
    conda:
        GENERATE_ENV
    threads: res("generate", "threads")
    resources:
        mem_mb=res("generate", "mem_mb"),
        runtime=res("generate", "runtime"),
        gpu=res("generate", "gpu"),
    params:
        members=group_members,
        bench=lambda w: job_bench(config["benchmarks"][w.benchmark], group_members(w)),
        template=lambda w: template(f"benchmarks.{w.benchmark}.template"),
        icl_template=lambda w: (
            template("icl.template") if group_distributions(w) else None
        ),
        mitigation_plan=lambda w: PLAN.mitigation_plan(group_members(w)),
        model_spec=lambda w: model_spec(group_base(w)),
        seed=config["generation"]["seed"],
        batch_size=config["generation"]["batch_size"],
        max_failure_share=config["generation"]["max_failure_share"],
        backend=config["generation"]["backend"],
        backend_settings=lambda w: backend_settings(
            group_base(w), config["generation"]["backend"]
        ),
        code=code("scripts/generate.py"),
    script:
        "../scripts/generate.py"


# One subject's rows of its group's table; runs inside Snakemake (no job submitted).
rule subject_generations:
    input:
        group_file("generations"),
    output:
        "results/generations/{benchmark}/{model}/{condition}.parquet",
    log:
        "logs/subject_generations/{benchmark}/{model}/{condition}.log",
    localrule: True
    params:
        code=code("valueharms.generate", "valueharms.io"),
    run:
        from valueharms.generate import GENERATIONS_SCHEMA
        from valueharms.io import split_rows

        split_rows(
            input[0],
            GENERATIONS_SCHEMA,
            wildcards.model,
            wildcards.condition,
            output[0],
        )
