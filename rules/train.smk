# Train stage: base models, VIM stage 1 and 2 LoRA adapters, benign fine-tunes.
# A training job checkpoints each finished epoch in a `.ckpt/` folder beside its output
# (Snakemake deletes the output itself before a rerun) keyed by a hash of its inputs and
# settings; a job killed by SIGKILL, preemption or the time limit resumes from there, and
# the folder is removed once the adapter is in place.


rule prepare_base_model:
    output:
        directory("results/models/{base}/base"),
    log:
        "logs/prepare_base_model/{base}.log",
    benchmark:
        "benchmarks/prepare_base_model/{base}.tsv"
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=res("prepare_model", "mem_mb"),
        runtime=res("prepare_model", "runtime"),
    params:
        spec=lambda w: model_spec(w.base),
        code=code("scripts/prepare_base_model.py"),
    script:
        "../scripts/prepare_base_model.py"


rule train_vim_stage1:
    input:
        base=lambda w: plan.base_dir(w.base),
        examples="results/data/vim/{dist}.parquet",
    output:
        directory("results/models/{base}/vim/{dist}/stage1"),
    log:
        "logs/train_vim_stage1/{base}/{dist}.log",
    benchmark:
        "benchmarks/train_vim_stage1/{base}/{dist}.tsv"
    conda:
        "../envs/train.yaml"
    threads: res("train", "threads")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=res("train", "gpu"),
    params:
        stage=1,
        train=config["vim"]["stage1"],
        chat=lambda w: model_spec(w.base)["chat"],
        tokenization=config["tokenization"],
        code=code("scripts/train_vim.py"),
    script:
        "../scripts/train_vim.py"


rule train_vim_stage2:
    input:
        base=lambda w: plan.base_dir(w.base),
        examples="results/data/vim/{dist}.parquet",
        init="results/models/{base}/vim/{dist}/stage1",
    output:
        directory("results/models/{base}/vim/{dist}/adapter"),
    log:
        "logs/train_vim_stage2/{base}/{dist}.log",
    benchmark:
        "benchmarks/train_vim_stage2/{base}/{dist}.tsv"
    conda:
        "../envs/train.yaml"
    threads: res("train", "threads")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=res("train", "gpu"),
    params:
        stage=2,
        train=config["vim"]["stage2"],
        chat=lambda w: model_spec(w.base)["chat"],
        tokenization=config["tokenization"],
        code=code("scripts/train_vim.py"),
    script:
        "../scripts/train_vim.py"


rule train_benign:
    input:
        base=lambda w: plan.base_dir(w.base),
        examples="results/data/benign/{name}.parquet",
    output:
        directory("results/models/{base}/benign/{name}/adapter"),
    log:
        "logs/train_benign/{base}/{name}.log",
    benchmark:
        "benchmarks/train_benign/{base}/{name}.tsv"
    conda:
        "../envs/train.yaml"
    threads: res("train", "threads")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=res("train", "gpu"),
    params:
        train=config["benign"]["train"],
        chat=lambda w: model_spec(w.base)["chat"],
        tokenization=config["tokenization"],
        code=code("scripts/train_benign.py"),
    script:
        "../scripts/train_benign.py"
