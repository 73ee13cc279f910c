"""What the two local backends (hf, vllm) share: how they name a model and render a prompt."""

from __future__ import annotations

from typing import Any

from valueharms.llm.interface import Request


class LocalBackend:
    """Identity and prompt rendering of a backend serving local weights.

    Subclasses set `kind` and, in their constructor, `model_id`, `chat`, `tokenizer`,
    `_revision` (the base weights hash) and `_adapter_revisions` (name -> revision).
    """

    kind: str
    model_id: str
    chat: bool
    tokenizer: Any
    _revision: str
    _adapter_revisions: dict[str, str]

    def identity(self, adapter: str | None) -> dict[str, Any]:
        return {
            "backend": self.kind,
            "model": self.model_id,
            "revision": self._adapter_revisions[adapter] if adapter else self._revision,
        }

    def render(self, req: Request) -> str:
        """The text the model sees: the chat template, or for completion models the system
        text then the user text as plain prose; a raw prompt as it is.

        `req.chat_template` overrides the model's chat flag; True on a tokenizer without a
        template gives plain prose (as preference training does on such a model).
        """
        if req.messages:
            if req.chat_template is None:
                use = self.chat
            else:
                use = req.chat_template and bool(getattr(self.tokenizer, "chat_template", None))
            if use:
                msgs = [{"role": r, "content": c} for r, c in req.messages]
                return self.tokenizer.apply_chat_template(
                    msgs, add_generation_prompt=True, tokenize=False
                )
            return "\n\n".join(c for _, c in req.messages)
        return req.prompt or ""
