from valueharms.job import Job
from valueharms.train import steps

job = Job.from_snakemake(snakemake)  # noqa: F821
with job.logged():
    steps.train_benign_job(job)
