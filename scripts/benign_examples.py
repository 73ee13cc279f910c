from valueharms.data import steps
from valueharms.runner import logged

smk = snakemake  # noqa: F821
with logged(smk):
    steps.benign(
        smk.wildcards.name,
        smk.input.data,
        smk.input.valid or None,
        smk.params.seed,
        smk.params.max_examples,
        list(smk.params.exclude_categories),
        smk.output[0],
        smk.params.expected_rows,
        smk.params.valid_expected_rows,
    )
