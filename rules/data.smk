# Data stage: datasets, value distributions, VIM examples, benchmark prompts.


rule fetch_dataset:
    output:
        data="results/data/raw/{dataset}/{file}",
        provenance="results/data/raw/{dataset}/{file}.source.json",
    log:
        "logs/data/fetch_{dataset}_{file}.log",
    benchmark:
        "benchmarks/data/fetch_{dataset}_{file}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        overrides=config["datasets"],
    script:
        "../scripts/fetch_dataset.py"


rule ess_scores:
    input:
        ess=dataset("ess") if "ess" in DATA else [],
    output:
        scores="results/data/ess_scores.parquet",
        counts="results/data/ess_scores.json",
    log:
        "logs/data/ess_scores.log",
    benchmark:
        "benchmarks/data/ess_scores.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        reverse_code=config["distributions"]["realistic"]["reverse_code"],
        code=code("data.distributions", "data.steps"),
    script:
        "../scripts/ess_scores.py"


rule distribution:
    input:
        ess_scores=lambda w: (
            "results/data/ess_scores.parquet"
            if DISTS[w.dist]["kind"] == "realistic"
            else []
        ),
    output:
        "results/data/distributions/{dist}.parquet",
    log:
        "logs/data/distribution_{dist}.log",
    benchmark:
        "benchmarks/data/distribution_{dist}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        spec=lambda w: DISTS[w.dist],
        code=code("data.distributions", "data.steps"),
    script:
        "../scripts/distribution.py"


rule distributions:
    input:
        [distribution_file(d) for d in DISTS],
    output:
        "results/data/distributions.parquet",
    log:
        "logs/data/distributions.log",
    benchmark:
        "benchmarks/data/distributions.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        code=code("data.steps"),
    script:
        "../scripts/combine_distributions.py"


rule vim_examples:
    input:
        distribution=lambda w: distribution_file(w.dist),
        touche=dataset("touche") if "touche" in DATA else [],
        stage2_train=(
            dataset("touche_stage2_train") if "touche_stage2_train" in DATA else []
        ),
        stage2_valid=(
            dataset("touche_stage2_valid") if "touche_stage2_valid" in DATA else []
        ),
    output:
        "results/data/vim/{dist}.parquet",
    log:
        "logs/data/vim_{dist}.log",
    benchmark:
        "benchmarks/data/vim_{dist}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        templates={k: template(f"vim.prompts.{k}") for k in config["vim"]["prompts"]},
        threshold=config["vim"]["threshold"],
        strategy=config["vim"]["strategy"],
        seed=config["vim"]["seed"],
        code=code("data.vim", "data.steps"),
    script:
        "../scripts/vim_examples.py"


rule benchmark_prompts:
    input:
        lambda w: dataset(w.benchmark),
    output:
        "results/data/benchmarks/{benchmark}.parquet",
    log:
        "logs/data/benchmark_{benchmark}.log",
    benchmark:
        "benchmarks/data/benchmark_{benchmark}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        n=lambda w: config["benchmarks"][w.benchmark]["n_prompts"],
        mode=lambda w: config["benchmarks"][w.benchmark]["subsample"],
        seed=config["benchmarks"]["seed"],
        code=code("data.benchmarks", "data.steps"),
    script:
        "../scripts/benchmark_prompts.py"


rule benign_examples:
    input:
        data=lambda w: dataset(w.name),
        valid=lambda w: dataset("grammar_valid") if w.name == "grammar" else [],
    output:
        "results/data/benign/{name}.parquet",
    log:
        "logs/data/benign_{name}.log",
    benchmark:
        "benchmarks/data/benign_{name}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        seed=config["benign"]["train"]["seed"],
        max_examples=config["benign"]["train"]["max_train_examples"],
        exclude_categories=config["benign"]["dolly_exclude_categories"],
        code=code("data.benign", "data.steps"),
    script:
        "../scripts/benign_examples.py"
