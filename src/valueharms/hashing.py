"""Content hashes: the identities behind model revisions, cache keys and rule params."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_dir(path: str | os.PathLike[str], exclude: tuple[str, ...] = ()) -> str:
    """Hash every file below `path` (relative name + content), in sorted order."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix()
        if rel in exclude or any(part.startswith(".") for part in f.relative_to(root).parts):
            continue
        h.update(rel.encode() + b"\0" + sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a canonical JSON encoding: key order and whitespace do not matter."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return sha256_text(blob)


def code_hash(*modules: str) -> str:
    """Hash the source files of the given valueharms submodules or subpackages.

    Rules put this in `params`, so editing a stage's code reruns that stage only.
    """
    pkg = Path(__file__).parent
    h = hashlib.sha256()
    for mod in sorted(modules):
        rel = Path(*mod.split("."))
        target = pkg / rel
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target.with_suffix(".py")]
        for f in files:
            h.update(f.relative_to(pkg).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]
