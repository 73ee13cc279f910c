"""Value induction by preference training (Study B, B2): LoRA DPO, or ORPO for robustness.

Both go through TRL (1.16): `trl.DPOTrainer` and `trl.experimental.orpo.ORPOTrainer`
(ORPO moved to `trl.experimental` and is no longer exported from `trl`). The DPO
reference is the base model itself: with a fresh `peft_config` and `ref_model=None`, TRL
keeps no second model and computes the reference log-probabilities with the adapter
disabled (`use_adapter(model, None)` -> `model.disable_adapter()`, trl/trainer/
dpo_trainer.py `_compute_loss` and `compute_ref_log_probs`; trl/trainer/utils.py
`use_adapter`).

Prompt format (paper App. A; METHODS B2): the chat template is used for every value-induced
model, so with `chat=True` and a tokenizer that has a template the pairs go to TRL as
conversations and TRL applies the template; otherwise (base models without one) the
prompt and responses are raw text and TRL appends EOS to each response.

Only the LoRA adapter is saved (weights and adapter_config.json) with `preference_log.json`
beside it; the directory appears in one rename, and TRL leaves no checkpoints behind.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from valueharms.io import write_json

log = logging.getLogger(__name__)

METHODS = ("dpo", "orpo")
LOG_FILE = "preference_log.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# Metrics kept from each TRL log entry (DPO and ORPO both log these names).
LOG_KEYS = (
    "loss",
    "grad_norm",
    "learning_rate",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "nll_loss",  # ORPO only
    "log_odds_ratio",  # ORPO only
)


@dataclass
class PreferenceConfig:
    """Preference-training settings; the defaults are the paper's (seed 004, Sec. 4.2)."""

    method: str = "dpo"  # Sec. 4.2; "orpo" is the App. C robustness check (Table 11)
    beta: float = 0.1  # Sec. 4.2: main results; sweep {0.01, 0.1, 0.3, 0.9}. ORPO: its lambda
    learning_rate: float = 5e-6  # Sec. 4.2 ("fix the learning rate at 5.0e-6")
    epochs: int = 5  # Sec. 4.2
    lora_r: int = 4  # Sec. 4.2
    lora_alpha: int = 16  # Sec. 4.2
    # Not stated in the paper. TRL's disable_dropout=True (its default, which the paper's
    # TRL runs had) sets every nn.Dropout to p=0, LoRA's included, so 0.0 is what ran.
    lora_dropout: float = 0.0
    disable_dropout: bool = True
    # Not stated in the paper: peft's default LoRA targets for Llama/Mistral/OLMo-2.
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    batch_size: int = 8  # not stated: the transformers/TRL per-device default
    grad_accum: int = 1
    max_length: int = 1024  # not stated: TRL's default (prompt + response tokens)
    max_steps: int | None = None  # cap on optimizer steps (demo, tests)
    seed: int = 42
    logging_steps: int = 10  # TRL's default
    # None: TRL's default (on) on a GPU, off on CPU, where it made a step ~13x slower (FACTS).
    gradient_checkpointing: bool | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.lora_dropout and self.disable_dropout:
            raise ValueError(
                "lora_dropout > 0 has no effect with disable_dropout=True (TRL zeroes every "
                "dropout module): set disable_dropout=False to use it"
            )


def lora_config(cfg: PreferenceConfig) -> Any:
    """The peft LoRA config of a run; built by sft.lora_config so both trainers agree."""
    from valueharms.train.sft import SFTConfig
    from valueharms.train.sft import lora_config as sft_lora_config

    return sft_lora_config(
        SFTConfig(
            lora_r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.target_modules),
        )
    )


def uses_chat_template(tokenizer: Any, chat: bool) -> bool:
    return chat and bool(getattr(tokenizer, "chat_template", None))


def check_pairs(pairs: pd.DataFrame) -> None:
    missing = {"prompt", "chosen", "rejected"} - set(pairs.columns)
    if missing:
        raise ValueError(f"pairs lack columns {sorted(missing)}")
    if pairs.empty:
        raise ValueError("no preference pairs to train on")


def preference_records(pairs: pd.DataFrame, chat_template: bool) -> list[dict[str, Any]]:
    """TRL dataset rows: conversations when the template is to be applied, else raw text."""
    check_pairs(pairs)
    rows = zip(pairs.prompt, pairs.chosen, pairs.rejected, strict=True)
    if not chat_template:
        return [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in rows]
    return [
        {
            "prompt": [{"role": "user", "content": p}],
            "chosen": [{"role": "assistant", "content": c}],
            "rejected": [{"role": "assistant", "content": r}],
        }
        for p, c, r in rows
    ]


