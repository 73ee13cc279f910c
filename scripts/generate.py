from valueharms import generate
from valueharms.job import Job

job = Job.from_snakemake(snakemake)  # noqa: F821
with job.logged():
    generate.run_job(job)
