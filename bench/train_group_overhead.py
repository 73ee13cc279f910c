"""Per-job overhead a grouped training job (training.subjects_per_job) pays once: a fresh
Python process importing the training stack, and loading the base (the tiny test model
of tests/conftest.py here). Median of 3. Run: PYTHONPATH=src python bench/...py"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORTS = "import torch, transformers, peft; from valueharms.train import steps, sft"


def _median(fn: object, n: int = 3) -> tuple[float, list[float]]:
    runs = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        runs.append(round(time.perf_counter() - t0, 2))
    return statistics.median(runs), runs


def tiny_model(out: Path) -> Path:
    """The 2-layer, hidden-32 Llama of tests/conftest.py's tiny_model_dir."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from valueharms.hashing import sha256_dir
    from valueharms.io import write_json
    from valueharms.models import REVISION_FILE, embedded_gguf_path

    gguf = embedded_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=64,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    write_json(out / REVISION_FILE, {"source": "bench", "weights_sha256": sha256_dir(out)})
    return out


def main() -> None:
    from valueharms.train.sft import SFTConfig, load_base

    med, runs = _median(lambda: subprocess.run([sys.executable, "-c", IMPORTS], check=True))
    print(f"process start + imports: median {med:.2f} s (runs {runs})")
    base = tiny_model(Path(tempfile.mkdtemp()))
    med, runs = _median(lambda: load_base(base, SFTConfig(), 1))
    print(f"tiny base load (tokenizer + weights): median {med:.2f} s (runs {runs})")


if __name__ == "__main__":
    main()
