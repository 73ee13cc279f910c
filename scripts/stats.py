from valueharms import analysis
from valueharms.runner import logged

smk = snakemake  # noqa: F821
with logged(smk):
    analysis.stats(
        list(smk.input.metrics),
        list(smk.input.scores),
        smk.input.distributions,
        list(smk.params.subjects),
        dict(smk.params.settings),
        smk.output.comparisons,
        smk.output.correlations,
    )
