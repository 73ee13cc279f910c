from valueharms.runner import logged, threads
from valueharms.train import steps

smk = snakemake  # noqa: F821
with logged(smk):
    steps.vim_stage(
        smk.input.base,
        smk.input.examples,
        smk.params.stage,
        dict(smk.params.train),
        smk.output[0],
        init_adapter=smk.input.get("init"),
        chat=smk.params.chat,
        threads=threads(smk),
    )
