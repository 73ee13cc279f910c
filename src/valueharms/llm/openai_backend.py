"""OpenAI-compatible backend: the OpenAI API, or a local vLLM server speaking it.

Two modes behind the one `generate` call:

* online: a thread pool sends each request to chat completions (requests with messages)
  or completions (prompt-only requests); transient failures (429, 408, 5xx, timeouts,
  connection errors, malformed bodies) are retried with our own exponential backoff,
  honouring `Retry-After`. The openai client's own retries are off, so the policy and the
  counters (`calls`, `retries`, `failed`) are ours and tests can check them.
* batch: the requests go to the Batch API as one JSONL file per endpoint. The batch id is
  persisted in `batch_dir` before polling, under a hash of the request set, so a killed
  job resumes polling the batch it already paid for instead of submitting it again.

Failures come back as failed `Response`s (never cached by `cached_generate`); setup
errors (a missing key, `Sampling.choices`) raise. The API key is read only from the
environment and is scrubbed from every error message this module stores or logs.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from valueharms.hashing import sha256_json
from valueharms.http_retry import retry_after as retry_after_header
from valueharms.io import jsonl_objects, write_json
from valueharms.llm.interface import STATUS_FAILED, Choice, Request, Response, length_cut

log = logging.getLogger(__name__)

T = TypeVar("T")

CHAT_URL = "/v1/chat/completions"
COMPLETIONS_URL = "/v1/completions"
# Batch states after which nothing more will happen to the batch.
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
# Local OpenAI-compatible servers (vLLM) accept any key; these hosts may run without one.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
LOCAL_DUMMY_KEY = "EMPTY"
MAX_ERROR_CHARS = 300


class MissingAPIKeyError(RuntimeError):
    """The environment variable meant to hold the API key is unset."""


class MalformedResponseError(Exception):
    """A 200 response whose body is not a usable completion (retried like a 5xx)."""


@dataclass(frozen=True)
class OpenAISettings:
    """How an OpenAIBackend reaches its model and paces its calls.

    From config `models`: the endpoint (`base_url`, None: OpenAI's), the environment
    variable holding the key, the model's `revision` label and whether it is a
    `reasoning` model (o1, o3, o4-mini: max_completion_tokens, and no temperature or
    top_p, which those models refuse unless left at their defaults). From config
    `backends.openai`: requests in flight, retries with exponential backoff, the request
    timeout, and the Batch API (`batch`, its ids kept in `batch_dir`, polled every
    `poll_interval` seconds).
    """

    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    revision: str | None = None
    reasoning: bool = False
    concurrency: int = 8
    max_retries: int = 5
    timeout: float = 60.0
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    batch: bool = False
    batch_dir: str | os.PathLike[str] | None = None
    poll_interval: float = 30.0
    completion_window: str = "24h"
    # Reasoning models spend hidden tokens before the visible answer: their own budget,
    # and one retry at `reasoning_retry_factor` times it when a reply is still cut.
    reasoning_budget: int = 16384
    reasoning_retry_factor: int = 4

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.batch and self.batch_dir is None:
            raise ValueError("batch mode needs batch_dir, where running batch ids are kept")


class OpenAIBackend:
    """Backend protocol over an OpenAI-compatible HTTP API."""

    def __init__(self, model: str, **settings: Any) -> None:
        """`settings` are OpenAISettings fields (unknown ones raise TypeError)."""
        s = OpenAISettings(**settings)
        self.settings = s
        self.model = model
        self.base_url = s.base_url
        self.api_key_env = s.api_key_env
        self.revision = s.revision
        self.reasoning = s.reasoning
        self.concurrency = s.concurrency
        self.max_retries = s.max_retries
        self.timeout = s.timeout
        self.backoff_base = s.backoff_base
        self.backoff_max = s.backoff_max
        self.batch = s.batch
        self.batch_dir = Path(s.batch_dir) if s.batch_dir is not None else None
        self.poll_interval = s.poll_interval
        self.completion_window = s.completion_window
        self.reasoning_budget = s.reasoning_budget
        self.reasoning_retry_factor = s.reasoning_retry_factor
        self.length_retries = 0  # reasoning replies asked again with the larger budget
        self.calls = 0  # HTTP attempts, retries included
        self.retries = 0
        self.failed = 0  # requests answered with a failed Response
        self._lock = threading.Lock()
        self._client: Any = None
        self._key = ""

    @property
    def chunk_size(self) -> int:
        """Requests per `generate` call that suit this backend (see cached_generate).

        A Batch API batch takes up to 50,000 requests and each call waits for its batch,
        so all requests go in one; online, a few rounds of the thread pool per call keep
        it busy while a crash loses little.
        """
        return 50_000 if self.batch else 4 * self.concurrency

    def identity(self, adapter: str | None) -> dict[str, Any]:
        # The endpoint and key are where the model runs, not what it is: never part of it.
        out = {
            "backend": "openai",
            "model": adapter or self.model,
            "revision": self.revision or self.model,
        }
        if self.reasoning:  # the budget decides whether a reasoning reply is cut
            out["reasoning_budget"] = [self.reasoning_budget, self.reasoning_retry_factor]
        return out

    # --- setup ----------------------------------------------------------------------------

    def _api_key(self) -> str:
        key = os.environ.get(self.api_key_env)
        if key:
            return key
        host = urlsplit(self.base_url).hostname if self.base_url else None
        if host in LOCAL_HOSTS:
            return LOCAL_DUMMY_KEY
        raise MissingAPIKeyError(
            f"environment variable {self.api_key_env} is not set; the openai backend reads "
            "its API key only from there (export it, or set api_key_env)"
        )

    def _get_client(self) -> Any:
        # Built on first use, so a fully cached run needs neither a key nor the package.
        with self._lock:
            if self._client is None:
                import openai

                self._key = self._api_key()
                self._client = openai.OpenAI(
                    api_key=self._key,
                    base_url=self.base_url,
                    timeout=self.timeout,
                    max_retries=0,  # the retry policy is ours (see _retrying)
                )
            return self._client

    def _prepare(self, req: Request) -> tuple[str, dict[str, Any]]:
        """The endpoint path and JSON body for one request."""
        s = req.sampling
        if s.choices:
            raise ValueError(
                f"request {req.key!r}: Sampling.choices (constrained verdicts) is not supported "
                "by the openai backend; use judges.llm.mode: generate with remote judges"
            )
        body: dict[str, Any] = {
            # vLLM's OpenAI server serves each LoRA adapter under its own model name.
            "model": req.adapter or self.model,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "n": s.n,
            "seed": s.seed,
            "max_tokens": s.max_new_tokens,
        }
        if self.reasoning and req.messages:
            del body["temperature"], body["top_p"], body["max_tokens"]
            body["max_completion_tokens"] = max(s.max_new_tokens, self.reasoning_budget)
        if req.messages:
            body["messages"] = [{"role": r, "content": c} for r, c in req.messages]
            return CHAT_URL, body
        if req.prompt is not None:
            body["prompt"] = req.prompt
            return COMPLETIONS_URL, body
        raise ValueError(f"request {req.key!r} has neither messages nor a prompt")

    # --- entry point ----------------------------------------------------------------------

    def generate(self, requests: list[Request]) -> list[Response]:
        # Configuration errors surface before any request is paid for.
        prepared = [self._prepare(r) for r in requests]
        if not requests:
            return []
        self._get_client()
        if self.batch:
            return self._generate_batch(requests, prepared)
        workers = min(self.concurrency, len(requests))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai") as pool:
            return list(pool.map(self._answer_online, requests, prepared))

    # --- retries --------------------------------------------------------------------------

    def _clip(self, text: str) -> str:
        """`text` on one line, the key masked, cut short: safe to store and log.

        Masked before cutting, so a cut can never leave a prefix of the key behind.
        """
        text = " ".join(text.split())
        if self._key and self._key != LOCAL_DUMMY_KEY:
            text = text.replace(self._key, "***")
        if len(text) > MAX_ERROR_CHARS:
            text = text[: MAX_ERROR_CHARS - 3] + "..."
        return text

    def _describe(self, err: BaseException) -> str:
        """'ErrorType: short message', safe to store and log."""
        return self._clip(f"{type(err).__name__}: {err}")

    def _bump(self, counter: str, by: int = 1) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + by)

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_base * 2**attempt, self.backoff_max)
        # Jitter spreads retries of many workers hit by the same rate limit.
        return delay * random.uniform(0.5, 1.0)

    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        """Call `fn`, retrying transient failures; re-raise the last error when spent."""
        import openai

        attempt = 0
        while True:
            self._bump("calls")
            try:
                return fn()
            except Exception as err:
                retry_after: float | None = None
                if isinstance(err, openai.APIStatusError):
                    code = err.status_code
                    transient = code in (408, 429) or code >= 500
                    retry_after = retry_after_header(err.response.headers)
                else:
                    # APITimeoutError is an APIConnectionError; a body the client could not
                    # decode (or one we found unusable) is a server hiccup, like a 5xx.
                    transient = isinstance(
                        err,
                        openai.APIConnectionError
                        | openai.APIResponseValidationError
                        | MalformedResponseError
                        | json.JSONDecodeError,
                    )
                if not transient or attempt >= self.max_retries:
                    raise
                wait = retry_after if retry_after is not None else self._backoff(attempt)
                self._bump("retries")
                log.warning(
                    "%s: %s; retry %d/%d in %.2fs",
                    what,
                    self._describe(err),
                    attempt + 1,
                    self.max_retries,
                    wait,
                )
                time.sleep(wait)
                attempt += 1

    # --- online ---------------------------------------------------------------------------

    def _post(self, url: str, body: dict[str, Any]) -> list[Choice]:
        client = self._client
        endpoint = client.chat.completions if url == CHAT_URL else client.completions
        # The raw body, parsed here, so a malformed answer is caught (and retried) by us
        # instead of surfacing as a half-built model object.
        raw = endpoint.with_raw_response.create(**body)
        return extract_choices(json.loads(raw.text), url == CHAT_URL, body["n"])

    def _answer_online(self, req: Request, prepared: tuple[str, dict[str, Any]]) -> Response:
        url, body = prepared
        try:
            choices = self._retrying(f"request {req.key}", partial(self._post, url, body))
            budget = body.get("max_completion_tokens")
            if self._retry_longer(req, choices, budget):
                self._bump("length_retries")
                body = {**body, "max_completion_tokens": budget * self.reasoning_retry_factor}
                choices = self._retrying(f"request {req.key}", partial(self._post, url, body))
        except Exception as err:  # recorded as a failure, never as an answer
            return self._failed(req, self._describe(err))
        return self._response(req, choices, body.get("max_completion_tokens"))

    def _retry_longer(self, req: Request, choices: list[Choice], budget: int | None) -> bool:
        """A reasoning reply cut by its budget is asked once more with a larger one."""
        return bool(budget and self.reasoning_retry_factor > 1 and length_cut(req, choices, budget))

    def _failed(self, req: Request, error: str) -> Response:
        self._bump("failed")
        log.warning("request %s failed: %s", req.key, error)
        return Response(req.key, [], STATUS_FAILED, error)

    def _response(self, req: Request, choices: list[Choice], budget: int | None = None) -> Response:
        """An answer, or a failure when it was cut by its budget (`length_cut`)."""
        if (why := length_cut(req, choices, budget)) is not None:
            return self._failed(req, why)
        return Response(req.key, [text for text, _ in choices])

    # --- batch ----------------------------------------------------------------------------

    def _generate_batch(
        self, requests: list[Request], prepared: list[tuple[str, dict[str, Any]]]
    ) -> list[Response]:
        # A batch serves one endpoint, so chat and completion requests go in separate batches.
        by_url: dict[str, list[int]] = {}
        for i, (url, _) in enumerate(prepared):
            by_url.setdefault(url, []).append(i)
        out: list[Response | None] = [None] * len(requests)
        for url, idx in by_url.items():
            lines = [
                {"custom_id": f"request-{i}", "method": "POST", "url": url, "body": prepared[i][1]}
                for i in idx
            ]
            results = self._run_batch(url, lines)
            for i, line in zip(idx, lines, strict=True):
                choices, error = results[line["custom_id"]]
                if error is None:
                    budget = prepared[i][1].get("max_completion_tokens")
                    out[i] = self._response(requests[i], choices, budget)
                else:
                    out[i] = self._failed(requests[i], error)
        return [r for r in out if r is not None]

    def _state_path(self, lines: list[dict[str, Any]]) -> Path:
        assert self.batch_dir is not None
        return self.batch_dir / f"batch-{sha256_json(lines)}.json"

    def _run_batch(
        self, url: str, lines: list[dict[str, Any]]
    ) -> dict[str, tuple[list[Choice], str | None]]:
        """Submit (or resume) one batch, wait for it and join its results by custom_id."""
        client = self._client
        state_path = self._state_path(lines)
        batch = None
        if state_path.exists():
            state = json.loads(state_path.read_text(encoding="utf-8"))
            log.info("resuming batch %s (%d requests)", state["batch_id"], len(lines))
            try:
                batch = self._retrying(
                    "poll batch", partial(client.batches.retrieve, state["batch_id"])
                )
            except Exception as err:
                import openai

                if not isinstance(err, openai.NotFoundError):
                    raise
                log.warning("batch %s is gone; submitting again", state["batch_id"])
        if batch is None:
            data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
            upload = self._retrying(
                "upload batch input",
                partial(
                    client.files.create,
                    file=(f"{state_path.stem}.jsonl", data.encode("utf-8"), "application/jsonl"),
                    purpose="batch",
                ),
            )
            batch = self._retrying(
                "create batch",
                partial(
                    client.batches.create,
                    input_file_id=upload.id,
                    endpoint=url,
                    completion_window=self.completion_window,
                ),
            )
            # Written before polling: a job killed from here on resumes this batch.
            write_json(
                state_path,
                {
                    "batch_id": batch.id,
                    "input_file_id": upload.id,
                    "endpoint": url,
                    "n_requests": len(lines),
                    "submitted_at": time.time(),
                },
            )
            log.info("submitted batch %s (%d requests to %s)", batch.id, len(lines), url)
        self._log_progress(batch)
        while batch.status not in TERMINAL:
            time.sleep(self.poll_interval)
            batch = self._retrying("poll batch", partial(client.batches.retrieve, batch.id))
            self._log_progress(batch)
        results = self._collect(batch, {line["custom_id"]: line["body"]["n"] for line in lines})
        state_path.unlink(missing_ok=True)  # collected; a rerun of these requests starts anew
        return results

    def _log_progress(self, batch: Any) -> None:
        counts = batch.request_counts
        log.info(
            "batch %s: %s, %d/%d completed, %d failed",
            batch.id,
            batch.status,
            counts.completed if counts else 0,
            counts.total if counts else 0,
            counts.failed if counts else 0,
        )

    def _download(self, file_id: str) -> str:
        return self._client.files.content(file_id).content.decode("utf-8")

    def _collect(
        self, batch: Any, n_by_id: dict[str, int]
    ) -> dict[str, tuple[list[Choice], str | None]]:
        """custom_id -> (texts, None) or ([], error), for every id in `n_by_id`."""
        chat = batch.endpoint == CHAT_URL
        results: dict[str, tuple[list[Choice], str | None]] = {}
        # Expired or cancelled batches still deliver what they finished; collect it too.
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            text = self._retrying("download batch results", partial(self._download, file_id))
            for obj in jsonl_objects(text.splitlines()):
                cid = obj.get("custom_id") if obj else None
                if cid not in n_by_id:
                    log.warning(
                        "batch %s: ignoring an output line with no known custom_id", batch.id
                    )
                    continue
                texts, error = self._batch_line(obj, chat, n_by_id[cid])
                if cid not in results or results[cid][1] is not None:  # a success wins
                    results[cid] = (texts, error)
        if batch.status == "completed":
            missing = "BatchMissing: request absent from the batch output and error files"
        else:
            missing = self._clip(f"BatchFailed: batch {batch.id} {batch.status}: {_errors(batch)}")
        for cid in n_by_id:
            results.setdefault(cid, ([], missing))
        return results

    def _batch_line(
        self, obj: dict[str, Any], chat: bool, n: int
    ) -> tuple[list[Choice], str | None]:
        err = obj.get("error")
        if err:
            code = err.get("code") if isinstance(err, dict) else None
            msg = err.get("message") if isinstance(err, dict) else err
            return [], self._clip(f"BatchError: {code}: {msg}")
        resp = obj.get("response") or {}
        status = resp.get("status_code")
        body = resp.get("body")
        if status != 200:
            detail = body.get("error", body) if isinstance(body, dict) else body
            return [], self._clip(f"BatchHTTPError: status {status}: {detail}")
        try:
            return extract_choices(body, chat, n), None
        except MalformedResponseError as e:
            return [], self._describe(e)


def extract_texts(data: Any, chat: bool, n: int) -> list[str]:
    """The n answer texts of a completion body, in choice order; malformed bodies raise."""
    return [text for text, _ in extract_choices(data, chat, n)]


def extract_choices(data: Any, chat: bool, n: int) -> list[Choice]:
    """The n (text, finish_reason) of a completion body, in choice order.

    Fewer choices than asked for, or an empty answer, is treated as malformed: a
    well-behaved server never sends either for max_tokens >= 1, except an answer cut by
    its budget (finish_reason "length"), which comes back for `length_cut` to judge.
    """
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise MalformedResponseError("response body has no 'choices' list")
    choices = [c for c in data["choices"] if isinstance(c, dict)]
    if len(choices) < n:
        raise MalformedResponseError(f"asked for {n} choices, got {len(choices)}")
    choices.sort(key=lambda c: c.get("index", 0) if isinstance(c.get("index"), int) else 0)
    out: list[Choice] = []
    for c in choices[:n]:
        text = (c.get("message") or {}).get("content") if chat else c.get("text")
        finish = c.get("finish_reason") if isinstance(c.get("finish_reason"), str) else None
        if finish == "length" and text in (None, ""):
            text = ""
        elif not isinstance(text, str) or not text:
            raise MalformedResponseError("a choice has empty or missing content")
        out.append((text, finish))
    return out


def _errors(batch: Any) -> str:
    data = batch.errors.data if batch.errors and batch.errors.data else []
    return "; ".join(f"{e.code}: {e.message}" for e in data) or "no error details"
