"""What the two local backends (hf, vllm) share: how they name a model, render a prompt and
turn it into token ids."""

from __future__ import annotations

from typing import Any

from valueharms.llm.interface import Request

# Any short text: special_prefix compares its ids with and without the special tokens.
_PROBE = "Hello"


def special_prefix(tokenizer: Any) -> list[int]:
    """The token ids the tokenizer's defaults put before a text: Llama's (and Gemma's,
    Mistral's) BOS; none for GPT-2 style tokenizers such as SmolLM2's.

    Read off the tokenizer itself, so a tokenizer configured not to add BOS gets none. Ids
    its defaults put after a text (an `add_eos_token` tokenizer's EOS) are never used: a
    prompt ending in EOS would end the answer before it starts.
    """
    full = list(tokenizer(_PROBE)["input_ids"])
    bare = list(tokenizer(_PROBE, add_special_tokens=False)["input_ids"])
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start]
    raise ValueError(f"cannot find the text's ids {bare} inside the default encoding {full}")


class LocalBackend:
    """Identity, prompt rendering and prompt token ids of a backend serving local weights.

    Subclasses set `kind` and, in their constructor, `model_id`, `chat`, `tokenizer`,
    `_revision` (the base weights hash), `_adapter_revisions` (name -> revision) and, by
    `use_special_tokens`, `_prefix` (the ids before every raw prompt).
    """

    kind: str
    model_id: str
    chat: bool
    tokenizer: Any
    _revision: str
    _adapter_revisions: dict[str, str]
    _prefix: tuple[int, ...] = ()  # none unless use_special_tokens sets one

    def use_special_tokens(self, add_special_tokens: bool) -> None:
        """config tokenization.add_special_tokens: true starts every raw prompt with the
        tokenizer's default prefix (special_prefix), as Study A's code did; false with none."""
        self._prefix = tuple(special_prefix(self.tokenizer)) if add_special_tokens else ()

    def identity(self, adapter: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": self.kind,
            "model": self.model_id,
            "revision": self._adapter_revisions[adapter] if adapter else self._revision,
        }
        # The answer depends on the prefix; absent when empty, so a tokenizer that adds
        # nothing (and the earlier behaviour, no prefix) keeps its cache keys.
        if self._prefix:
            out["special_prefix"] = list(self._prefix)
        return out

    def templated(self, req: Request) -> bool:
        """Whether `req` goes through the tokenizer's chat template.

        `req.chat_template` overrides the model's chat flag; True on a tokenizer without a
        template gives plain prose (as preference training does on such a model).
        """
        if not req.messages:
            return False
        if req.chat_template is None:
            return self.chat
        return req.chat_template and bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, req: Request) -> str:
        """The text the model sees: the chat template, or for completion models the system
        text then the user text as plain prose; a raw prompt as it is."""
        if self.templated(req):
            msgs = [{"role": r, "content": c} for r, c in req.messages]
            return self.tokenizer.apply_chat_template(
                msgs, add_generation_prompt=True, tokenize=False
            )
        if req.messages:
            return "\n\n".join(c for _, c in req.messages)
        return req.prompt or ""

    def prompt_ids(self, req: Request) -> list[int]:
        """The prompt's token ids: the rendered text's, after the special prefix unless the
        chat template rendered it (a template writes its own BOS: no second one)."""
        return self.prompt_ids_and_head(req, head=False)[0]

    def prompt_ids_and_head(self, req: Request, head: bool = True) -> tuple[list[int], int]:
        """The prompt's token ids and how many of them come before its last user turn's
        text: the head that the requests of one subject share (chat template start, system
        prompt, ICL profile, earlier turns), which a backend may compute once and reuse.

        The head ends at a token boundary of the prompt's own tokenization (read off the
        fast tokenizer's offsets, never re-tokenized), so reusing it changes no token. It
        is 0 for a raw prompt, a slow tokenizer or a user text not found in the rendering,
        and always leaves at least one token after it.
        """
        text = self.render(req)
        at = _last_user_text_at(req, text) if head else -1
        offsets = at > 0 and bool(getattr(self.tokenizer, "is_fast", False))
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=offsets)
        ids = list(enc["input_ids"])
        n = 0
        if offsets:  # tokens that end before the user text starts
            n = next((i for i, (_, end) in enumerate(enc["offset_mapping"]) if end > at), len(ids))
        if not self.templated(req):
            ids = [*self._prefix, *ids]
            n += len(self._prefix) if n else 0
        return ids, max(0, min(n, len(ids) - 1))


def _last_user_text_at(req: Request, text: str) -> int:
    """Where the last user message's text starts in the rendered prompt (-1: not found)."""
    if not req.messages or req.messages[-1][0] != "user" or not req.messages[-1][1]:
        return -1
    return text.rfind(req.messages[-1][1])
