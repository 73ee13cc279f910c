"""Content-addressed cache of LLM answers: one JSON file per entry.

A file per entry, written by temp file + rename, is safe with many jobs writing at once
on a shared filesystem (no lock, no database), and lets a killed job resume: every
answer it already paid for is on disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from valueharms.hashing import sha256_json
from valueharms.io import write_text
from valueharms.llm.interface import STATUS_OK, Backend, Request, Response


def cache_key(identity: dict[str, Any], request: Request) -> str:
    return sha256_json({"model": identity, "request": request.content()})


class LLMCache:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> list[str] | None:
        try:
            entry = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return entry["texts"]

    def put(self, key: str, texts: list[str], meta: dict[str, Any]) -> None:
        write_text(self._path(key), json.dumps({"texts": texts, **meta}, ensure_ascii=False))


def cached_generate(
    backend: Backend,
    requests: list[Request],
    cache: LLMCache,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> list[Response]:
    """Answer `requests`, calling the backend only for those not in the cache.

    Requests with the same cache key reach the backend once per call (the first in
    order); every duplicate gets a copy of that answer under its own `key`, failures
    included. Answers are stored batch by batch, so a killed job loses at most one batch.
    Failed calls are returned as failures and never cached. A backend may set its own
    `chunk_size` (the Batch API wants every request in one call).
    """
    batch_size = getattr(backend, "chunk_size", None) or batch_size
    out: list[Response | None] = [None] * len(requests)
    todo: list[tuple[str, Request]] = []  # one per distinct uncached key, first in order
    waiting: dict[str, list[int]] = {}  # uncached key -> positions of all its requests
    for i, req in enumerate(requests):
        key = cache_key(backend.identity(req.adapter), req)
        if key in waiting:
            waiting[key].append(i)
            continue
        texts = cache.get(key)
        if texts is None:
            todo.append((key, req))
            waiting[key] = [i]
        else:
            out[i] = Response(req.key, texts, cached=True)
    cache.hits += len(requests) - len(todo)
    cache.misses += len(todo)
    n_ready = len(requests) - sum(len(v) for v in waiting.values())
    if progress and n_ready:
        progress(n_ready)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        done = 0
        for (key, req), resp in zip(chunk, backend.generate([r for _, r in chunk]), strict=True):
            if resp.status == STATUS_OK:
                cache.put(key, resp.texts, {"identity": backend.identity(req.adapter)})
            for i in waiting[key]:
                out[i] = replace(resp, key=requests[i].key, texts=list(resp.texts))
            done += len(waiting[key])
        if progress:
            progress(done)
    answered = [r for r in out if r is not None]
    assert len(answered) == len(requests)
    return answered
