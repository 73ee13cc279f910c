from valueharms.data import steps
from valueharms.runner import logged

smk = snakemake  # noqa: F821
with logged(smk):
    steps.fetch_dataset(
        smk.wildcards.dataset,
        smk.output.data,
        smk.params.overrides,
        smk.output.provenance,
    )
