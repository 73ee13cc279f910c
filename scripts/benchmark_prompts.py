from valueharms.data import steps
from valueharms.runner import logged

smk = snakemake  # noqa: F821
with logged(smk):
    steps.benchmark_prompts(
        smk.params.name,
        smk.input[0],
        smk.params.n,
        smk.params.mode,
        smk.params.seed,
        smk.output[0],
        smk.params.expected_rows,
    )
