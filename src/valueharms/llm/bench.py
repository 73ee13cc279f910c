"""Multi-adapter serving benchmark: one call mixing N LoRA adapters vs one call per adapter.

Runs through the generic Backend interface, so the same measurement covers `hf` (peft
`adapter_names` batches vs one adapter at a time) and `vllm` (one engine, a LoRARequest
per prompt, vs one adapter per call). The adapters have random non-zero LoRA weights:
what is measured is serving cost, which does not depend on what the weights learnt.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from valueharms.llm.interface import STATUS_OK, Backend, Request, Sampling

PROMPTS = [
    "Write one sentence about the sea.",
    "What makes a good friend?",
    "Describe your favourite season.",
    "Give me advice for a job interview.",
    "Why do people travel?",
    "Explain what a library is for.",
    "What should I cook tonight?",
    "Tell me about the moon.",
    "How do bees make honey?",
    "What is fairness?",
    "Describe a busy market.",
    "Why is sleep important?",
    "What is a good way to learn a language?",
    "Tell me a fact about trees.",
    "What do you think about honesty?",
    "How do trains work?",
]


def random_adapters(
    base_dir: str | Path, out_root: str | Path, n: int, r: int = 8, scale: float = 0.05
) -> dict[str, Path]:
    """`n` peft LoRA adapters on q/v with random A and B (seeded by index), saved once.

    `scale` keeps the random update small, so the adapted model still writes text.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out_root = Path(out_root)
    paths = {f"a{i}": out_root / f"a{i}-r{r}" for i in range(n)}
    if all((p / "adapter_config.json").exists() for p in paths.values()):
        return paths
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    for i, (name, path) in enumerate(paths.items()):
        torch.manual_seed(1000 + i)
        cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"])
        cfg.init_lora_weights = False
        model = get_peft_model(base, cfg, adapter_name=name)
        with torch.no_grad():
            for pname, param in model.named_parameters():
                if "lora_" in pname:
                    param.mul_(scale / max(param.abs().mean().item(), 1e-8))
        tmp = path.parent / f".{path.name}.tmp"
        model.save_pretrained(tmp)
        (tmp / name).rename(path)  # peft nests an adapter saved under its own name
        shutil.rmtree(tmp)
        base = model.unload()
    return paths


def _requests(adapters: list[str], n_prompts: int, s: Sampling) -> list[Request]:
    prompts = [
        PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f" ({i})")
        for i in range(n_prompts)
    ]
    return [
        Request(f"{a}/{i}", messages=(("user", p),), sampling=s, adapter=a)
        for a in adapters
        for i, p in enumerate(prompts)
    ]


def _timed(fn: Callable[[], list[Any]]) -> tuple[float, list[Any]]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def compare(
    backend: Backend,
    adapters: list[str],
    n_prompts: int,
    max_new_tokens: int,
    count_tokens: Callable[[str], int],
) -> dict[str, Any]:
    """Time one mixed call against a loop of per-adapter calls, after a warm-up call.

    Returns wall seconds, generated tokens/s for each, the speed-up, and the share of
    (adapter, prompt) answers whose greedy text is identical in both modes.
    """
    s = Sampling(max_new_tokens=max_new_tokens)
    reqs = _requests(adapters, n_prompts, s)
    backend.generate(reqs[: min(len(reqs), 8)])  # warm-up: kernels, caches, allocator
    mixed_s, mixed = _timed(lambda: backend.generate(reqs))

    def loop() -> list[Any]:
        out = []
        for a in adapters:
            out += backend.generate([r for r in reqs if r.adapter == a])
        return out

    loop_s, looped = _timed(loop)
    by_key = {r.key: r for r in looped}
    ok = [r for r in mixed if r.status == STATUS_OK and by_key[r.key].status == STATUS_OK]
    same = sum(r.texts == by_key[r.key].texts for r in ok)
    per_prompt: dict[str, set[str]] = {}
    for r in ok:
        per_prompt.setdefault(r.key.split("/", 1)[1], set()).add(r.texts[0])
    distinct = sum(len(texts) > 1 for texts in per_prompt.values())
    tokens = {
        "mixed": sum(count_tokens(t) for r in mixed for t in r.texts),
        "loop": sum(count_tokens(t) for r in looped for t in r.texts),
    }
    return {
        "adapters": len(adapters),
        "prompts_per_adapter": n_prompts,
        "max_new_tokens": max_new_tokens,
        "requests": len(reqs),
        "failed": len(reqs) - len(ok),
        "mixed_s": round(mixed_s, 2),
        "loop_s": round(loop_s, 2),
        "mixed_tokens_per_s": round(tokens["mixed"] / mixed_s, 1),
        "loop_tokens_per_s": round(tokens["loop"] / loop_s, 1),
        "speedup": round(loop_s / mixed_s, 2),
        "same_text_share": round(same / max(len(ok), 1), 4),
        # Adapters that all answered alike would make the comparison vacuous.
        "prompts_where_adapters_differ": round(distinct / max(len(per_prompt), 1), 4),
    }
