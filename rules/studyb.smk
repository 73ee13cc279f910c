# Study B (Arora et al.; METHODS B1-B3): triplets per source -> values extracted by an LLM
# per source -> value subsets (XOR + flip) -> closed-set verification -> one DPO/ORPO LoRA
# adapter per (model, method, beta, value) -> the induction settings generate on IssueBench,
# AdvBench and AnthroBench (through the shared generate and judge rules) and lm-eval scores
# QA -> the tables of valueharms.metrics.studyb (with Tables 1-2 and Figure 9 of the
# preference data) -> the report's Study B section. Off unless studyb.enabled. The rules
# are defined either way (so --lint checks them), but when it is off nothing asks for their
# outputs, their wildcards match nothing, and nothing of Study B is checked or looked for. Target: `snakemake studyb_all`.
# The plan (SBP) and the prompt texts (SB_TEMPLATES) are built in rules/common.smk, since
# the generation groups hold Study B's subjects too.
from valueharms.metrics import studyb as sbresults

SB_RESULTS = sbplan.RESULTS
SB_TRIPLETS = f"{SB_RESULTS}/triplets/{{source}}.parquet"
SB_EXTRACTIONS = f"{SB_RESULTS}/extractions/{{source}}.parquet"
# Prepared base models the extractor and verifier load (none for an API model).
SB_EXTRACT_INPUT = sbplan.base_input(config, SBP.extract_model)
SB_VERIFY_INPUT = sbplan.base_input(config, SBP.verify_model)


# Study B's tables (valueharms.metrics.studyb.TABLES), when its evaluation is on.
SB_METRICS = (
    [f"{SB_RESULTS}/metrics/{name}.parquet" for name in sbresults.TABLES]
    if SBP.eval
    else []
)
# The preference data's tables (Tables 1-2, Figure 9; sbresults.PREFERENCE_TABLES), when
# Study B is on: they need no evaluation run.
SB_PREFERENCE_TABLES = (
    [f"{SB_RESULTS}/metrics/{name}.parquet" for name in sbresults.PREFERENCE_TABLES]
    if SBP.enabled
    else []
)
# What the report reads: both, when the evaluation is on.
SB_TABLES = SB_METRICS + SB_PREFERENCE_TABLES if SBP.eval else []
SB_VERIFY = f"{SB_RESULTS}/verify"


rule studyb_all:
    input:
        SBP.targets(),
        SB_METRICS,
        SB_PREFERENCE_TABLES,


rule studyb_triplets:
    input:
        data=lambda w: SBP.data[w.source][0],
    output:
        triplets=SB_TRIPLETS,
        report=f"{SB_RESULTS}/triplets/{{source}}.json",
    log:
        "logs/studyb_triplets/{source}.log",
    benchmark:
        "benchmarks/studyb_triplets/{source}.tsv"
    wildcard_constraints:
        source=SBP.regex("source"),
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        n=SB["n_per_source"],
        seed=SB["seed"],
        options=lambda w: sbplan.loader_options(config, w.source),
        code=code("scripts/studyb_triplets.py"),
    script:
        "../scripts/studyb_triplets.py"


rule studyb_extract:
    input:
        triplets=SB_TRIPLETS,
        model=SB_EXTRACT_INPUT,
    output:
        SB_EXTRACTIONS,
    log:
        "logs/studyb_extract/{source}.log",
    benchmark:
        "benchmarks/studyb_extract/{source}.tsv"
    wildcard_constraints:
        source=SBP.regex("source"),
    conda:
        sbplan.conda_env(SB["extract"]["backend"])
    threads: res("judge", "threads")
    resources:
        mem_mb=res("judge", "mem_mb"),
        runtime=res("judge", "runtime"),
        gpu=res("judge", "gpu") if SB_EXTRACT_INPUT else 0,
    params:
        model=SBP.extract_model,
        spec=lambda w: model_spec(SBP.extract_model),
        backend=SB["extract"]["backend"],
        backend_settings=lambda w: backend_settings(
            SBP.extract_model, SB["extract"]["backend"]
        ),
        template=lambda w: SB_TEMPLATES["extract"],
        sampling=sbplan.sampling(SB["extract"], SB["seed"], SBP.values.values()),
        batch_size=SB["extract"]["batch_size"],
        code=code("scripts/studyb_extract.py"),
    script:
        "../scripts/studyb_extract.py"


