from valueharms.runner import logged
from valueharms.studyb import steps

smk = snakemake  # noqa: F821
with logged(smk):
    steps.eval_prompts(
        smk.wildcards.sbbench,
        smk.input.data,
        smk.input.templates or None,
        smk.params.n_templates,
        smk.params.n,
        smk.params.seed,
        smk.output[0],
    )
