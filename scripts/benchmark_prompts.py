from valueharms.job import Job
from valueharms.worker import run

# In this run's worker if there is one (valueharms.worker), else in this process.
run("valueharms.data.steps:benchmark_prompts_job", Job.from_snakemake(snakemake))  # noqa: F821
