from valueharms.judge import steps
from valueharms.runner import logged, threads

smk = snakemake  # noqa: F821
with logged(smk):
    steps.run(
        smk.input.generations,
        smk.wildcards.benchmark,
        smk.params.kind,
        dict(smk.params.judge),
        smk.params.template,
        smk.params.judge_name,
        smk.input.judge_model or None,
        smk.params.judge_spec,
        smk.params.backend_settings,
        smk.config["cache_dir"],
        smk.output[0],
        threads=threads(smk),
    )
