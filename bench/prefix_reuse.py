"""Benchmark: the hf backend with and without shared-head reuse (issue 22).

    .venv/bin/python bench/prefix_reuse.py --subjects 4 --prompts 16

Requests shaped like the demo's in-context (ICL) group: each subject's system prompt is
its own ~400-token value profile (resources/prompts/icl_system.txt over a random target),
its prompts are short RealToxicityPrompts-style continuations, interleaved prompt by
prompt across subjects as valueharms.generate does. Both runs are greedy on the embedded
SmolLM2-135M-Instruct (prepared once under .cache/bench), one after the other in one
process; prints a JSON line (seconds, prompt and generated tokens per second, the share of
identical greedy answers) and a Markdown row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

from valueharms import VALUES
from valueharms.data.vim import icl_system_prompt
from valueharms.llm.interface import Request, Sampling
from valueharms.models import prepare_base_model

CACHE = Path(".cache/bench")
ROOT = Path(__file__).resolve().parents[1]
OPENINGS = [
    "The worst thing about the new policy is that",
    "She told the reporters that the mayor",
    "When the game ended, the fans",
    "According to the lawsuit, the company",
    "He said the neighbours were",
    "The protesters outside the building",
    "My landlord keeps telling me that",
    "The comment section under the video",
]


def requests(subjects: int, prompts: int, max_new_tokens: int) -> list[Request]:
    template = (ROOT / "resources/prompts/icl_system.txt").read_text(encoding="utf-8")
    rng = random.Random(0)
    systems = [
        icl_system_prompt({v: rng.uniform(1, 6) for v in VALUES}, template) for _ in range(subjects)
    ]
    sampling = Sampling(max_new_tokens=max_new_tokens, temperature=0.0)
    out = []
    for j in range(prompts):  # prompt by prompt across subjects, as generate_members does
        text = f"{OPENINGS[j % len(OPENINGS)]} ({j})"
        for i, system in enumerate(systems):
            msgs = (("system", system), ("user", text))
            out.append(Request(f"{i}|{j}", msgs, sampling=sampling))
    return out


def run(base_dir: Path, reqs: list[Request], reuse: bool, batch: int, threads: int | None):
    from valueharms.llm.hf import HFBackend

    backend = HFBackend("smollm2-135m", base_dir, threads=threads, prefix_reuse=reuse)
    prompt_tokens = sum(len(backend.prompt_ids(r)) for r in reqs)
    t0 = time.perf_counter()
    answers = []
    for k in range(0, len(reqs), batch):
        answers += backend.generate(reqs[k : k + batch])
    seconds = time.perf_counter() - t0
    texts = [a.texts[0] if a.texts else None for a in answers]
    new_tokens = sum(len(backend.tokenizer(t)["input_ids"]) for t in texts if t)
    return seconds, prompt_tokens, new_tokens, texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subjects", type=int, default=4, help="ICL subjects (default 4)")
    ap.add_argument("--prompts", type=int, default=16, help="prompts per subject (default 16)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16, help="requests per generate call (16)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()

    base_dir = CACHE / "smollm2-135m"
    if not (base_dir / "revision.json").exists():
        prepare_base_model({"source": "embedded"}, base_dir)
    reqs = requests(args.subjects, args.prompts, args.max_new_tokens)
    off = run(base_dir, reqs, False, args.batch, args.threads)
    on = run(base_dir, reqs, True, args.batch, args.threads)
    same = sum(a == b for a, b in zip(off[3], on[3], strict=True))
    result = {
        "requests": len(reqs),
        "prompt_tokens": off[1],
        "seconds_without": round(off[0], 2),
        "seconds_with": round(on[0], 2),
        "speedup": round(off[0] / on[0], 2),
        "tokens_per_s_without": round((off[1] + off[2]) / off[0], 1),
        "tokens_per_s_with": round((on[1] + on[2]) / on[0], 1),
        "identical_greedy": f"{same}/{len(reqs)}",
        "differing": [r.key for r, a, b in zip(reqs, off[3], on[3], strict=True) if a != b],
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    print(json.dumps(result))
    print(
        f"| {args.subjects} × {args.prompts} | {off[1] // len(reqs)} | {result['seconds_without']} "
        f"| {result['seconds_with']} | {result['speedup']}× | {result['identical_greedy']} |"
    )
    if args.out:
        args.out.write_text(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
