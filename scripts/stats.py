from valueharms import analysis
from valueharms.job import Job

job = Job.from_snakemake(snakemake)  # noqa: F821
with job.logged():
    analysis.stats_job(job)
