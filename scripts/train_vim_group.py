from valueharms.job import Job
from valueharms.train import groups

job = Job.from_snakemake(snakemake)  # noqa: F821
with job.logged():
    groups.train_group_job(job)
