from valueharms.runner import logged
from valueharms.train import steps

smk = snakemake  # noqa: F821
with logged(smk):
    steps.prepare_model(dict(smk.params.spec), smk.output[0])
