"""Identical requests inside one job reach the backend once (issue 21, item 4)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from valueharms.generate import Member, generate
from valueharms.llm.cache import LLMCache, cache_key, cached_generate
from valueharms.llm.interface import STATUS_FAILED, STATUS_OK, Request, Sampling

S = Sampling(max_new_tokens=8)


def repeated(n_distinct: int, copies: int, sampling: Sampling = S) -> list[Request]:
    """`n_distinct` questions, each asked `copies` times under its own join key, interleaved."""
    return [
        Request(f"k{c}-{i}", messages=(("user", f"question {i}"),), sampling=sampling)
        for c in range(copies)
        for i in range(n_distinct)
    ]


def n_entries(root: Path) -> int:
    return len(list(root.rglob("*.json")))


def test_one_backend_request_per_distinct_key(tmp_path: Path, fake_backend_cls) -> None:
    backend = fake_backend_cls()
    requests = repeated(5, 3)  # 15 requests, 5 cache keys
    out = cached_generate(backend, requests, LLMCache(tmp_path), batch_size=2)
    keys = {cache_key(backend.identity(r.adapter), r) for r in requests}
    assert len(keys) == 5
    assert backend.n_requests == len(keys)
    assert backend.requested_keys() == [f"k0-{i}" for i in range(5)]  # the first of each
    assert [len(c) for c in backend.calls] == [2, 2, 1]
    # In request order, each under its own join key, duplicates sharing the first's answer.
    assert [r.key for r in out] == [r.key for r in requests]
    assert [r.texts for r in out] == [[f"k0-{i}|question {i}"] for _ in range(3) for i in range(5)]
    assert all(r.status == STATUS_OK and r.cached is False for r in out)
    assert n_entries(tmp_path) == 5


def test_duplicates_are_independent_copies(tmp_path: Path, fake_backend_cls) -> None:
    out = cached_generate(fake_backend_cls(), repeated(1, 2), LLMCache(tmp_path))
    out[0].texts.append("changed by the caller")
    assert out[1].texts == ["k0-0|question 0"]


def test_duplicates_of_a_cached_request_make_no_call(tmp_path: Path, fake_backend_cls) -> None:
    cache = LLMCache(tmp_path)
    cached_generate(fake_backend_cls(), repeated(2, 1), cache)
    cache.hits = cache.misses = 0
    backend = fake_backend_cls()
    out = cached_generate(backend, repeated(3, 2), cache)  # question 2 is new
    assert backend.requested_keys() == ["k0-2"]
    assert [r.cached for r in out] == [True, True, False, True, True, False]
    assert [r.key for r in out] == ["k0-0", "k0-1", "k0-2", "k1-0", "k1-1", "k1-2"]
    assert cache.misses == 1 and cache.hits == 5


def test_duplicates_of_a_failed_request_fail_and_are_retried(
    tmp_path: Path, fake_backend_cls
) -> None:
    cache = LLMCache(tmp_path)
    flaky = fake_backend_cls(fail={"k0-1"})
    out = cached_generate(flaky, repeated(2, 3), cache)
    assert flaky.n_requests == 2
    assert [r.status for r in out] == [STATUS_OK, STATUS_FAILED] * 3
    failed = [r for r in out if r.status == STATUS_FAILED]
    assert [r.key for r in failed] == ["k0-1", "k1-1", "k2-1"]
    assert all(r.texts == [] and r.error == "RuntimeError: told to fail" for r in failed)
    assert n_entries(tmp_path) == 1  # the failure is not cached
    healthy = fake_backend_cls()
    again = cached_generate(healthy, repeated(2, 3), cache)
    assert healthy.requested_keys() == ["k0-1"]
    assert [r.status for r in again] == [STATUS_OK] * 6


def test_what_decides_the_answer_keeps_requests_apart(tmp_path: Path, fake_backend_cls) -> None:
    base = Request("a", messages=(("user", "q"),), sampling=S)
    others = [
        Request("b", messages=(("user", "q"),), sampling=Sampling(max_new_tokens=8, seed=1)),
        Request("c", messages=(("user", "q"),), sampling=S, adapter="subject"),
        Request("d", messages=(("system", "s"), ("user", "q")), sampling=S),
        Request("e", messages=(("user", "q"),), sampling=S, chat_template=False),
    ]
    backend = fake_backend_cls()
    cached_generate(
        backend,
        [base, *others, Request("f", messages=base.messages, sampling=S)],
        LLMCache(tmp_path),
    )
    assert backend.requested_keys() == ["a", "b", "c", "d", "e"]


def test_progress_counts_every_request_once(tmp_path: Path, fake_backend_cls) -> None:
    cache = LLMCache(tmp_path)
    cached_generate(fake_backend_cls(), repeated(1, 1), cache)
    seen: list[int] = []
    cached_generate(fake_backend_cls(), repeated(4, 2), cache, batch_size=2, progress=seen.append)
    assert seen == [2, 4, 2]  # question 0 twice from the cache; then 2 keys x 2 copies, ...
    assert sum(seen) == 8


def test_a_generation_job_with_repeated_prompts_pays_once_per_prompt_text(
    tmp_path: Path, fake_backend_cls
) -> None:
    texts = ["same", "other", "same", "same", "other", "third"]
    prompts = pd.DataFrame(
        {
            "benchmark": ["rtp"] * 6,
            "prompt_id": [f"p{i}" for i in range(6)],
            "prompt": texts,
            "category": ["c"] * 6,
            "axis": [None] * 6,
            "descriptor": [None] * 6,
        }
    )
    backend = fake_backend_cls()
    df = generate(prompts, backend, LLMCache(tmp_path), Member("m", "plain"), "{prompt}", S)
    assert backend.requested_keys() == ["p0", "p1", "p5"]
    assert df["prompt_id"].tolist() == [f"p{i}" for i in range(6)]
    first = {"same": "p0|same", "other": "p1|other", "third": "p5|third"}
    assert df["output"].tolist() == [first[t] for t in texts]
