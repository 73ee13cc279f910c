"""Drive `VLLMBackend` on CPU for tests/test_vllm_backend.py; run with the vLLM env's python.

    .venv-vllm/bin/python tests/vllm_check.py SPEC.json RESULT.json

SPEC: {"model_id", "base_dir", "adapters": {name: dir}, "prompts": [user messages],
"choice_items": [{"prompt", "choices"}], "max_new_tokens", and optional "dtype",
"max_loras", "max_model_len", "engine_kwargs"}. One engine serves every adapter. RESULT holds, per
adapter (and "base" for the bare model), the greedy texts when every request runs in one
mixed `generate` call and when each adapter runs alone; the choice picks both ways; two
seeded sampled requests both ways; a request naming an unknown adapter; the identities;
and timings. Not a pytest module: it needs the vLLM environment, and vLLM's engine runs in
a child process by default, which needs the `__main__` guard (the test runs the engine in
this process instead, VLLM_ENABLE_V1_MULTIPROCESSING=0; see VLLM_CHECK_ENV there).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

BASE = "base"  # label of the bare model in RESULT; no adapter may use it


def main(spec_path: str, out_path: str) -> None:
    from valueharms.llm.interface import Request, Sampling
    from valueharms.llm.vllm_backend import VLLMBackend

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    adapters: dict[str, str] = spec["adapters"]
    assert BASE not in adapters
    labels = [*adapters, BASE]
    greedy = Sampling(max_new_tokens=spec["max_new_tokens"])
    sampled = Sampling(max_new_tokens=spec["max_new_tokens"], temperature=1.0, n=2, seed=7)

    def gen_requests(label: str) -> list[Request]:
        return [
            Request(
                f"{label}/{i}",
                messages=(("user", p),),
                sampling=greedy,
                adapter=None if label == BASE else label,
            )
            for i, p in enumerate(spec["prompts"])
        ]

    choice_requests = [
        Request(
            f"choice/{i}",
            messages=(("user", item["prompt"]),),
            sampling=Sampling(choices=tuple(item["choices"])),
        )
        for i, item in enumerate(spec["choice_items"])
    ]
    sampled_requests = [
        Request(f"sampled/{i}", messages=(("user", p),), sampling=sampled)
        for i, p in enumerate(spec["prompts"][:2])
    ]
    unknown = Request("unknown", messages=(("user", "hi"),), sampling=greedy, adapter="nope")

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    backend = VLLMBackend(
        spec["model_id"],
        spec["base_dir"],
        adapters=adapters,
        dtype=spec.get("dtype", "auto"),
        max_loras=spec.get("max_loras", 8),
        max_model_len=spec.get("max_model_len"),
        engine_kwargs=spec.get("engine_kwargs"),
    )
    timings["engine_start_s"] = time.perf_counter() - t0

    # The first batch is slow (kernel warm-up): keep it out of the timed calls.
    t0 = time.perf_counter()
    backend.generate([r for label in labels for r in gen_requests(label)[:1]] + choice_requests[:1])
    timings["warmup_s"] = time.perf_counter() - t0

    # Everything in one call: all adapters, the base model, choices, sampling, a failure.
    mixed_in = (
        [r for label in labels for r in gen_requests(label)]
        + choice_requests
        + sampled_requests
        + [unknown]
    )
    t0 = time.perf_counter()
    mixed_out = {r.key: r for r in backend.generate(mixed_in)}
    timings["mixed_call_s"] = time.perf_counter() - t0

    alone_out = {}
    for label in labels:
        t0 = time.perf_counter()
        alone_out.update({r.key: r for r in backend.generate(gen_requests(label))})
        timings[f"alone_{label}_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    alone_out.update({r.key: r for r in backend.generate(choice_requests)})
    timings["alone_choices_s"] = time.perf_counter() - t0
    alone_out.update({r.key: r for r in backend.generate(sampled_requests)})
    timings["alone_total_s"] = sum(
        v for k, v in timings.items() if k.startswith("alone_") and k != "alone_total_s"
    )

    def texts(out: dict, reqs: list[Request]) -> list[str | None]:
        return [out[r.key].texts[0] if out[r.key].texts else None for r in reqs]

    def statuses(out: dict, reqs: list[Request]) -> list[str]:
        return [out[r.key].status for r in reqs]

    u = mixed_out["unknown"]
    result = {
        "mixed": {label: texts(mixed_out, gen_requests(label)) for label in labels},
        "alone": {label: texts(alone_out, gen_requests(label)) for label in labels},
        "status": {
            "mixed": statuses(mixed_out, [r for r in mixed_in if r is not unknown]),
            "alone": statuses(alone_out, list(alone_out.values())),
        },
        "choices": {
            "mixed": texts(mixed_out, choice_requests),
            "alone": texts(alone_out, choice_requests),
        },
        "sampled": {
            "mixed": [mixed_out[r.key].texts for r in sampled_requests],
            "alone": [alone_out[r.key].texts for r in sampled_requests],
        },
        "unknown_adapter": {"status": u.status, "error": u.error, "texts": u.texts},
        "errors": sorted(
            {r.error for r in [*mixed_out.values(), *alone_out.values()] if r.error} - {u.error}
        ),
        "identity": {label: backend.identity(None if label == BASE else label) for label in labels},
        "max_model_len": backend.max_model_len,
        "n_mixed_requests": len(mixed_in),
        "timings": timings,
    }
    t0 = time.perf_counter()
    with backend:  # exits through close()
        pass
    result["timings"]["close_s"] = time.perf_counter() - t0
    result["closed"] = backend.llm is None
    Path(out_path).write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:3])