rule studyb_subsets:
    input:
        triplets=expand(SB_TRIPLETS, source=SBP.sources),
        extractions=expand(SB_EXTRACTIONS, source=SBP.sources),
    output:
        subsets=f"{SB_RESULTS}/subsets.parquet",
        sizes=f"{SB_RESULTS}/subset_sizes.parquet",
        counts=f"{SB_RESULTS}/value_counts.parquet",
    log:
        "logs/studyb_subsets.log",
    benchmark:
        "benchmarks/studyb_subsets.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        values=list(SBP.values.values()),
        synonyms=SB["extract"]["synonyms"],
        code=code("scripts/studyb_subsets.py"),
    script:
        "../scripts/studyb_subsets.py"


# One value's subset in a file of its own: the training input. Adapters of the other values
# do not depend on it, so adding a value (or a synonym touching one) retrains only its own.
rule studyb_value_subset:
    input:
        triplets=expand(SB_TRIPLETS, source=SBP.sources),
        extractions=expand(SB_EXTRACTIONS, source=SBP.sources),
    output:
        f"{SB_RESULTS}/subsets/{{value}}.parquet",
    log:
        "logs/studyb_value_subset/{value}.log",
    benchmark:
        "benchmarks/studyb_value_subset/{value}.tsv"
    wildcard_constraints:
        value=SBP.regex("value"),
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        value=lambda w: SBP.values[w.value],
        synonyms=SB["extract"]["synonyms"],
        code=code("scripts/studyb_value_subset.py"),
    script:
        "../scripts/studyb_value_subset.py"


rule studyb_verify:
    input:
        subsets=f"{SB_RESULTS}/subsets.parquet",
        model=SB_VERIFY_INPUT,
    output:
        verifications=f"{SB_RESULTS}/verify/verifications.parquet",
        precision=f"{SB_RESULTS}/verify/precision.parquet",
        baselines=f"{SB_RESULTS}/verify/baselines.parquet",
        summary=f"{SB_RESULTS}/verify/summary.json",
    log:
        "logs/studyb_verify.log",
    benchmark:
        "benchmarks/studyb_verify.tsv"
    conda:
        sbplan.conda_env(SB["verify"]["backend"])
    threads: res("judge", "threads")
    resources:
        mem_mb=res("judge", "mem_mb"),
        runtime=res("judge", "runtime"),
        gpu=res("judge", "gpu") if SB_VERIFY_INPUT else 0,
    params:
        model=SBP.verify_model,
        spec=lambda w: model_spec(SBP.verify_model),
        backend=SB["verify"]["backend"],
        backend_settings=lambda w: backend_settings(
            SBP.verify_model, SB["verify"]["backend"]
        ),
        template=lambda w: SB_TEMPLATES["verify"],
        labels=lambda w: sbplan.verify_labels(config),
        values=list(SBP.values.values()),
        sampling=sbplan.sampling(SB["verify"], SB["seed"], sbplan.verify_labels(config)),
        synonyms=SB["extract"]["synonyms"],
        batch_size=SB["verify"]["batch_size"],
        baseline_ks=SB["verify"]["baseline_ks"],
        include_none=SB["verify"]["include_none"],
        code=code("scripts/studyb_verify.py"),
    script:
        "../scripts/studyb_verify.py"


# Tables 1-2 and Figure 9 for the report, from the extraction, subset and verification
# outputs (the extractions parsed again with the synonyms, as the subsets are).
rule studyb_preference_tables:
    input:
        extractions=expand(SB_EXTRACTIONS, source=SBP.sources),
        sizes=f"{SB_RESULTS}/subset_sizes.parquet",
        verifications=f"{SB_VERIFY}/verifications.parquet" if SBP.verify else [],
        precision=f"{SB_VERIFY}/precision.parquet" if SBP.verify else [],
        baselines=f"{SB_VERIFY}/baselines.parquet" if SBP.verify else [],
        summary=f"{SB_VERIFY}/summary.json" if SBP.verify else [],
    output:
        SB_PREFERENCE_TABLES,
    log:
        "logs/studyb_preference_tables.log",
    benchmark:
        "benchmarks/studyb_preference_tables.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=res("analysis", "mem_mb"),
        runtime=res("analysis", "runtime"),
    params:
        values=list(SBP.values.values()),
        synonyms=SB["extract"]["synonyms"],
        code=code("scripts/studyb_preference_tables.py"),
    script:
        "../scripts/studyb_preference_tables.py"


