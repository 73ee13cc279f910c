import os

from valueharms.runner import logged
from valueharms.studyb import steps

smk = snakemake  # noqa: F821
with logged(smk):
    steps.tables(
        list(smk.input.judgments),
        list(smk.input.qa),
        list(smk.params.subjects),
        list(smk.params.qa_subjects),
        smk.params.main_beta,
        list(smk.params.values),
        smk.params.default_temperature,
        os.path.dirname(smk.output[0]),  # results/studyb/metrics
    )
