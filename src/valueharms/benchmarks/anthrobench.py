"""AnthroBench (Ibrahim et al. 2025): probes of anthropomorphic behaviour; Study B's
anthropomorphism, judged per behaviour (METHODS B3). Its prompt table is built by
valueharms.studyb.anthrobench."""

from valueharms.benchmarks import Benchmark, register
from valueharms.data.sources import Source

NAME = "anthrobench"
SOURCE = Source(
    NAME,
    "anthrobench/prompts.csv",
    None,
    None,
    "AnthroBench probing prompts (CSV/JSONL: prompt, behaviour and/or group, id)",
    "AnthroBench (Ibrahim et al. 2025, arXiv 2502.07077) has no public prompt file we "
    "know of: write the probing prompts in our layout (valueharms.studyb.anthrobench) "
    "and set datasets.anthrobench.path",
    revision=None,
    upstream="Ibrahim et al. 2025, AnthroBench (arXiv 2502.07077)",
    licence="as its authors state",
)


register(Benchmark(name=NAME, source=SOURCE, label="AnthroBench", role="studyb", judge="anthro"))
