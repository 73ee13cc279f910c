"""The multi-adapter benchmark measures what it says: same answers both ways, real adapters."""

from __future__ import annotations

from pathlib import Path

from valueharms.llm.bench import compare, random_adapters


def test_compare_mixed_and_looped_hf(tiny_model_dir: Path, tmp_path: Path) -> None:
    from valueharms.llm.hf import HFBackend

    adapters = random_adapters(tiny_model_dir, tmp_path, n=3, r=4, scale=0.5)
    assert sorted(adapters) == ["a0", "a1", "a2"]
    assert all((p / "adapter_model.safetensors").exists() for p in adapters.values())
    again = random_adapters(tiny_model_dir, tmp_path, n=3, r=4, scale=0.5)
    assert again == adapters  # saved once, reused
    backend = HFBackend("tiny", tiny_model_dir, adapters=adapters, threads=2)
    result = compare(backend, list(adapters), n_prompts=4, max_new_tokens=4, count_tokens=len)
    assert result["requests"] == 12 and result["failed"] == 0
    assert result["same_text_share"] == 1.0
    assert result["prompts_where_adapters_differ"] >= 0.75
    assert result["mixed_s"] > 0 and result["loop_s"] > 0
