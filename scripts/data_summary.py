from valueharms.data import steps
from valueharms.runner import logged

smk = snakemake  # noqa: F821
with logged(smk):
    steps.data_summary(
        dict(zip(smk.params.names, smk.input.data, strict=True)),
        dict(smk.params.config),
        smk.input.distributions,
        smk.input.split_sizes or None,
        smk.output[0],
    )
