"""transformers backend: batched generation with left padding, CPU (fp32) or GPU (bf16).

Adapters are peft LoRA directories loaded once onto one base model; requests are grouped
by (adapter, sampling) so each `generate` call serves one group.
"""

from __future__ import annotations

import contextlib
import logging
from itertools import groupby
from pathlib import Path
from typing import Any

from valueharms.llm.interface import STATUS_FAILED, Request, Response, Sampling
from valueharms.models import model_revision

log = logging.getLogger(__name__)


def pick_device() -> tuple[str, Any]:
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16
    # bf16 on this kind of CPU is far slower than fp32 (shared/FACTS.md).
    return "cpu", torch.float32


class HFBackend:
    def __init__(
        self,
        model_id: str,
        base_dir: str | Path,
        adapters: dict[str, str | Path] | None = None,
        chat: bool = True,
        threads: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.model_id = model_id
        self.base_dir = Path(base_dir)
        self.chat = chat
        self.device, dtype = pick_device()
        self.tokenizer = AutoTokenizer.from_pretrained(self.base_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(self.base_dir, dtype=dtype)
        self._revision = model_revision(self.base_dir)
        self._adapter_revisions: dict[str, str] = {}
        for name, path in (adapters or {}).items():
            from peft import PeftModel

            if not isinstance(model, PeftModel):
                model = PeftModel.from_pretrained(model, str(path), adapter_name=name)
            else:
                model.load_adapter(str(path), adapter_name=name)
            self._adapter_revisions[name] = model_revision(self.base_dir, path)
        self.model = model.to(self.device).eval()

    def identity(self, adapter: str | None) -> dict[str, Any]:
        return {
            "backend": "hf",
            "model": self.model_id,
            "revision": self._adapter_revisions[adapter] if adapter else self._revision,
        }

    def render(self, req: Request) -> str:
        if req.messages:
            msgs = [{"role": r, "content": c} for r, c in req.messages]
            if self.chat:
                return self.tokenizer.apply_chat_template(
                    msgs, add_generation_prompt=True, tokenize=False
                )
            # Completion models see system text, then the user text, as plain prose.
            return "\n\n".join(c for _, c in req.messages)
        return req.prompt or ""

    def generate(self, requests: list[Request]) -> list[Response]:
        out: dict[str, Response] = {}

        def group_key(r: Request) -> tuple[str, Sampling]:
            return (r.adapter or "", r.sampling)

        for (adapter, sampling), group in groupby(sorted(requests, key=_sort_key), group_key):
            batch = list(group)
            prompts = [self.render(r) for r in batch]
            try:
                if sampling.choices:
                    best = self._choose_batch(prompts, adapter, sampling.choices)
                    texts = [t for t in best for _ in range(sampling.n)]
                else:
                    texts = self._generate_batch(prompts, adapter, sampling)
            except Exception as err:  # recorded as failures, never as answers
                log.exception("generation failed for %d requests", len(batch))
                for r in batch:
                    out[r.key] = Response(r.key, [], STATUS_FAILED, f"{type(err).__name__}: {err}")
                continue
            for i, r in enumerate(batch):
                out[r.key] = Response(r.key, texts[i * sampling.n : (i + 1) * sampling.n])
        return [out[r.key] for r in requests]

    def _using(self, adapter: str) -> Any:
        """Context in which the model runs as `adapter`, or as the bare base model."""
        from peft import PeftModel

        if not isinstance(self.model, PeftModel):
            return contextlib.nullcontext()
        if not adapter:
            return self.model.disable_adapter()
        self.model.set_adapter(adapter)
        return contextlib.nullcontext()

    def _choose_batch(
        self, prompts: list[str], adapter: str, choices: tuple[str, ...]
    ) -> list[str]:
        """For each prompt, the choice with the highest summed log-probability."""
        import torch

        tok = self.tokenizer
        p_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        c_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in choices]
        seqs = [(i, j, p + c) for i, p in enumerate(p_ids) for j, c in enumerate(c_ids)]
        width = max(len(s) for *_, s in seqs)
        pad = tok.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + s for *_, s in seqs])
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for *_, s in seqs])
        # Only the positions that predict choice tokens need logits (a full-vocabulary
        # tensor for every position would take GBs).
        keep = max(len(c) for c in c_ids) + 1
        with torch.inference_mode(), self._using(adapter):
            out = self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                logits_to_keep=keep,
            )
            logp = torch.log_softmax(out.logits.float(), dim=-1).cpu()
        scores = torch.full((len(prompts), len(choices)), float("-inf"))
        for row, (i, j, _) in enumerate(seqs):
            n = len(c_ids[j])
            # Token t is predicted at position t-1; the choice occupies the last n positions,
            # and logit k of the kept `keep` stands for position width - keep + k.
            pos = torch.arange(width - n, width)
            scores[i, j] = logp[row, pos - 1 - (width - keep), ids[row, pos]].sum()
        return [choices[int(k)] for k in scores.argmax(dim=1)]

    def _generate_batch(self, prompts: list[str], adapter: str, s: Sampling) -> list[str]:
        import torch

        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        # Greedy decoding gives one answer per prompt: draw it once and repeat it n times.
        n_draw = 1 if s.greedy else s.n
        kwargs: dict[str, Any] = {
            "max_new_tokens": s.max_new_tokens,
            "num_return_sequences": n_draw,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if s.greedy:
            kwargs["do_sample"] = False
        else:
            kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p)
        # One seed per batch: sampled answers depend on batch composition, greedy ones
        # do not. The cache stores what was drawn, so a rerun reads the same answer.
        torch.manual_seed(s.seed)
        with torch.inference_mode(), self._using(adapter):
            ids = self.model.generate(**enc, **kwargs)
        new = ids[:, enc["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [t for t in texts for _ in range(s.n // n_draw)]


def _sort_key(r: Request) -> tuple:
    s = r.sampling
    return (r.adapter or "", s.max_new_tokens, s.temperature, s.top_p, s.n, s.seed, s.choices)
