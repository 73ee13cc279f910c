from valueharms.data import steps
from valueharms.job import Job

job = Job.from_snakemake(snakemake)  # noqa: F821
with job.logged():
    steps.distribution_job(job)
