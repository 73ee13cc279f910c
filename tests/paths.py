"""Where tests find the repository's fixtures and the offline copies of public data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo"
PROMPTS = ROOT / "resources" / "prompts"
SHARED = Path(os.environ.get("VALUEHARMS_SHARED_DATA", ROOT.parent / "shared" / "data")) / "study_a"


def shared(name: str) -> Path:
    """A file of ../shared/data/study_a, or skip the test where it is absent."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared data {path} absent")
    return path
