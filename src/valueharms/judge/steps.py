"""Judge-stage step: one subject's generations for one benchmark in, judgments out."""

from __future__ import annotations

from typing import Any

from valueharms.generate import GENERATIONS_SCHEMA
from valueharms.io import read_table, write_table
from valueharms.judge.run import judge_regard, judge_toxicity, judge_with_llm
from valueharms.judge.schema import JUDGMENTS_SCHEMA
from valueharms.judge.toxicity import make_scorer
from valueharms.llm.cache import LLMCache


def run(
    generations_path: str,
    benchmark: str,
    kind: str,
    judge: dict[str, Any],
    template: str | None,
    judge_name: str,
    judge_base_dir: str | None,
    judge_spec: dict[str, Any] | None,
    backend_settings: dict[str, Any] | None,
    cache_dir: str,
    out: str,
    threads: int = 1,
) -> None:
    gens = read_table(generations_path, GENERATIONS_SCHEMA)
    if kind == "toxicity":
        df = judge_toxicity(gens, make_scorer(judge, LLMCache(cache_dir)))
    elif kind == "regard":
        from valueharms.judge.regard import RegardClassifier

        if not judge.get("path"):
            raise ValueError("judges.regard.path must name a regard classifier directory")
        df = judge_regard(gens, RegardClassifier(judge["path"], batch_size=judge["batch_size"]))
    else:
        from valueharms.llm.backends import make_backend

        assert template and judge_spec is not None and backend_settings is not None
        server = make_backend(
            judge["model"],
            judge_spec,
            judge["backend"],
            backend_settings,
            judge_base_dir,
            threads=threads,
            cache_dir=cache_dir,
        )
        df = judge_with_llm(
            gens,
            benchmark,
            template,
            server,
            LLMCache(cache_dir),
            judge_name,
            max_new_tokens=judge["max_new_tokens"],
            batch_size=judge["batch_size"],
            mode=judge["mode"],
        )
    write_table(out, df, JUDGMENTS_SCHEMA)
