"""transformers backend: batched generation with left padding, CPU (fp32) or GPU (bf16).

Adapters are peft LoRA directories loaded once onto one base model. By default one batch
mixes requests for several adapters (and the bare base model): peft routes each row
through its own adapter (`adapter_names`), which gives the same greedy tokens as one
adapter at a time and saves the per-adapter batches. `mixed_adapters=False` groups
requests by adapter instead (one `generate` call per adapter and sampling).
"""

from __future__ import annotations

import contextlib
import logging
from itertools import groupby
from pathlib import Path
from typing import Any

from valueharms.llm.interface import (
    STATUS_FAILED,
    Request,
    Response,
    Sampling,
    length_cut,
)
from valueharms.llm.local import LocalBackend
from valueharms.models import model_revision

log = logging.getLogger(__name__)


def pick_device() -> tuple[str, Any]:
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16
    # bf16 on this kind of CPU is far slower than fp32 (shared/FACTS.md).
    return "cpu", torch.float32


def left_pad(rows: list[list[int]], pad_id: int) -> dict[str, Any]:
    """Token id rows as a left-padded batch (input_ids, attention_mask), as the tokenizer
    pads with padding_side left."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return {"input_ids": ids, "attention_mask": mask}


class HFBackend(LocalBackend):
    kind = "hf"

    def __init__(
        self,
        model_id: str,
        base_dir: str | Path,
        adapters: dict[str, str | Path] | None = None,
        chat: bool = True,
        threads: int | None = None,
        mixed_adapters: bool = True,
        add_special_tokens: bool = True,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.model_id = model_id
        self.base_dir = Path(base_dir)
        self.chat = chat
        self.mixed_adapters = mixed_adapters
        self.device, dtype = pick_device()
        self.tokenizer = AutoTokenizer.from_pretrained(self.base_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.use_special_tokens(add_special_tokens)
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

    def generate(self, requests: list[Request]) -> list[Response]:
        out: dict[str, Response] = {}

        def group_key(r: Request) -> tuple[str, Sampling]:
            return ("" if self.mixed_adapters else r.adapter or "", r.sampling)

        for (_, sampling), group in groupby(sorted(requests, key=self._sort_key), group_key):
            batch = list(group)
            rows = [self.prompt_ids(r) for r in batch]
            finish: list[str] = []
            adapters = [r.adapter or "" for r in batch]
            try:
                if sampling.choices:
                    best = self._choose_batch(rows, adapters, sampling.choices)
                    texts = [t for t in best for _ in range(sampling.n)]
                else:
                    texts = self._generate_batch(rows, adapters, sampling)
                    finish = ["length" if c else "stop" for c in self._cut]
            except Exception as err:  # recorded as failures, never as answers
                log.exception("generation failed for %d requests", len(batch))
                for r in batch:
                    out[r.key] = Response(r.key, [], STATUS_FAILED, f"{type(err).__name__}: {err}")
                continue
            for i, r in enumerate(batch):
                mine = texts[i * sampling.n : (i + 1) * sampling.n]
                ends = finish[i * sampling.n : (i + 1) * sampling.n] if finish else []
                why = length_cut(r, list(zip(mine, ends, strict=True))) if ends else None
                out[r.key] = Response(r.key, mine) if why is None else self._cut_reply(r, why)
        return [out[r.key] for r in requests]

    def _using(self, adapters: list[str], repeat: int = 1) -> tuple[Any, dict[str, Any]]:
        """How to run a batch whose row i belongs to `adapters[i]` ("" = bare base model).

        Returns a context to enter and extra model kwargs. One adapter for the whole batch
        is set as the active adapter (or disabled for the base); several go to peft as
        per-row `adapter_names`, each repeated `repeat` times (rows expanded by sampling).
        """
        from peft import PeftModel

        if not isinstance(self.model, PeftModel):
            if any(adapters):
                raise ValueError(f"no adapters loaded, asked for {sorted(set(adapters))}")
            return contextlib.nullcontext(), {}
        if len(set(adapters)) > 1:
            names = [a or "__base__" for a in adapters for _ in range(repeat)]
            return contextlib.nullcontext(), {"adapter_names": names}
        if not adapters[0]:
            return self.model.disable_adapter(), {}
        self.model.set_adapter(adapters[0])
        return contextlib.nullcontext(), {}

    def _choose_batch(
        self, rows: list[list[int]], adapters: list[str], choices: tuple[str, ...]
    ) -> list[str]:
        """For each prompt (its token ids), the choice with the highest summed log-probability.

        The prompts are run once; every choice then continues from their cached keys and
        values, so k choices cost one prompt pass plus k short ones, not k prompt passes.
        A choice's ids are its text's alone: special tokens go before the prompt only.
        """
        import torch

        tok = self.tokenizer
        c_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in choices]
        n_c, width = len(c_ids), max(len(c) for c in c_ids)
        enc = left_pad(rows, tok.pad_token_id)
        p_mask = enc["attention_mask"].to(self.device)
        pad = tok.pad_token_id
        tail = torch.tensor([c + [pad] * (width - len(c)) for c in c_ids], device=self.device)
        tail_mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in c_ids])
        context, first_kw = self._using(adapters)
        # Each prompt row becomes n_c choice rows below: repeat its adapter name as well.
        rest_kw = {k: [n for n in names for _ in range(n_c)] for k, names in first_kw.items()}
        with torch.inference_mode(), context:
            # Positions count real tokens only, as generate() does with left padding.
            first = self.model(
                **first_kw,
                input_ids=enc["input_ids"].to(self.device),
                attention_mask=p_mask,
                position_ids=(p_mask.cumsum(1) - 1).clamp(min=0),
                use_cache=True,
                logits_to_keep=1,
            )
            logp_first = torch.log_softmax(first.logits[:, -1].float(), dim=-1)
            cache = first.past_key_values
            cache.batch_repeat_interleave(n_c)
            mask = torch.cat(
                [
                    p_mask.repeat_interleave(n_c, 0),
                    tail_mask.to(self.device).repeat(len(rows), 1),
                ],
                dim=1,
            )
            # Left padding: each row's positions continue from its own prompt length.
            start = p_mask.sum(1).repeat_interleave(n_c).unsqueeze(1)
            pos = start + torch.arange(width, device=self.device).unsqueeze(0)
            rest = self.model(
                **rest_kw,
                input_ids=tail.repeat(len(rows), 1),
                attention_mask=mask,
                past_key_values=cache,
                position_ids=pos,
            )
            logp_rest = torch.log_softmax(rest.logits.float(), dim=-1).view(
                len(rows), n_c, width, -1
            )
        scores = torch.empty(len(rows), n_c)
        for j, c in enumerate(c_ids):
            lp = logp_first[:, c[0]].cpu()
            for k in range(1, len(c)):  # token k is predicted after tail token k-1
                lp = lp + logp_rest[:, j, k - 1, c[k]].cpu()
            scores[:, j] = lp
        return [choices[int(k)] for k in scores.argmax(dim=1)]

    def _generate_batch(self, rows: list[list[int]], adapters: list[str], s: Sampling) -> list[str]:
        import torch

        enc = {k: v.to(self.device) for k, v in left_pad(rows, self.tokenizer.pad_token_id).items()}
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
        # generate() expands each prompt to its n_draw rows before the first forward.
        context, adapter_kw = self._using(adapters, repeat=n_draw)
        with torch.inference_mode(), context:
            ids = self.model.generate(**enc, **kwargs, **adapter_kw)
        new = ids[:, enc["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        # A row still going at its last token was cut by max_new_tokens (finished rows end
        # in EOS, then padding).
        ended = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        full = new.shape[1] == s.max_new_tokens
        cut = [full and int(row[-1]) not in ended for row in new]
        self._cut = [c for c in cut for _ in range(s.n // n_draw)]
        return [t for t in texts for _ in range(s.n // n_draw)]

    @staticmethod
    def _cut_reply(req: Request, why: str) -> Response:
        log.warning("request %s failed: %s", req.key, why)
        return Response(req.key, [], STATUS_FAILED, why)

    def _sort_key(self, r: Request) -> tuple:
        s = r.sampling
        grouped = (s.max_new_tokens, s.temperature, s.top_p, s.n, s.seed, s.choices)
        return grouped if self.mixed_adapters else (r.adapter or "", *grouped)