def _trainer_args(cfg: PreferenceConfig, output_dir: Path, on_gpu: bool) -> Any:
    common: dict[str, Any] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps if cfg.max_steps is not None else -1,
        "learning_rate": cfg.learning_rate,
        "beta": cfg.beta,
        "max_length": cfg.max_length,
        "disable_dropout": cfg.disable_dropout,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "logging_steps": cfg.logging_steps,
        "save_strategy": "no",  # the adapter is saved once, by us, atomically
        "report_to": "none",
        "disable_tqdm": True,  # our own bar (_Progress) replaces TRL's prints
        # TRL defaults to bf16 and gradient checkpointing; both are slow on CPU (FACTS).
        "bf16": on_gpu,
        "use_cpu": not on_gpu,
        _checkpointing_arg(): (
            on_gpu if cfg.gradient_checkpointing is None else cfg.gradient_checkpointing
        ),
        "dataloader_num_workers": 0,
    }
    if cfg.method == "dpo":
        from trl import DPOConfig

        return DPOConfig(**common)
    ORPOConfig, _ = _orpo()
    # ORPO's collator needs the raw columns; TRL would switch this itself, with a warning.
    return ORPOConfig(**common, remove_unused_columns=False)


def _checkpointing_arg() -> str:
    """transformers 5 renamed gradient_checkpointing (the old name warns when set)."""
    from dataclasses import fields

    from transformers import TrainingArguments

    new = "activation_checkpointing"
    return new if new in {f.name for f in fields(TrainingArguments)} else "gradient_checkpointing"


def _orpo() -> tuple[Any, Any]:
    """ORPOConfig and ORPOTrainer, which TRL 1.x keeps in trl.experimental only."""
    import warnings

    with warnings.catch_warnings():  # the "experimental API" notice: known and accepted
        warnings.filterwarnings("ignore", message=".*trl.experimental.*")
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer
    return ORPOConfig, ORPOTrainer


def _progress_callback(history: list[dict[str, Any]]) -> Any:
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        """A tqdm bar plus the per-step metrics TRL logs (it would print them otherwise)."""

        def __init__(self) -> None:
            self.bar: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar = tqdm(total=state.max_steps, desc="preference", unit="step")

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar.update(state.global_step - self.bar.n)

        def on_log(
            self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any
        ) -> None:
            logs = dict(logs or {})
            if "train_runtime" in logs:  # the closing summary, not a step
                return
            entry = {"step": state.global_step, "epoch": logs.get("epoch")}
            entry |= {k: float(logs[k]) for k in LOG_KEYS if k in logs}
            history.append(entry)
            if "rewards/margins" in logs:
                self.bar.set_postfix(
                    loss=f"{logs.get('loss', float('nan')):.3f}",
                    margin=f"{logs['rewards/margins']:.3f}",
                )

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar.close()

    return _Progress()


def _trainer(
    cfg: PreferenceConfig,
    model: Any,
    tok: Any,
    records: list[dict[str, Any]],
    output_dir: Path,
    on_gpu: bool,
    history: list[dict[str, Any]],
) -> Any:
    """TRL's DPO or ORPO trainer of `model` (LoRA) on `records`, logging into `history`."""
    import datasets
    from transformers import PrinterCallback

    kwargs: dict[str, Any] = {
        "model": model,
        "args": _trainer_args(cfg, output_dir, on_gpu),
        "train_dataset": datasets.Dataset.from_list(records),
        "processing_class": tok,
        "peft_config": lora_config(cfg),
    }
    if cfg.method == "dpo":
        from trl import DPOTrainer

        # ref_model=None with a peft_config: the reference is the adapter-disabled base.
        trainer = DPOTrainer(ref_model=None, **kwargs)
    else:
        _, ORPOTrainer = _orpo()
        trainer = ORPOTrainer(**kwargs)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_progress_callback(history))
    return trainer


def train_preference(
    base_dir: str | Path,
    pairs: pd.DataFrame,
    out_dir: str | Path,
    cfg: PreferenceConfig,
    chat: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train one LoRA adapter on `pairs` (prompt, chosen, rejected) and save it to `out_dir`.

    Returns the summary also written to `out_dir/preference_log.json`: per logging step the
    loss, reward margins and accuracies, plus method, beta, steps and seconds.
    """
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from valueharms.llm.hf import pick_device

    check_pairs(pairs)  # before any model is loaded
    if threads:
        torch.set_num_threads(threads)
    device, dtype = pick_device()
    on_gpu = device == "cuda"
    tok = AutoTokenizer.from_pretrained(base_dir)
    template = uses_chat_template(tok, chat)
    if chat and not template:
        log.info("%s has no chat template: training on raw text", base_dir)
    records = preference_records(pairs, template)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype)

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    history: list[dict[str, Any]] = []
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # TRL's dataset.map bars; restored below
    t0 = time.time()
    try:
        trainer = _trainer(cfg, model, tok, records, work / "trainer", on_gpu, history)
        result = trainer.train()

        adapter = work / "adapter"
        trainer.model.save_pretrained(adapter)
        (adapter / "README.md").unlink(missing_ok=True)  # peft's model card, not the adapter
        summary = {
            "method": cfg.method,
            "beta": cfg.beta,
            "config": asdict(cfg),
            "chat_template": template,
            "n_pairs": len(records),
            "n_train": len(trainer.train_dataset),  # after TRL drops over-long prompts
            "steps": int(trainer.state.global_step),
            "train_loss": float(result.training_loss),
            "history": history,
            "device": device,
            "seconds": round(time.time() - t0, 2),
        }
        write_json(adapter / LOG_FILE, summary)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        adapter.rename(out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if bars:
            datasets.enable_progress_bars()
    return summary
