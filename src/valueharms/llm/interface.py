"""One request/response shape for every LLM call: generation and LLM judges alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

STATUS_OK = "ok"
STATUS_FAILED = "failed"


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    n: int = 1
    seed: int = 0
    # When set, the answer is the choice the model finds most likely after the prompt
    # (a constrained verdict for small local judges); the decoding fields are unused.
    choices: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class Request:
    """One call. `key` is the caller's join key; it is not part of the cache key."""

    key: str
    messages: tuple[tuple[str, str], ...] = ()  # (role, content) pairs; chat models
    prompt: str | None = None  # raw text; completion models
    sampling: Sampling = field(default_factory=Sampling)
    adapter: str | None = None  # adapter name known to the backend
    # Local models: apply the tokenizer's chat template (True) or join the messages as
    # plain text (False) regardless of the model's `chat` flag; None follows the flag.
    chat_template: bool | None = None
    # A reply cut by its token budget is a failure, not an answer (judges: the verdict
    # comes last). Not part of the cache key: it decides how an answer is read.
    cut_is_failure: bool = False

    def content(self) -> dict[str, Any]:
        """Everything about the request that decides the answer."""
        out = {
            "messages": [list(m) for m in self.messages],
            "prompt": self.prompt,
            "sampling": asdict(self.sampling),
        }
        if self.chat_template is not None:  # absent when unset: older cache keys hold
            out["chat_template"] = self.chat_template
        return out


@dataclass
class Response:
    key: str
    texts: list[str]
    status: str = STATUS_OK
    error: str | None = None
    cached: bool = False


Choice = tuple[str, str | None]  # an answer's text and its finish_reason


def length_cut(req: Request, choices: list[Choice], budget: int | None = None) -> str | None:
    """Why an answer cut by its token budget is a failure, or None.

    An empty answer cut by its budget (a reasoning model that spent it all on hidden
    reasoning) is never an answer; a non-empty one is a failure where the caller says a
    cut reply cannot be read (`Request.cut_is_failure`: a judge's verdict comes last).
    """
    for text, finish in choices:
        if finish == "length" and (req.cut_is_failure or not text):
            budget = budget or req.sampling.max_new_tokens
            return (
                f"LengthCut: the reply reached its token budget ({budget} tokens) before it "
                "finished" + ("" if text else ", with no visible text")
            )
    return None


class Backend(Protocol):
    """What generation and judging need from a model server."""

    def identity(self, adapter: str | None) -> dict[str, Any]:
        """Model identity for the cache key: backend kind, model id, revision, adapter hash."""
        ...

    def generate(self, requests: list[Request]) -> list[Response]: ...
