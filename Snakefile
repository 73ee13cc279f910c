# valueharms: Study A (Choi et al., ACL 2025) as a Snakemake pipeline.
# The rules live in rules/, one file per stage; the logic in src/valueharms/.
# Without --configfile the demo config is used (see rules/common.smk).


include: "rules/common.smk"


wildcard_constraints:
    benchmark="|".join(benchmarks.names()),
    condition="[A-Za-z0-9_.+-]+",
    dist="[A-Za-z0-9_.+-]+",
    tgroup="vim-[0-9]+",
    base="[A-Za-z0-9_.-]+",
    dataset="[a-z0-9_]+",
    name="alpaca|dolly|grammar|samsum",


include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/generate.smk"
include: "rules/judge.smk"
include: "rules/agreement.smk"
include: "rules/metrics.smk"
include: "rules/stats.smk"
include: "rules/studyb.smk"
include: "rules/report.smk"


# Before the first job: stop on a key, classifier or template a job would fail on.
onstart:
    preflight.check(PLAN, {job.rule.name for job in workflow.dag.needrun_jobs()})
    # One process pays the imports for every local job (config worker.enabled).
    if config["worker"]["enabled"] and workflow.local_exec and not workflow.dryrun:
        atexit.register(
            worker.stop, *worker.start(".snakemake/valueharms-worker.log")
        )


rule all:
    default_target: True
    input:
        "results/report/index.html" if SUBJECTS or SBP.eval else [],
        # Every subject's generations as a file of its own (cut from the group tables).
        [plan.item_path("generations", it) for it in GEN_ITEMS],
        SBP.targets(),
