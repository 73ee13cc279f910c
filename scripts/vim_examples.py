from valueharms.data import steps
from valueharms.runner import logged

smk = snakemake  # noqa: F821
with logged(smk):
    steps.vim_examples(
        smk.input.distribution,
        smk.input.touche,
        smk.input.stage2_train,
        smk.input.stage2_valid,
        dict(smk.params.templates),
        smk.params.threshold,
        smk.params.strategy,
        smk.params.seed,
        smk.output[0],
    )
