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
import os
from collections import OrderedDict
from dataclasses import dataclass
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
from valueharms.worker import take_base

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


def _cache_kwarg(model: Any) -> str:
    """The name a model's forward takes a key/value cache by: `cache` since transformers
    5 renamed it (`past_key_values` is deprecated there and warns), the old name before."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return (
        "cache"
        if "cache" in inspect.signature(type(base).forward).parameters
        else "past_key_values"
    )


def _cache_of(output: Any) -> Any:
    """A forward pass's key/value cache, under either name (see _cache_kwarg)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _dynamic_layers(cache: Any) -> list[Any] | None:
    """A cache's per-layer keys and values, or None for a layout that head reuse cannot
    copy (a sliding-window or quantised cache)."""
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer).__name__ != "DynamicLayer" for layer in layers):
        return None
    return layers


# Heads shorter than this are computed with the rest of the prompt: reuse would not pay.
MIN_HEAD = 16


def shared_heads(rows: list[list[int]], adapters: list[str], heads: list[int]) -> list[int]:
    """Each row's head: its own (the template head, before its last user text) or, when
    rows of the same adapter share a longer prefix, that prefix: a judge's rubric, the
    judged conversation that several verdict prompts repeat, a survey's instructions.

    Rows sorted by (adapter, ids) share their longest prefixes with a neighbour. A shared
    prefix replaces a row's head only when it is at least MIN_HEAD ids longer, and two
    neighbours whose heads differ by less than MIN_HEAD take the shorter one, so
    prompts that differ a few tokens after a long common part (behaviour names with the
    same first word) share one head instead of computing near-copies. Every head leaves
    at least one id of its row after it.
    """
    out = list(heads)
    order = sorted(range(len(rows)), key=lambda i: (adapters[i], rows[i]))
    pairs = [(a, b) for a, b in zip(order, order[1:], strict=False) if adapters[a] == adapters[b]]
    common = {(a, b): len(os.path.commonprefix((rows[a], rows[b]))) for a, b in pairs}
    for (a, b), n in common.items():
        for i in (a, b):
            if n >= out[i] + MIN_HEAD:
                out[i] = n
    out = [max(0, min(n, len(r) - 1)) for n, r in zip(out, rows, strict=True)]
    changed = True
    while changed:  # only lowers heads, so it ends
        changed = False
        for (a, b), n in common.items():
            low, high = sorted((out[a], out[b]))
            if low != high and MIN_HEAD <= low <= n and high - low < MIN_HEAD:
                out[a] = out[b] = low
                changed = True
    return out


def shared_lead(c_ids: list[list[int]]) -> int:
    """How many leading ids all choices share, each keeping at least one id of its own."""
    if len(c_ids) < 2:
        return 0
    return min(len(os.path.commonprefix(c_ids)), min(map(len, c_ids)) - 1)


class HeadCache:
    """The keys and values of shared prompt heads, by (adapter, head ids), the most
    recently used kept within `max_bytes`: a job's subjects each have one head, so each
    is computed once per job (a 400-token head is ~18 MB for SmolLM2-135M in fp32,
    ~200 MB for Llama-2-7B in bf16)."""

    def __init__(self, max_bytes: int = 2 << 30) -> None:
        self.max_bytes = max_bytes
        self._store: OrderedDict[Any, Any] = OrderedDict()
        self._size: dict[Any, int] = {}

    def get(self, key: Any) -> Any:
        if key in self._store:
            self._store.move_to_end(key)
        return self._store.get(key)

    def put(self, key: Any, layers: list[tuple[Any, Any]]) -> None:
        self._store[key] = layers
        self._size[key] = sum(t.numel() * t.element_size() for kv in layers for t in kv)
        self._store.move_to_end(key)
        while len(self._store) > 1 and sum(self._size.values()) > self.max_bytes:
            old, _ = self._store.popitem(last=False)
            del self._size[old]


@dataclass(frozen=True)
class HFSwitches:
    """config backends.hf: speed settings that leave every answer the same."""

    mixed_adapters: bool = True  # one batch mixes adapters (peft adapter_names)
    prefix_reuse: bool = True  # shared heads computed once (shared_heads, _with_heads)
    one_token_choices: bool = True  # one-token choices scored from the prompt's pass
    choice_lead: bool = True  # ids all choices start with scored once, with the prompt
    nested_heads: bool = True  # heads that start alike compute the shared part once


