from valueharms.runner import logged
from valueharms.studyb import steps

smk = snakemake  # noqa: F821
with logged(smk):
    steps.qa(
        smk.input.base,
        smk.input.adapter[0] if smk.input.adapter else None,
        smk.params.model,
        smk.wildcards.qa_model,
        dict(smk.params.settings),
        smk.output.table,
    )
