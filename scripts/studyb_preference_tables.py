from valueharms.job import Job
from valueharms.metrics import studyb

job = Job.from_snakemake(snakemake)  # noqa: F821
with job.logged():
    studyb.preference_tables_job(job)