class HFBackend(LocalBackend):
    kind = "hf"

    def __init__(
        self,
        model_id: str,
        base_dir: str | Path,
        adapters: dict[str, str | Path] | None = None,
        chat: bool = True,
        threads: int | None = None,
        add_special_tokens: bool = True,
        **switches: bool,
    ) -> None:
        """`switches`: config backends.hf (HFSwitches: mixed_adapters, prefix_reuse,
        one_token_choices); an unknown name is an error."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.model_id = model_id
        self.base_dir = Path(base_dir)
        self.chat = chat
        opts = HFSwitches(**switches)
        self.mixed_adapters = opts.mixed_adapters
        self.heads = HeadCache() if opts.prefix_reuse else None
        self.one_token_choices = opts.one_token_choices
        self.choice_lead = opts.choice_lead
        self.nested_heads = opts.nested_heads
        self.device, dtype = pick_device()
        self.tokenizer = AutoTokenizer.from_pretrained(self.base_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.use_special_tokens(add_special_tokens)
        # In a local run's worker child, the worker may have loaded the base already.
        model = take_base(self.base_dir) if self.device == "cpu" else None
        if model is None:
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
        self._cache_kw = _cache_kwarg(self.model)

    def generate(self, requests: list[Request]) -> list[Response]:
        out: dict[str, Response] = {}

        def group_key(r: Request) -> tuple[str, Sampling]:
            return ("" if self.mixed_adapters else r.adapter or "", r.sampling)

        for (_, sampling), group in groupby(sorted(requests, key=self._sort_key), group_key):
            batch = list(group)
            reuse = self.heads is not None
            encoded = [self.prompt_ids_and_head(r, head=reuse) for r in batch]
            rows = [ids for ids, _ in encoded]
            finish: list[str] = []
            adapters = [r.adapter or "" for r in batch]
            heads = shared_heads(rows, adapters, [n for _, n in encoded]) if reuse else None
            try:
                if sampling.choices:
                    best = self._choose_batch(rows, adapters, sampling.choices, heads)
                    texts = [t for t in best for _ in range(sampling.n)]
                else:
                    texts = self._generate_batch(rows, adapters, sampling, heads)
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
        self,
        rows: list[list[int]],
        adapters: list[str],
        choices: tuple[str, ...],
        heads: list[int] | None = None,
    ) -> list[str]:
        """For each prompt (its token ids), the choice with the highest summed log-probability."""
        scores = self._choice_scores(rows, adapters, choices, heads)
        return [choices[int(k)] for k in scores.argmax(dim=1)]

    def _choice_scores(
        self,
        rows: list[list[int]],
        adapters: list[str],
        choices: tuple[str, ...],
        heads: list[int] | None = None,
    ) -> Any:
        """Per prompt (its token ids) and choice, the choice's summed log-probability.

        The prompts are run once; every choice then continues from their cached keys and
        values, so k choices cost one prompt pass plus k short ones, not k prompt passes.
        Prompts with a shared head (see _with_heads) start from its cached keys and values.
        A choice's ids are its text's alone: special tokens go before the prompt only.
        """
        import torch

        tok = self.tokenizer
        c_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in choices]
        # Ids every choice starts with ("#thescore: " before 1..5) go with the prompt: one
        # pass scores them for all choices, the choices' own ids follow.
        n_lead = shared_lead(c_ids) if self.choice_lead else 0
        lead = c_ids[0][:n_lead]
        rows, c_ids = [[*r, *lead] for r in rows], [c[n_lead:] for c in c_ids]
        # Only choices of several tokens need a pass beyond the prompt (a survey's "1".."6"
        # and most verdicts are one token each: the prompt's last logits score them).
        multi = [j for j, c in enumerate(c_ids) if len(c) > 1 or not self.one_token_choices]
        reused = self._with_heads(rows, adapters, heads or [0] * len(rows), 1)
        head_kw: dict[str, Any] = {}
        if reused is None:
            enc, done = left_pad(rows, tok.pad_token_id), 0
        else:  # the first `done` columns are the heads, already in the cache
            enc, head_kw[self._cache_kw] = reused
            done = head_kw[self._cache_kw].get_seq_length()
        p_mask = enc["attention_mask"].to(self.device)
        context, first_kw = self._using(adapters)
        with torch.inference_mode(), context:
            # Positions count real tokens only, as generate() does with left padding.
            first = self.model(
                **first_kw,
                **head_kw,
                input_ids=enc["input_ids"][:, done:].to(self.device),
                attention_mask=p_mask,
                position_ids=(p_mask.cumsum(1) - 1).clamp(min=0)[:, done:],
                use_cache=bool(multi or head_kw),
                logits_to_keep=n_lead + 1,
            )
            logp = torch.log_softmax(first.logits[:, -(n_lead + 1) :].float(), dim=-1).cpu()
            if multi:
                logp_rest = self._continue_choices(
                    _cache_of(first), p_mask, [c_ids[j] for j in multi], first_kw
                )
        lead_lp = torch.zeros(len(rows))
        for k, t in enumerate(lead):  # lead token k is predicted at kept position k
            lead_lp = lead_lp + logp[:, k, t]
        scores = torch.empty(len(rows), len(c_ids))
        for j, c in enumerate(c_ids):
            lp = lead_lp + logp[:, -1, c[0]] if lead else logp[:, -1, c[0]]
            for k in range(1, len(c)):  # token k is predicted after tail token k-1
                lp = lp + logp_rest[:, multi.index(j), k - 1, c[k]]
            scores[:, j] = lp
        return scores

    def _continue_choices(
        self, cache: Any, p_mask: Any, c_ids: list[list[int]], first_kw: dict[str, Any]
    ) -> Any:
        """Log-probabilities [prompt, choice, token, vocab] of each choice's tokens after
        each prompt, every choice continuing from the prompts' cached keys and values."""
        import torch

        n_rows, n_c, width = p_mask.shape[0], len(c_ids), max(len(c) for c in c_ids)
        pad = self.tokenizer.pad_token_id
        tail = torch.tensor([c + [pad] * (width - len(c)) for c in c_ids], device=self.device)
        tail_mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in c_ids])
        # Each prompt row becomes n_c choice rows: repeat its adapter name as well.
        rest_kw = {k: [n for n in names for _ in range(n_c)] for k, names in first_kw.items()}
        cache.batch_repeat_interleave(n_c)
        mask = torch.cat(
            [p_mask.repeat_interleave(n_c, 0), tail_mask.to(self.device).repeat(n_rows, 1)],
            dim=1,
        )
        # Left padding: each row's positions continue from its own prompt length.
        start = p_mask.sum(1).repeat_interleave(n_c).unsqueeze(1)
        pos = start + torch.arange(width, device=self.device).unsqueeze(0)
        rest = self.model(
            **rest_kw,
            input_ids=tail.repeat(n_rows, 1),
            attention_mask=mask,
            **{self._cache_kw: cache},
            position_ids=pos,
        )
        return torch.log_softmax(rest.logits.float(), dim=-1).view(n_rows, n_c, width, -1).cpu()

    def _generate_batch(
        self,
        rows: list[list[int]],
        adapters: list[str],
        s: Sampling,
        heads: list[int] | None = None,
    ) -> list[str]:
        import torch

        # Greedy decoding gives one answer per prompt: draw it once and repeat it n times.
        n_draw = 1 if s.greedy else s.n
        cache_kw: dict[str, Any] = {}
        reused = self._with_heads(rows, adapters, heads or [0] * len(rows), n_draw)
        if reused is None:
            enc = left_pad(rows, self.tokenizer.pad_token_id)
        else:
            enc, cache_kw[self._cache_kw] = reused
        enc = {k: v.to(self.device) for k, v in enc.items()}
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
            ids = self.model.generate(**enc, **kwargs, **adapter_kw, **cache_kw)
        new = ids[:, enc["input_ids"].shape[1] :]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        # A row still going at its last token was cut by max_new_tokens (finished rows end
        # in EOS, then padding).
        ended = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        full = new.shape[1] == s.max_new_tokens
        cut = [full and int(row[-1]) not in ended for row in new]
        self._cut = [c for c in cut for _ in range(s.n // n_draw)]
        return [t for t in texts for _ in range(s.n // n_draw)]

    def _with_heads(
        self, rows: list[list[int]], adapters: list[str], heads: list[int], n_draw: int
    ) -> tuple[dict[str, Any], Any] | None:
        """The batch laid out to start from cached heads, or None to run it whole.

        Row i's first heads[i] ids (its shared head: system prompt, ICL profile, ...) come
        from the head cache, computed once per (adapter, head ids) and reused across the
        job's batches. Each row is laid out as [pad][head][pad][rest]: the heads right-
        aligned in the first `width` columns, which the assembled key/value cache covers,
        the rests left-padded after them. Padding is masked, and positions count real
        tokens only (generate derives them from the mask), so every row sees the same
        tokens at the same positions as without reuse.
        """
        import torch

        if self.heads is None or max(heads) < MIN_HEAD:
            return None
        keys = [
            (a, tuple(r[:n])) if n >= MIN_HEAD else None
            for r, a, n in zip(rows, adapters, heads, strict=True)
        ]
        # This batch's heads are held here: putting new ones may evict older ones of the
        # same batch from the cache (its byte bound), and they are still needed below.
        held = {k: self.heads.get(k) for k in dict.fromkeys(keys) if k is not None}
        new = [k for k, layers in held.items() if layers is None]
        if new:
            computed = self._head_layers(new)
            if computed is None:  # a cache this code cannot lay out (sliding windows)
                return None
            for key, layers in zip(new, computed, strict=True):
                self.heads.put(key, layers)
                held[key] = layers
        lens = [len(k[1]) if k else 0 for k in keys]
        width, rest = max(lens), max(len(r) - n for r, n in zip(rows, lens, strict=True))
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), width + rest), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, (row, n) in enumerate(zip(rows, lens, strict=True)):
            if n:
                ids[i, width - n : width] = torch.tensor(row[:n])
                mask[i, width - n : width] = 1
            tail = row[n:]
            ids[i, width + rest - len(tail) :] = torch.tensor(tail)
            mask[i, width + rest - len(tail) :] = 1
        cache = self._assemble([held.get(k) if k else None for k in keys], width, n_draw)
        return {"input_ids": ids, "attention_mask": mask}, cache

    def _head_layers(self, keys: list[tuple[str, tuple[int, ...]]]) -> list[list[Any]] | None:
        """Per (adapter, head ids) key, per layer, the head's keys and values
        [1, kv_heads, len, dim].

        Heads of one adapter that start alike (a judge's rubric before each judged prompt,
        a template before several profiles) compute what they share once, as a head of its
        own, and only their own ids after it (`_nested_heads`); the others go in one
        left-padded forward pass."""
        out: list[list[Any] | None] = [None] * len(keys)
        plain = list(range(len(keys)))
        if self.nested_heads:
            for adapter in dict.fromkeys(a for a, _ in keys):
                mine = [i for i, (a, _) in enumerate(keys) if a == adapter]
                rows = [list(keys[i][1]) for i in mine]
                lead = min(len(os.path.commonprefix(rows)), min(map(len, rows)) - 1)
                if len(mine) < 2 or lead < MIN_HEAD:
                    continue
                nested = self._nested_heads(rows, adapter, lead)
                if nested is None:
                    return None
                for i, layers in zip(mine, nested, strict=True):
                    out[i] = layers
                plain = [i for i in plain if i not in mine]
        if plain:
            computed = self._plain_heads([keys[i] for i in plain])
            if computed is None:
                return None
            for i, layers in zip(plain, computed, strict=True):
                out[i] = layers
        return out  # type: ignore[return-value]

    def _nested_heads(self, rows: list[list[int]], adapter: str, lead: int) -> list | None:
        """The heads `rows` (one adapter's, sharing their first `lead` ids) as
        _head_layers gives them: the shared ids from the head cache (computed there once),
        each row's own ids in one pass after it, each row's keys and values cut out of the
        padded layout (`_with_heads`: [pad][shared][pad][own])."""
        import torch

        reused = self._with_heads(rows, [adapter] * len(rows), [lead] * len(rows), 1)
        if reused is None:
            return None
        enc, cache = reused
        layers = self._cached_layers(enc, [adapter] * len(rows), cache, lead)
        if layers is None:
            return None
        width = enc["attention_mask"].shape[1]

        def own(t: Any, i: int, n: int) -> Any:  # row i's shared ids, then its n - lead own
            return torch.cat([t[i : i + 1, :, :lead], t[i : i + 1, :, width - n + lead :]], 2)

        return [
            [(own(la.keys, i, len(r)), own(la.values, i, len(r))) for la in layers]
            for i, r in enumerate(rows)
        ]

    def _cached_layers(
        self, enc: dict[str, Any], adapters: list[str], cache: Any = None, done: int = 0
    ) -> list[Any] | None:
        """The per-layer keys and values after one forward pass over the left-padded batch
        `enc`, whose first `done` columns are already in `cache` (None: no cache)."""
        import torch

        mask = enc["attention_mask"].to(self.device)
        context, kw = self._using(adapters)
        if cache is not None:
            kw[self._cache_kw] = cache
        with torch.inference_mode(), context:
            out = self.model(
                **kw,
                input_ids=enc["input_ids"][:, done:].to(self.device),
                attention_mask=mask,
                # Positions count real tokens only, as generate() does with left padding.
                position_ids=(mask.cumsum(1) - 1).clamp(min=0)[:, done:],
                use_cache=True,
                logits_to_keep=1,
            )
        return _dynamic_layers(_cache_of(out))

    def _plain_heads(self, keys: list[tuple[str, tuple[int, ...]]]) -> list[list[Any]] | None:
        """_head_layers for heads computed whole: all in one left-padded forward pass."""

        rows, adapters = [list(ids) for _, ids in keys], [a for a, _ in keys]
        enc = left_pad(rows, self.tokenizer.pad_token_id)
        layers = self._cached_layers(enc, adapters)
        if layers is None:
            return None
        width = enc["attention_mask"].shape[1]
        # Copies, not views: a view would keep the whole padded batch alive, beyond what
        # HeadCache counts against its byte bound.
        return [
            [(la.keys[i : i + 1, :, width - len(r) :].clone(),
              la.values[i : i + 1, :, width - len(r) :].clone())
             for la in layers]
            for i, r in enumerate(rows)
        ]  # fmt: skip

    def _assemble(self, heads: list[Any], width: int, n_draw: int) -> Any:
        """A DynamicCache over the first `width` columns: row i's head (its per-layer keys
        and values, None: no head) right-aligned, zeros (masked) before it; each row
        repeated n_draw times, as generate() expands rows."""
        import torch
        from transformers import DynamicCache

        some = next(h for h in heads if h is not None)
        cache = DynamicCache()
        for layer, (k0, v0) in enumerate(some):
            shape = (len(heads), k0.shape[1], width, k0.shape[3])
            k_all = torch.zeros(shape, dtype=k0.dtype, device=k0.device)
            v_all = torch.zeros(shape, dtype=v0.dtype, device=v0.device)
            for i, head in enumerate(heads):
                if head is not None:
                    k, v = head[layer]
                    k_all[i, :, width - k.shape[2] :] = k[0]
                    v_all[i, :, width - v.shape[2] :] = v[0]
            if n_draw > 1:
                k_all = k_all.repeat_interleave(n_draw, dim=0)
                v_all = v_all.repeat_interleave(n_draw, dim=0)
            cache.update(k_all, v_all, layer)
        return cache

    @staticmethod
    def _cut_reply(req: Request, why: str) -> Response:
        log.warning("request %s failed: %s", req.key, why)
        return Response(req.key, [], STATUS_FAILED, why)

    def _sort_key(self, r: Request) -> tuple:
        s = r.sampling
        grouped = (s.max_new_tokens, s.temperature, s.top_p, s.n, s.seed, s.choices)
        return grouped if self.mixed_adapters else (r.adapter or "", *grouped)
