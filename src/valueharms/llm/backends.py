"""Pick the backend that serves a model: hf or vllm for local weights, openai for an API.

A model whose `source` is `api` is served by an OpenAI-compatible endpoint (OpenAI, a
vLLM server); local models go to the configured local backend. Backend modules are
imported here lazily, so an environment without vllm or a network still runs hf.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from valueharms.llm.interface import Backend

LOCAL_BACKENDS = ("hf", "vllm")

log = logging.getLogger(__name__)


def since_process_start() -> float:
    """Seconds since this process started (interpreter start-up and imports included)."""
    try:
        import psutil  # snakemake's and vllm's dependency, not declared by us
    except ImportError:
        return float("nan")
    return time.time() - psutil.Process().create_time()


def make_backend(
    model_id: str,
    spec: dict[str, Any],
    kind: str,
    settings: dict[str, Any],
    base_dir: str | os.PathLike[str] | None = None,
    adapters: dict[str, str | Path] | None = None,
    threads: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Backend:
    """The backend for `model_id` (a key of config `models`, described by `spec`).

    `kind` is the configured local backend (hf | vllm); `settings` is config `backends`,
    plus config `tokenization` under that key for a local model (absent: its defaults).
    `cache_dir` holds the Batch API state (batch ids), so a restarted job resumes.
    """
    if spec.get("source") == "api":
        from valueharms.llm.openai_backend import OpenAIBackend

        if adapters:
            raise ValueError(f"model {model_id!r} is served by an API: it takes no local adapters")
        batch_dir = Path(cache_dir) / "batches" if cache_dir else None
        return OpenAIBackend(
            spec.get("name") or model_id,
            base_url=spec.get("base_url"),
            api_key_env=spec.get("api_key_env") or "OPENAI_API_KEY",
            revision=spec.get("revision"),
            reasoning=bool(spec.get("reasoning")),
            batch_dir=batch_dir,
            **settings["openai"],
        )
    if base_dir is None:
        raise ValueError(f"model {model_id!r} has local weights: base_dir is required")
    special = bool(settings.get("tokenization", {}).get("add_special_tokens", True))
    if kind == "vllm":
        from valueharms.llm.vllm_backend import VLLMBackend

        return VLLMBackend(
            model_id,
            base_dir,
            adapters=adapters,
            chat=spec["chat"],
            add_special_tokens=special,
            **settings["vllm"],
        )
    if kind != "hf":
        raise ValueError(f"unknown local backend {kind!r}; expected one of {LOCAL_BACKENDS}")
    from valueharms.llm.hf import HFBackend

    return HFBackend(
        model_id,
        base_dir,
        adapters=adapters,
        chat=spec["chat"],
        threads=threads,
        add_special_tokens=special,
        **settings["hf"],
    )


@dataclass(frozen=True)
class BackendSetup:
    """Which model a job queries and how it is served: what `make_backend` needs.

    `model_id` is a key of config `models` and `spec` its entry; `kind` the configured
    local backend (hf | vllm) and `settings` config `backends`; `base_dir` the local weights
    (None: a model served by an API); `cache_dir` config `cache_dir` (the job's LLM cache,
    and the Batch API state); `threads` the job's CPU threads.
    """

    model_id: str
    spec: Mapping[str, Any]
    kind: str
    settings: Mapping[str, Any]
    base_dir: str | None = None
    cache_dir: str | None = None
    threads: int | None = None

    def make(self, adapters: dict[str, str | Path] | None = None) -> Backend:
        """The backend, with `adapters` (name -> directory) loaded onto the base model.

        Logs the job's start-up: the time before the load (interpreter, imports, reading
        inputs) and the load itself, which every job pays before its first token."""
        before, t0 = since_process_start(), time.perf_counter()
        backend = make_backend(
            self.model_id,
            dict(self.spec),
            self.kind,
            dict(self.settings),
            self.base_dir,
            adapters,
            self.threads,
            self.cache_dir,
        )
        log.info(
            "start-up: %.1f s before the backend, %.1f s to load %s with %d adapters",
            before,
            time.perf_counter() - t0,
            self.model_id,
            len(adapters or {}),
        )
        return backend
