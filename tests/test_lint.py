"""Code standards as tests, so CI holds them: ruff, snakefmt and snakemake --lint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "cmd",
    [
        ("ruff", "check", "src", "tests", "scripts", "bench", "cluster"),
        ("ruff", "format", "--check", "src", "tests", "scripts", "bench", "cluster"),
        ("snakefmt", "--check", "Snakefile", "rules"),
    ],
)
def test_formatters_and_linters_are_clean(cmd: tuple[str, ...]) -> None:
    exe = BIN / cmd[0] if (BIN / cmd[0]).exists() else shutil.which(cmd[0])
    assert exe, f"{cmd[0]} is not installed (pip install -e '.[dev]')"
    out = run(str(exe), *cmd[1:])
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow  # starts snakemake
def test_snakemake_lint_is_clean() -> None:
    out = run(sys.executable, "-m", "snakemake", "--lint")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Congratulations" in out.stdout + out.stderr, out.stdout + out.stderr
