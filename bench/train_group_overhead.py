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
    from valueharms.models import tiny_random_model

    return tiny_random_model(out, seed=0, initializer_range=0.3, source="bench")


def main() -> None:
    from valueharms.train.sft import SFTConfig, load_base

    med, runs = _median(lambda: subprocess.run([sys.executable, "-c", IMPORTS], check=True))
    print(f"process start + imports: median {med:.2f} s (runs {runs})")
    base = tiny_model(Path(tempfile.mkdtemp()))
    med, runs = _median(lambda: load_base(base, SFTConfig(), 1))
    print(f"tiny base load (tokenizer + weights): median {med:.2f} s (runs {runs})")


if __name__ == "__main__":
    main()
