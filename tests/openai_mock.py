"""A real HTTP server speaking enough of the OpenAI API for the real `openai` client.

Serves chat completions, completions, file upload/download and the Batch API on
127.0.0.1 (a free port), from a daemon thread. Answers are deterministic: "echo:" plus
the last user message (or the prompt), "#i" appended per choice when n > 1.

Faults are scripted per route and consumed one per request, in arrival order:
    ("429", retry_after_seconds)   rate limit, with a Retry-After header
    ("500",) or any other status   an error status with an OpenAI-style error body;
                                   ("500", "echo-auth") quotes the Authorization header in
                                   it, as a careless proxy might, to test key scrubbing
    ("timeout", seconds)           sleep that long (past the client timeout), then answer
    ("malformed",)                 a 200 whose body is not JSON
    ("malformed", "nochoices")     a 200 JSON body without `choices`
    ("malformed", "empty")         a 200 with `content: null`
`always[text] = fault` makes every request whose echoed text is `text` fail that way.

`budget` (off by default) makes answers obey max_tokens / max_completion_tokens, a token
being a word: `reasoning_words` hidden words are spent first (a reasoning model), and an
answer over what is left is cut there with finish_reason "length" (empty when nothing is).

`delay` slows every generation call, so `max_in_flight` shows how many ran at once.

Batches finish after `batch_polls` GETs. `batch_error_ids` go to the error file,
`batch_500_ids` become output lines with status_code 500, `batch_drop_ids` appear in
neither file, and `batch_fail` (a message) makes the whole batch fail validation.

Usage: `with MockOpenAI() as mock: OpenAI(base_url=mock.base_url, ...)`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Fault = tuple[Any, ...]

GENERATE = "generate"  # route names for fault scripts
FILES = "files"
FILE_CONTENT = "file_content"
BATCH_CREATE = "batch_create"
BATCH_GET = "batch_get"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON, multipart fields, or raw bytes


@dataclass
class _Batch:
    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    lines: list[dict[str, Any]]
    created_at: int
    polls: int = 0
    status: str = "validating"
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


def answer_text(body: dict[str, Any]) -> str:
    """The text the mock echoes for a completion request body."""
    if "messages" in body:
        users = [m["content"] for m in body["messages"] if m.get("role") == "user"]
        return users[-1] if users else body["messages"][-1]["content"]
    return str(body.get("prompt", ""))


def _within_budget(text: str, body: dict[str, Any], reasoning_words: int) -> tuple[str, str]:
    budget = body.get("max_completion_tokens") or body.get("max_tokens") or 1 << 30
    left, words = budget - reasoning_words, text.split(" ")
    if left <= 0:
        return "", "length"
    return (" ".join(words[:left]), "length") if len(words) > left else (text, "stop")


def completion_body(
    body: dict[str, Any], chat: bool, seq: int, reasoning_words: int | None = None
) -> dict[str, Any]:
    """The mock's answer; `reasoning_words` not None: obey the token budget."""
    text, n = answer_text(body), int(body.get("n", 1))
    outs = [f"echo:{text}" + (f"#{i}" if n > 1 else "") for i in range(n)]
    finish = ["stop"] * n
    if reasoning_words is not None:
        cut = [_within_budget(t, body, reasoning_words) for t in outs]
        outs, finish = [t for t, _ in cut], [f for _, f in cut]
    if chat:
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": t},
                "finish_reason": finish[i],
                "logprobs": None,
            }
            for i, t in enumerate(outs)
        ]
        kind = "chat.completion"
    else:
        choices = [
            {"index": i, "text": t, "finish_reason": finish[i], "logprobs": None}
            for i, t in enumerate(outs)
        ]
        kind = "text_completion"
    words = len(text.split())
    return {
        "id": f"cmpl-{seq}",
        "object": kind,
        "created": 1700000000,
        "model": body.get("model"),
        "choices": choices,
        "usage": {
            "prompt_tokens": words,
            "completion_tokens": words * n,
            "total_tokens": words * (n + 1),
        },
    }


