from valueharms import analysis
from valueharms.runner import logged

smk = snakemake  # noqa: F821
with logged(smk):
    analysis.metrics(
        list(smk.input),
        smk.wildcards.benchmark,
        dict(smk.params.settings),
        smk.output.metrics,
        smk.output.scores,
    )