# Model id of an adapter: {model}/{method}-b{beta}/{value} (valueharms.plan.adapter_dir).
rule studyb_train:
    input:
        base=lambda w: plan.base_dir(w.model),
        pairs=f"{SB_RESULTS}/subsets/{{value}}.parquet",
    output:
        directory("results/models/{model}/{method}-b{beta}/{value}/adapter"),
    log:
        "logs/studyb_train/{model}/{method}/{beta}/{value}.log",
    benchmark:
        "benchmarks/studyb_train/{model}/{method}/{beta}/{value}.tsv"
    wildcard_constraints:
        model=SBP.regex("model"),
        method=SBP.regex("method"),
        beta=SBP.regex("beta"),
        value=SBP.regex("value"),
    conda:
        "../envs/train.yaml"
    threads: res("train", "threads")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=res("train", "gpu"),
    params:
        value=lambda w: SBP.values[w.value],
        settings=lambda w: sbplan.preference_settings(
            config, w.method, SBP.betas[w.beta]
        ),
        chat=lambda w: sbplan.train_chat(config, w.model),
        code=code("scripts/studyb_train.py"),
    script:
        "../scripts/studyb_train.py"


# ---------------------------------------------------------------- evaluation (B3)
# Study B's subjects generate and are judged by the shared generate / judge rules
# (rules/generate.smk, rules/judge.smk); their prompts, QA runs and tables are here.
SB_QA_IDS = [q["model_id"] for q in SBP.qa]


rule studyb_prompts:
    input:
        data=lambda w: SBP.data[w.sbbench][0],
        templates=lambda w: sbplan.prompt_templates(config, w.sbbench),
    output:
        "results/data/benchmarks/{sbbench}.parquet",
    log:
        "logs/studyb_prompts/{sbbench}.log",
    benchmark:
        "benchmarks/studyb_prompts/{sbbench}.tsv"
    wildcard_constraints:
        sbbench="|".join(sbplan.OWN_PROMPTS),
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=res("data", "mem_mb"),
        runtime=res("data", "runtime"),
    params:
        n_templates=lambda w: sbplan.n_templates(config, w.sbbench),
        n=lambda w: config["benchmarks"][w.sbbench]["n_prompts"],
        seed=config["benchmarks"]["seed"],
        code=code("scripts/studyb_prompts.py"),
    script:
        "../scripts/studyb_prompts.py"


rule studyb_qa:
    input:
        base=lambda w: plan.base_dir(w.qa_model.split("/")[0]),
        adapter=lambda w: adapter_input(w.qa_model),
    output:
        table=f"{SB_RESULTS}/qa/{{qa_model}}.parquet",
        results=f"{SB_RESULTS}/qa/{{qa_model}}.json",
    log:
        "logs/studyb_qa/{qa_model}.log",
    benchmark:
        "benchmarks/studyb_qa/{qa_model}.tsv"
    wildcard_constraints:
        qa_model=sbplan.choice_regex(SB_QA_IDS),
    conda:
        "../envs/train.yaml"
    threads: res("generate", "threads")
    resources:
        mem_mb=res("generate", "mem_mb"),
        runtime=res("generate", "runtime"),
        gpu=res("generate", "gpu"),
    params:
        model=lambda w: w.qa_model.split("/")[0],
        settings=SB["qa"],
        code=code("scripts/studyb_qa.py"),
    script:
        "../scripts/studyb_qa.py"


rule studyb_metrics:
    input:
        judgments=[plan.item_path("judgments", it) for it in SB_ITEMS],
        qa=[f"{SB_RESULTS}/qa/{m}.parquet" for m in SB_QA_IDS],
    output:
        SB_METRICS,
    log:
        "logs/studyb_metrics.log",
    benchmark:
        "benchmarks/studyb_metrics.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=res("analysis", "mem_mb"),
        runtime=res("analysis", "runtime"),
    params:
        subjects=[s.row() for s in SBP.eval],
        qa_subjects=SBP.qa,
        main_beta=sbplan.main_beta(config) if SBP.eval else None,
        values=list(SBP.values.values()),
        default_temperature=config["benchmarks"][sbplan.EXPRESSION]["temperature"],
        code=code("scripts/studyb_metrics.py"),
    script:
        "../scripts/studyb_metrics.py"
