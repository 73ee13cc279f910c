"""Benchmark: one call serving N LoRA adapters vs one call per adapter (hf or vllm).

    .venv/bin/python bench/adapters.py --backend hf --adapters 8
    .venv-vllm/bin/python bench/adapters.py --backend vllm --adapters 8

Uses the embedded SmolLM2-135M-Instruct (prepared once under .cache/bench) and random
LoRA adapters; prints a JSON line and a Markdown row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from valueharms.llm.bench import compare, random_adapters
from valueharms.models import prepare_base_model

CACHE = Path(".cache/bench")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backend", choices=["hf", "vllm"], required=True)
    ap.add_argument("--adapters", type=int, default=8, help="LoRA adapters served (default 8)")
    ap.add_argument("--prompts", type=int, default=16, help="prompts per adapter (default 16)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--rank", type=int, default=8, help="LoRA rank (default 8)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (hf)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()

    base_dir = CACHE / "smollm2-135m"
    if not (base_dir / "revision.json").exists():
        prepare_base_model({"source": "embedded"}, base_dir)
    adapters = random_adapters(base_dir, CACHE / "adapters", args.adapters, r=args.rank)
    if args.backend == "hf":
        from valueharms.llm.hf import HFBackend

        backend = HFBackend("smollm2-135m", base_dir, adapters=adapters, threads=args.threads)
    else:
        from valueharms.llm.vllm_backend import VLLMBackend

        backend = VLLMBackend(
            "smollm2-135m",
            base_dir,
            adapters=adapters,
            max_loras=args.adapters,
            max_lora_rank=max(8, args.rank),
        )
    tok = backend.tokenizer
    result = compare(
        backend,
        list(adapters),
        args.prompts,
        args.max_new_tokens,
        lambda t: len(tok(t, add_special_tokens=False)["input_ids"]),
    )
    result.update(backend=args.backend, machine=f"{platform.machine()} {platform.processor()}")
    print(json.dumps(result))
    print(
        f"| {args.backend} | {result['adapters']} | {result['requests']} | "
        f"{result['mixed_tokens_per_s']} | {result['loop_tokens_per_s']} | "
        f"{result['speedup']}x | {result['same_text_share']:.1%} |"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
