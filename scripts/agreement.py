from valueharms.job import Job
from valueharms.judge import agreement

job = Job.from_snakemake(snakemake)  # noqa: F821
with job.logged():
    agreement.agreement_job(job)
