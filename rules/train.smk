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


# training.subjects_per_job 1 (default): two jobs per distribution, one per stage.
# N > 1: one train_vim_group job per N distributions (valueharms.train.groups) loads the
# base once and trains each one's two stages into results/models/<base>/.store/vim/<key>/
# (key: the distribution's examples, base, settings and code; a stored key is not trained
# again); a local vim_adapters job per distribution links them into place. It reads the
# group's manifest as ancient(): a group job rerun for one changed distribution does not
# rerun the others' vim_adapters, so their adapters and downstream stay up to date.
if not PLAN.train_groups:

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

else:

    # One distribution's store key: reruns when its own inputs or settings change.
    rule vim_key:
        input:
            base=lambda w: plan.base_dir(w.base),
            examples="results/data/vim/{dist}.parquet",
        output:
            train_groups.keys_path("{base}", "{dist}"),
        log:
            "logs/vim_key/{base}/{dist}.log",
        localrule: True
        params:
            stage1=config["vim"]["stage1"],
            stage2=config["vim"]["stage2"],
            chat=lambda w: model_spec(w.base)["chat"],
            tokenization=config["tokenization"],
            code=code("scripts/train_vim_group.py"),
        run:
            with log_here(log[0]):
                train_groups.key_job(Job.from_run(input, output, params))

    rule train_vim_group:
        input:
            base=lambda w: plan.base_dir(w.base),
            examples=lambda w: [
                f"results/data/vim/{d}.parquet" for d in PLAN.train_groups[w.tgroup]
            ],
            key_files=lambda w: [
                train_groups.keys_path(w.base, d) for d in PLAN.train_groups[w.tgroup]
            ],
        output:
            train_groups.manifest_path("{base}", "{tgroup}"),
        log:
            "logs/train_vim_group/{base}/{tgroup}.log",
        benchmark:
            "benchmarks/train_vim_group/{base}/{tgroup}.tsv"
        conda:
            "../envs/train.yaml"
        threads: res("train", "threads")
        resources:
            mem_mb=res("train", "mem_mb"),
            runtime=res("train", "runtime"),
            gpu=res("train", "gpu"),
        params:
            dists=lambda w: PLAN.train_groups[w.tgroup],
            store=lambda w: train_groups.store_root(w.base),
            stage1=config["vim"]["stage1"],
            stage2=config["vim"]["stage2"],
            chat=lambda w: model_spec(w.base)["chat"],
            tokenization=config["tokenization"],
            code=code("scripts/train_vim_group.py"),
        script:
            "../scripts/train_vim_group.py"

    # One distribution's adapters, linked from the store; runs inside Snakemake. The
    # manifest only orders it after the group job (ancient: a sibling's retraining does
    # not rerun it); its key file reruns it.
    rule vim_adapters:
        input:
            key=train_groups.keys_path("{base}", "{dist}"),
            manifest=lambda w: ancient(
                train_groups.manifest_path(w.base, PLAN.train_group_of(w.dist))
            ),
        output:
            stage1=directory("results/models/{base}/vim/{dist}/stage1"),
            adapter=directory("results/models/{base}/vim/{dist}/adapter"),
        log:
            "logs/vim_adapters/{base}/{dist}.log",
        localrule: True
        params:
            dist=lambda w: w.dist,
            store=lambda w: train_groups.store_root(w.base),
        run:
            with log_here(log[0]):
                train_groups.place_adapters_job(Job.from_run(input, output, params))


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