class MockOpenAI:
    def __init__(self, batch_polls: int = 2, api_key: str | None = None) -> None:
        self.batch_polls = batch_polls
        self.api_key = api_key  # when set, other bearer tokens get a 401
        self.requests: list[Recorded] = []
        self.faults: dict[str, deque[Fault]] = {}
        self.always: dict[str, Fault] = {}
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, _Batch] = {}
        self.batch_error_ids: set[str] = set()
        self.batch_500_ids: set[str] = set()
        self.batch_drop_ids: set[str] = set()
        self.batch_fail: str | None = None
        self.delay = 0.0
        self.budget = False
        self.reasoning_words = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.RLock()  # batch handlers store files while holding it
        self._seq = 0
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> MockOpenAI:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True  # sleeping "timeout" handlers must not block exit
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> MockOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # --- scripting and inspection ---------------------------------------------------------

    def inject(self, *fault: Any, route: str = GENERATE) -> None:
        """Queue one fault for the next request on `route`."""
        with self._lock:
            self.faults.setdefault(route, deque()).append(
                tuple(str(f) for f in fault[:1]) + fault[1:]
            )

    def calls(self, path_prefix: str = "/v1/", method: str | None = None) -> list[Recorded]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path.startswith(path_prefix) and (method is None or r.method == method)
            ]

    def generate_calls(self) -> list[Recorded]:
        return [r for r in self.calls(method="POST") if r.path.endswith("completions")]

    @property
    def n_batches_created(self) -> int:
        return len(self.calls("/v1/batches", method="POST"))

    def _next_id(self, prefix: str) -> str:
        with self._lock:
            self._seq += 1
            return f"{prefix}-{self._seq}"

    def _take_fault(self, route: str, text: str | None = None) -> Fault | None:
        with self._lock:
            if text is not None and text in self.always:
                return self.always[text]
            queue = self.faults.get(route)
            return queue.popleft() if queue else None

    # --- batch simulation -----------------------------------------------------------------

    def _advance(self, batch: _Batch) -> None:
        batch.polls += 1
        if batch.status in ("completed", "failed"):
            return
        if self.batch_fail is not None:
            batch.status = "failed"
            batch.errors = [{"code": "invalid_request", "message": self.batch_fail, "line": 1}]
            return
        if batch.polls < self.batch_polls:
            batch.status = "in_progress"
            return
        out, err = [], []
        for line in batch.lines:
            cid = line["custom_id"]
            record: dict[str, Any] = {"id": f"batch_req_{cid}", "custom_id": cid}
            if cid in self.batch_drop_ids:
                continue
            if cid in self.batch_error_ids:
                record |= {"response": None, "error": {"code": "server_error", "message": "boom"}}
                err.append(record)
            elif cid in self.batch_500_ids:
                body = {"error": {"message": "internal error", "type": "server_error"}}
                record |= {"response": {"status_code": 500, "body": body}, "error": None}
                out.append(record)
            else:
                body = completion_body(
                    line["body"],
                    batch.endpoint.endswith("chat/completions"),
                    0,
                    self.reasoning_words if self.budget else None,
                )
                record |= {"response": {"status_code": 200, "body": body}, "error": None}
                out.append(record)
        if out:
            batch.output_file_id = self._store(out)
        if err:
            batch.error_file_id = self._store(err)
        batch.status = "completed"

    def _store(self, records: list[dict[str, Any]]) -> str:
        file_id = self._next_id("file")
        self.files[file_id] = "".join(json.dumps(r) + "\n" for r in records).encode()
        return file_id

    def batch_json(self, batch: _Batch) -> dict[str, Any]:
        done = batch.status == "completed"
        bad = self.batch_error_ids | self.batch_500_ids | self.batch_drop_ids
        failed = sum(line["custom_id"] in bad for line in batch.lines) if done else 0
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "input_file_id": batch.input_file_id,
            "completion_window": batch.completion_window,
            "status": batch.status,
            "created_at": batch.created_at,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "request_counts": {
                "total": len(batch.lines),
                "completed": len(batch.lines) - failed if done else 0,
                "failed": failed,
            },
        }


