from valueharms.data import steps
from valueharms.runner import logged

smk = snakemake  # noqa: F821
with logged(smk):
    ess = smk.input.ess_scores or None
    table = smk.input.table or None
    steps.distribution(smk.wildcards.dist, smk.params.spec, ess, smk.output[0], table)
