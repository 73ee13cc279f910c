"""make_backend: local weights go to hf or vllm, API models to the openai backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from valueharms.config import validate
from valueharms.llm.backends import make_backend
from valueharms.llm.cache import LLMCache, cached_generate
from valueharms.llm.interface import Request, Sampling

SETTINGS = validate({})["backends"]


def test_local_model_goes_to_hf_with_its_settings(tiny_model_dir: Path) -> None:
    from valueharms.llm.hf import HFBackend

    spec = {"source": "path", "chat": False}
    settings = {"hf": {"mixed_adapters": False}}
    backend = make_backend("tiny", spec, "hf", settings, tiny_model_dir, threads=1)
    assert isinstance(backend, HFBackend)
    assert backend.mixed_adapters is False and backend.chat is False
    assert backend.identity(None)["backend"] == "hf"


def test_api_model_goes_to_openai_with_batch_state_under_the_cache(tmp_path: Path) -> None:
    from valueharms.llm.openai_backend import OpenAIBackend

    spec = {"source": "api", "name": "gpt-4o", "revision": "gpt-4o-2024-08-06"}
    settings = {"openai": {**SETTINGS["openai"], "batch": True}}
    backend = make_backend("judge", spec, "hf", settings, cache_dir=tmp_path)
    assert isinstance(backend, OpenAIBackend)
    assert backend.identity(None) == {
        "backend": "openai",
        "model": "gpt-4o",
        "revision": "gpt-4o-2024-08-06",
    }
    assert backend.chunk_size == 50_000  # one Batch API batch per call


def test_misuse_is_a_clear_error(tmp_path: Path) -> None:
    api = {"source": "api"}
    with pytest.raises(ValueError, match="takes no local adapters"):
        make_backend("judge", api, "hf", SETTINGS, adapters={"a": tmp_path})
    with pytest.raises(ValueError, match="base_dir is required"):
        make_backend("m", {"source": "path", "chat": True}, "hf", SETTINGS)
    with pytest.raises(ValueError, match="unknown local backend"):
        make_backend("m", {"source": "path", "chat": True}, "tgi", SETTINGS, tmp_path)


def test_cached_generate_follows_the_backend_chunk_size(tmp_path: Path, fake_backend_cls) -> None:
    backend = fake_backend_cls()
    backend.chunk_size = 5
    reqs = [Request(f"k{i}", prompt=f"p{i}", sampling=Sampling()) for i in range(12)]
    cached_generate(backend, reqs, LLMCache(tmp_path), batch_size=2)
    assert [len(c) for c in backend.calls] == [5, 5, 2]
