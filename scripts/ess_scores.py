from valueharms.data import steps
from valueharms.runner import logged

smk = snakemake  # noqa: F821
with logged(smk):
    steps.ess_scores(
        smk.input.ess,
        smk.params.reverse_code,
        smk.output.scores,
        smk.output.counts,
        smk.params.expected_rows,
    )
