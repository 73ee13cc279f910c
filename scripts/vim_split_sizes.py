from valueharms.data import steps
from valueharms.runner import logged

smk = snakemake  # noqa: F821
with logged(smk):
    steps.vim_split_sizes(
        smk.input.distributions,
        smk.input.touche,
        smk.input.stage2_train,
        smk.input.stage2_valid,
        smk.params.threshold,
        smk.params.strategy,
        smk.params.seed,
        smk.output[0],
    )
