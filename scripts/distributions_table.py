from valueharms.data import steps
from valueharms.runner import logged

smk = snakemake  # noqa: F821
with logged(smk):
    steps.distributions_table(
        dict(smk.params.specs), smk.input.ess_scores or None, smk.output[0], smk.input.table or None
    )
