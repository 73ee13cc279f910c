"""The estimate's tables: model sizes and shapes (built in), GPUs, API prices and the
assumed dataset sizes (YAML files under resources/estimate/, named in config `estimate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]


class EstimateError(ValueError):
    """A setting of the estimate is unusable; the message says which and what is known."""


@dataclass(frozen=True)
class Arch:
    """The shapes LoRA adapters are built on (from each model's config.json)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int

    def module_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer LoRA may target, per decoder layer."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {
            "q_proj": (self.hidden, q),
            "k_proj": (self.hidden, kv),
            "v_proj": (self.hidden, kv),
            "o_proj": (q, self.hidden),
            "gate_proj": (self.hidden, self.intermediate),
            "up_proj": (self.hidden, self.intermediate),
            "down_proj": (self.intermediate, self.hidden),
        }


@dataclass(frozen=True)
class Family:
    """Models of one architecture and size (base, SFT and instruct releases alike)."""

    label: str
    params_b: float  # total parameters, billions (embeddings included)
    arch: Arch | None
    ids: tuple[str, ...]  # hub ids, matched case-insensitively


# Built-in sizes of the models the two studies use. Counts and shapes from each model's
# config.json on the hub (parameters: the model card's or summed from those shapes).
FAMILIES: tuple[Family, ...] = (
    Family(
        "Llama-2-7B",
        6.74,
        Arch(32, 4096, 32, 32, 128, 11008),
        ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-chat-hf"),
    ),
    Family(
        "Llama-3.1-8B",
        8.03,
        Arch(32, 4096, 32, 8, 128, 14336),
        (
            "meta-llama/Llama-3.1-8B",
            "meta-llama/Llama-3.1-8B-Instruct",
            "meta-llama/Meta-Llama-3.1-8B",
            "meta-llama/Meta-Llama-3.1-8B-Instruct",
            "allenai/Llama-3.1-Tulu-3-8B-SFT",
            "allenai/Llama-3.1-Tulu-3-8B-DPO",
            "allenai/Llama-3.1-Tulu-3-8B",
        ),
    ),
    Family(
        "OLMo-2-13B",
        13.7,
        Arch(40, 5120, 40, 40, 128, 13824),
        (
            "allenai/OLMo-2-1124-13B",
            "allenai/OLMo-2-1124-13B-SFT",
            "allenai/OLMo-2-1124-13B-DPO",
            "allenai/OLMo-2-1124-13B-Instruct",
        ),
    ),
    Family(
        "Mistral-Nemo-12B",
        12.2,
        Arch(40, 5120, 32, 8, 128, 14336),
        ("mistralai/Mistral-Nemo-Base-2407", "mistralai/Mistral-Nemo-Instruct-2407"),
    ),
    Family(
        "Mistral-7B-v0.3",
        7.25,
        Arch(32, 4096, 32, 8, 128, 14336),
        ("mistralai/Mistral-7B-v0.3", "mistralai/Mistral-7B-Instruct-v0.3"),
    ),
    Family(
        "Mistral-Small-24B",
        23.6,
        Arch(40, 5120, 32, 8, 128, 32768),
        ("mistralai/Mistral-Small-24B-Base-2501", "mistralai/Mistral-Small-24B-Instruct-2501"),
    ),
    Family(
        "Llama-3.3-70B",
        70.6,
        Arch(80, 8192, 64, 8, 128, 28672),
        ("meta-llama/Llama-3.3-70B-Instruct",),
    ),
    Family(
        "SmolLM2-135M",
        0.135,
        Arch(30, 576, 9, 3, 64, 1536),
        ("HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    ),
    # Study A's regard classifier: a BERT-base sequence classifier (judge.regard).
    Family("BERT-base classifier", 0.11, None, ("sasha/regardv3",)),
)
EMBEDDED = "SmolLM2-135M"  # models.<id>.source embedded (valueharms.models)
_BY_ID = {i.lower(): f for f in FAMILIES for i in f.ids}
_BY_LABEL = {f.label: f for f in FAMILIES}


@dataclass(frozen=True)
class ModelSize:
    """A model's size for the FLOP model: where the number came from, and its shapes."""

    model: str
    params_b: float | None
    arch: Arch | None
    origin: str  # "models.<id>.params_b", "estimate.params_b.<id>", "table: <label>", "unknown"

    @property
    def params(self) -> float | None:
        return None if self.params_b is None else self.params_b * 1e9


def family_of(hf_id: str | None) -> Family | None:
    return _BY_ID.get((hf_id or "").lower())


def model_size(config: Mapping[str, Any], model: str) -> ModelSize:
    """Parameters of `model` (a key of `models`, or a classifier's hub id): the model spec's
    `params_b`, then `estimate.params_b.<id>`, then the built-in table by hub id."""
    spec = (config.get("models") or {}).get(model) or {}
    overrides = (config.get("estimate") or {}).get("params_b") or {}
    if spec.get("source") == "tiny_random" and model not in overrides:
        return tiny_random_size(model, spec.get("tiny_random") or {})
    fam = _BY_LABEL[EMBEDDED] if spec.get("source") == "embedded" else None
    fam = fam or family_of(spec.get("hf_id")) or family_of(model)
    arch = fam.arch if fam else None
    if spec.get("params_b"):
        return ModelSize(model, float(spec["params_b"]), arch, f"models.{model}.params_b")
    if model in overrides:
        return ModelSize(model, float(overrides[model]), arch, f"estimate.params_b.{model}")
    if fam is not None:
        return ModelSize(model, fam.params_b, arch, f"table: {fam.label}")
    return ModelSize(model, None, None, "unknown")


# The embedded SmolLM2 tokenizer's vocabulary, which every tiny_random model uses.
SMOLLM2_VOCAB = 49152


def tiny_random_size(model: str, shape: Mapping[str, Any]) -> ModelSize:
    """A tiny_random model's parameters, counted from its shape (models.<id>.tiny_random;
    valueharms.models.build_tiny_random): tied embeddings, q/k/v/o, the MLP, the norms."""
    from valueharms.models import TINY_RANDOM_DEFAULTS

    s = {**TINY_RANDOM_DEFAULTS, **shape}
    h, n, inter = s["hidden_size"], s["num_hidden_layers"], s["intermediate_size"]
    heads = s["num_attention_heads"]
    arch = Arch(n, h, heads, heads, h // heads, inter)
    per_layer = 4 * h * h + 3 * h * inter + 2 * h
    params = SMOLLM2_VOCAB * h + n * per_layer + h
    return ModelSize(model, params / 1e9, arch, "models.<id>.tiny_random shape")


def lora_params(arch: Arch | None, rank: int, targets: list[str]) -> int | None:
    """Trainable LoRA parameters: rank x (in + out) per targeted linear layer, per decoder
    layer (A is rank x in, B is out x rank). None when the shapes or a target are unknown."""
    if arch is None:
        return None
    dims = arch.module_dims()
    if any(t not in dims for t in targets):
        return None
    return arch.layers * sum(rank * (dims[t][0] + dims[t][1]) for t in targets)


# --- the YAML tables ----------------------------------------------------------------


def resource_path(path: str) -> Path:
    """A table's file: as given (relative to the working directory, like every resources/
    path of the config), else relative to the repository."""
    p = Path(path)
    return p if p.is_file() or p.is_absolute() else ROOT / p


def read_yaml(path: str, key: str) -> dict[str, Any]:
    p = resource_path(path)
    if not p.is_file():
        raise EstimateError(f"config key '{key}': file not found: {path}")
    return yaml.safe_load(p.read_text(encoding="utf-8")) or {}


@dataclass(frozen=True)
class Gpu:
    name: str
    label: str
    bf16_tflops: float
    memory_gb: float
    source: str

    @property
    def peak_flops(self) -> float:
        return self.bf16_tflops * 1e12


def gpu(name: str, table: Mapping[str, Any]) -> Gpu:
    """One GPU of the table; an EstimateError listing the known names otherwise."""
    key = name.lower()
    if key not in table:
        raise EstimateError(f"unknown GPU {name!r}; known: {', '.join(sorted(table))}")
    row = table[key]
    return Gpu(key, row["label"], float(row["bf16_tflops"]), float(row["memory_gb"]), row["source"])


@dataclass(frozen=True)
class Price:
    """USD per 1M input and output tokens of an API model (None: not in the table)."""

    name: str
    input: float | None
    output: float | None
    factor: float  # the Batch API's discount, when the config uses it


def price(config: Mapping[str, Any], model: str, prices: Mapping[str, Any]) -> Price:
    """The price of an API model: by its served `name`, its key, or its pinned revision."""
    spec = config["models"][model]
    table = prices.get("models") or {}
    batch = config["backends"]["openai"]["batch"]
    factor = float(prices.get("batch_discount", 1.0)) if batch else 1.0
    for name in (spec.get("name"), model, spec.get("revision")):
        if name and name in table:
            row = table[name]
            return Price(name, float(row["input"]), float(row["output"]), factor)
    return Price(spec.get("name") or model, None, None, factor)
