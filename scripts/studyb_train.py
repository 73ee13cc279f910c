from valueharms.job import Job
from valueharms.studyb import steps

job = Job.from_snakemake(snakemake)  # noqa: F821
with job.logged():
    steps.train_adapter_job(job)