def _handler_for(mock: MockOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            if isinstance(payload, bytes):
                data, ctype = payload, "application/octet-stream"
            elif isinstance(payload, str):  # deliberately broken JSON
                data, ctype = payload.encode(), "application/json"
            else:
                data, ctype = json.dumps(payload).encode(), "application/json"
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a scripted timeout)

        def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
            body = {"error": {"message": message, "type": "mock_error", "code": str(status)}}
            self._send(status, body, headers)

        def _record(self, body: Any) -> None:
            rec = Recorded(
                self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
            )
            with mock._lock:
                mock.requests.append(rec)

        def _read_body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _authorized(self) -> bool:
            if mock.api_key and self.headers.get("Authorization") != f"Bearer {mock.api_key}":
                self._error(401, "Incorrect API key provided")
                return False
            return True

        def _apply_fault(self, fault: Fault | None) -> bool:
            """Answer with `fault`; False for no fault or a delay then a normal answer."""
            if fault is None:
                return False
            kind = fault[0]
            if kind == "timeout":
                time.sleep(float(fault[1]))
                return False
            if kind == "malformed":
                return fault[1:2] != ("empty",) and self._malformed(fault[1:2])
            status = int(kind)
            headers = {"Retry-After": str(fault[1])} if status == 429 and len(fault) > 1 else {}
            message = f"injected {status}"
            if "echo-auth" in fault[1:]:
                message += f" (you sent {self.headers.get('Authorization')})"
            self._error(status, message, headers)
            return True

        def _malformed(self, variant: tuple[Any, ...]) -> bool:
            if variant == ("nochoices",):
                self._send(200, {"id": "cmpl-x", "object": "chat.completion", "usage": {}})
            else:
                self._send(200, '{"id": "cmpl-x", "choices": [')
            return True

        def do_POST(self) -> None:
            raw = self._read_body()
            path = self.path.split("?")[0]
            if path == "/v1/files":
                fields = _multipart(self.headers.get("Content-Type", ""), raw)
                self._record(fields)
                if self._authorized() and not self._apply_fault(mock._take_fault(FILES)):
                    self._upload(fields)
                return
            body = json.loads(raw or b"{}")
            self._record(body)
            if not self._authorized():
                return
            if path in ("/v1/chat/completions", "/v1/completions"):
                with mock._lock:
                    mock._in_flight += 1
                    mock.max_in_flight = max(mock.max_in_flight, mock._in_flight)
                try:
                    time.sleep(mock.delay)
                    self._generate(path, body)
                finally:
                    with mock._lock:
                        mock._in_flight -= 1
            elif path == "/v1/batches":
                if not self._apply_fault(mock._take_fault(BATCH_CREATE)):
                    self._create_batch(body)
            else:
                self._error(404, f"no route {path}")

        def _generate(self, path: str, body: dict[str, Any]) -> None:
            fault = mock._take_fault(GENERATE, answer_text(body))
            if self._apply_fault(fault):
                return
            with mock._lock:
                mock._seq += 1
                seq = mock._seq
            budget = mock.reasoning_words if mock.budget else None
            reply = completion_body(body, path == "/v1/chat/completions", seq, budget)
            if fault is not None and fault[:2] == ("malformed", "empty"):
                for choice in reply["choices"]:
                    if "message" in choice:
                        choice["message"]["content"] = None
                    else:
                        choice["text"] = None
            self._send(200, reply)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            self._record(None)
            if not self._authorized():
                return
            parts = path.strip("/").split("/")
            if len(parts) == 4 and parts[:2] == ["v1", "files"] and parts[3] == "content":
                if self._apply_fault(mock._take_fault(FILE_CONTENT)):
                    return
                data = mock.files.get(parts[2])
                if data is None:
                    self._error(404, f"no file {parts[2]}")
                else:
                    self._send(200, data)
            elif len(parts) == 3 and parts[:2] == ["v1", "batches"]:
                if self._apply_fault(mock._take_fault(BATCH_GET)):
                    return
                with mock._lock:
                    batch = mock.batches.get(parts[2])
                    if batch is not None:
                        mock._advance(batch)
                        payload = mock.batch_json(batch)
                if batch is None:
                    self._error(404, f"no batch {parts[2]}")
                else:
                    self._send(200, payload)
            else:
                self._error(404, f"no route {path}")

        def _upload(self, fields: dict[str, Any]) -> None:
            data, filename = fields["file"]
            file_id = mock._next_id("file")
            with mock._lock:
                mock.files[file_id] = data
            self._send(
                200,
                {
                    "id": file_id,
                    "object": "file",
                    "bytes": len(data),
                    "created_at": int(time.time()),
                    "filename": filename,
                    "purpose": fields.get("purpose", ""),
                    "status": "processed",
                },
            )

        def _create_batch(self, body: dict[str, Any]) -> None:
            data = mock.files.get(body.get("input_file_id", ""))
            if data is None:
                self._error(400, "unknown input_file_id")
                return
            lines = [json.loads(x) for x in data.decode().splitlines() if x.strip()]
            if any(line.get("url") != body.get("endpoint") for line in lines):
                self._error(400, "line url differs from the batch endpoint")
                return
            batch = _Batch(
                id=mock._next_id("batch"),
                endpoint=body["endpoint"],
                input_file_id=body["input_file_id"],
                completion_window=body.get("completion_window", "24h"),
                lines=lines,
                created_at=int(time.time()),
            )
            with mock._lock:
                mock.batches[batch.id] = batch
                payload = mock.batch_json(batch)
            self._send(200, payload)

    return Handler


def _multipart(content_type: str, raw: bytes) -> dict[str, Any]:
    """Form fields of a multipart body: text values, and (bytes, filename) for files."""
    msg = BytesParser(policy=policy.default).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    fields: dict[str, Any] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        fields[str(name)] = (payload, filename) if filename else payload.decode()
    return fields
