from valueharms.job import Job
from valueharms.judge import steps

job = Job.from_snakemake(snakemake)  # noqa: F821
with job.logged():
    steps.run_job(job)
