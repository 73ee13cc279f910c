"""IssueBench (Röttger et al. 2025): writing prompts on political issues; Study B's value
expression, judged by the value extractor (METHODS B3). Its prompt table is built by
valueharms.studyb.issuebench."""

from valueharms.benchmarks import Benchmark, register
from valueharms.data.sources import Source

NAME = "issuebench"
SOURCE = Source(
    NAME,
    "issuebench/issues.csv",
    None,
    None,
    "IssueBench issues (issues.csv, with datasets.issuebench.templates_path) or a "
    "prompts file (template_id, topic_id, topic_polarity, prompt_text)",
    "take 2_final_dataset/prompt_ingredients/issues.csv and templates_sample.csv "
    "from github.com/paul-rottger/issuebench (or a prompts file of the HF dataset "
    "Paul/IssueBench), set datasets.issuebench.path and .templates_path",
    revision=None,
    upstream="Röttger et al. 2025, IssueBench (github.com/paul-rottger/issuebench)",
    licence="CC-BY-4.0",
)


register(Benchmark(name=NAME, source=SOURCE, label="IssueBench", role="studyb", judge="values"))
