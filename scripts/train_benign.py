from valueharms.data.benign import BENIGN_SCHEMA
from valueharms.io import read_table
from valueharms.runner import logged, threads
from valueharms.train import steps

smk = snakemake  # noqa: F821
with logged(smk):
    steps.train_examples(
        smk.input.base,
        read_table(smk.input.examples, BENIGN_SCHEMA),
        dict(smk.params.train),
        smk.output[0],
        chat=smk.params.chat,
        threads=threads(smk),
    )
