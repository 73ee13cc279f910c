from valueharms import analysis
from valueharms.runner import logged

smk = snakemake  # noqa: F821
with logged(smk):
    bases = {path.split("/")[2]: path for path in smk.input.bases}
    # Study A's inputs are empty lists when it is off; Study B's are absent or empty/None
    # when it is off.
    analysis.report(
        list(smk.input.metrics),
        smk.input.comparisons,
        smk.input.correlations,
        smk.input.distributions,
        list(smk.params.subjects),
        smk.config,
        smk.params.config_hash,
        dict(smk.params.judge_names),
        bases,
        smk.output[0],
        nmse_path=smk.input.nmse or None,
        mitigation_path=smk.input.mitigation or None,
        studyb_table_paths=list(getattr(smk.input, "studyb_tables", [])),
        studyb_info=getattr(smk.params, "studyb", None),
    )
