"""LoRA supervised fine-tuning with loss on the completion tokens only.

Serves both VIM stages (stage 2 continues the stage-1 adapter) and the benign baselines.
The epoch with the lowest validation loss is kept (Study A's recipe).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from valueharms.io import read_json, write_json
from valueharms.llm.local import special_prefix

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass
class SFTConfig:
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    learning_rate: float = 2e-5
    epochs: int = 5
    batch_size: int = 8
    max_length: int = 128
    max_steps: int | None = None  # cap on optimizer steps in total (demo, smoke tests)
    max_valid_examples: int | None = None
    seed: int = 42
    # Efficient loss path (issue 10); same optimisation, same loss. All three at their
    # other value give Study A's published recipe: every batch padded to max_length, the
    # full vocabulary's logits at every position, batches cut from a shuffled order.
    group_by_length: bool = True  # batches of similar lengths (seeded), see epoch_batches
    target_only_logits: bool = True  # lm_head only where a target token is predicted
    pad_to_max_length: bool = False  # pad every batch to max_length, not to its longest
    # Speed switches that leave the optimisation unchanged (bf16 only on GPU).
    micro_batch_size: int | None = None  # gradient accumulation; the update stays batch_size's
    bf16_autocast: bool = True  # GPU: bf16 autocast over bf16 base weights, fp32 LoRA weights
    attn_implementation: str = "sdpa"  # or "eager", "flash_attention_2" (GPU, if installed)
    compile: bool = False  # torch.compile the decoder (pays off on long GPU runs only)
    resume: bool = True  # epoch checkpoints beside the output; a killed run continues
    # Optimizer: torch's AdamW default decay and no clipping (Study A's VIM loop); Study
    # A's benign fine-tunes ran transformers' Trainer: decay 0.0, gradient norm clipped at 1.
    weight_decay: float = 0.01
    max_grad_norm: float | None = None
    # config tokenization.add_special_tokens (set by train.steps, not an sft key): a raw
    # prompt starts with the tokenizer's default prefix (Llama's BOS), as Study A's code.
    add_special_tokens: bool = True


# Chunks of this many batches are sorted by length before batches are cut from them.
GROUP_CHUNK_BATCHES = 50


def encode(
    tokenizer: Any,
    prompt: str,
    completion: str,
    max_length: int,
    chat: bool,
    prefix: Sequence[int] = (),
):
    """Token ids and labels with the prompt masked out; flags right-truncation.

    `prefix` (special_prefix: Llama's BOS) goes before a raw prompt only: a chat template
    writes its own, and the completion is tokenised bare, so no special token lands
    inside the sequence.
    """
    if chat:
        head = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
    else:
        head = prompt
    p_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    if not chat:
        p_ids = [*prefix, *p_ids]
    c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = p_ids + c_ids
    labels = [IGNORE] * len(p_ids) + c_ids
    truncated = len(ids) > max_length
    return ids[:max_length], labels[:max_length], truncated


def epoch_batches(
    lengths: list[int], size: int, gen: Any, group_by_length: bool
) -> list[list[int]]:
    """One epoch's batches (lists of row indices), drawn from the torch generator `gen`.

    Without grouping: batches cut from a random permutation (the published recipe). With
    grouping: the same permutation is cut into chunks of GROUP_CHUNK_BATCHES batches, each
    chunk is sorted by length (longest first) and cut into batches, and the batch order is
    shuffled, so a batch holds examples of similar length and pads little.
    """
    import torch

    order = torch.randperm(len(lengths), generator=gen).tolist()
    if not group_by_length:
        return [order[i : i + size] for i in range(0, len(order), size)]
    chunk = GROUP_CHUNK_BATCHES * size
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: -lengths[i])
        batches.extend(part[i : i + size] for i in range(0, len(part), size))
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def _batches(
    rows: list[tuple[list[int], list[int]]],
    batches: list[list[int]],
    pad_id: int,
    width: int | None = None,
):
    """Right-padded (ids, labels, mask) per batch: to `width` if given, else its longest."""
    import torch

    for batch in batches:
        chunk = [rows[i] for i in batch]
        w = width if width is not None else max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), w), pad_id)
        labels = torch.full((len(chunk), w), IGNORE)
        mask = torch.zeros((len(chunk), w), dtype=torch.long)
        for j, (i_, l_) in enumerate(chunk):
            ids[j, : len(i_)] = torch.tensor(i_)
            labels[j, : len(l_)] = torch.tensor(l_)
            mask[j, : len(i_)] = 1
        yield ids, labels, mask


def _causal_lm(model: Any) -> Any:
    """The causal LM inside a PeftModel (LoRA layers injected in place), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supports_target_only(model: Any) -> bool:
    """Whether logits are plain lm_head(hidden) (no soft-capping or scaling after it)."""
    lm = _causal_lm(model)
    cfg = lm.config
    plain = not getattr(cfg, "final_logit_softcapping", None) and getattr(
        cfg, "logit_scale", 1.0
    ) in (None, 1.0)
    return plain and lm.get_output_embeddings() is not None and hasattr(lm, "get_decoder")


def token_losses(model: Any, ids: Any, labels: Any, mask: Any, target_only: bool):
    """Cross-entropy (fp32) of every target token in the batch, and the row it belongs to.

    Token t of a row is predicted at position t - 1, as in transformers' causal LM loss.
    `target_only` runs the decoder for hidden states and applies lm_head only at the
    positions that predict a target token; otherwise the full vocabulary's logits are
    computed at every position (the published recipe). The two give the same numbers.
    The target-only path also leaves out the last position: causal attention means no
    earlier position sees it, and it predicts nothing.
    """
    import torch.nn.functional as F

    target = labels[:, 1:]
    keep = target != IGNORE
    if target_only:
        lm = _causal_lm(model)
        hidden = lm.get_decoder()(input_ids=ids[:, :-1], attention_mask=mask[:, :-1])
        logits = lm.get_output_embeddings()(hidden.last_hidden_state[keep])
    else:
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1][keep]
    losses = F.cross_entropy(logits.float(), target[keep], reduction="none")
    return losses, keep.nonzero()[:, 0]


def batch_loss(model: Any, ids: Any, labels: Any, mask: Any, target_only: bool):
    """Mean cross-entropy over the batch's target tokens (transformers' `labels=` loss)."""
    if not target_only:
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss
    losses, _ = token_losses(model, ids, labels, mask, target_only=True)
    return losses.mean()


def lora_config(cfg: SFTConfig) -> Any:
    """The peft LoRA config of a run (one place, so the benchmark trains the same)."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )


# Epoch checkpoints live beside the output, under this folder: Snakemake deletes a rule's
# output before it runs the job, so they could not live inside it.
CKPT_DIR = ".ckpt"


def run_key(
    base_dir: str | Path,
    init_adapter: str | Path | None,
    rows: list[list[tuple[list[int], list[int]]]],
    cfg: SFTConfig,
) -> str:
    """Hash of everything a run's result depends on, so no other run resumes its checkpoint.

    The rows are token ids after encoding, so prompt wording, chat template, tokenizer
    and max_length are in it.
    """
    from valueharms.hashing import sha256_json
    from valueharms.models import REVISION_FILE, adapter_hash

    rev = Path(base_dir) / REVISION_FILE
    settings = {k: v for k, v in asdict(cfg).items() if k != "resume"}
    return sha256_json(
        {
            "base": read_json(rev)["weights_sha256"] if rev.exists() else str(base_dir),
            "init": adapter_hash(init_adapter) if init_adapter else None,
            "rows": _rows_hash(rows),
            "cfg": settings,
        }
    )


def _rows_hash(rows: list[list[tuple[list[int], list[int]]]]) -> str:
    """Hash of encoded examples, streamed (a benign set holds millions of token ids)."""
    from array import array

    h = hashlib.sha256()
    for part in rows:
        h.update(b"part")
        for ids, labels in part:
            h.update(array("q", ids).tobytes() + b"|" + array("q", labels).tobytes() + b";")
    return h.hexdigest()


def checkpoint_root(out_dir: Path, key: str) -> Path:
    return out_dir.parent / CKPT_DIR / f"{out_dir.name}-{key[:16]}"


def save_checkpoint(root: Path, epoch: int, state: dict[str, Any], best_dir: Path) -> Path:
    """Write epoch `epoch`'s state and kept adapter atomically, then drop older epochs.

    Written into a temporary folder renamed into place: a kill at any moment leaves the
    previous complete checkpoint or this one, never a partial one.
    """
    import torch

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".epoch-{epoch}.", dir=root))
    try:
        torch.save(state, tmp / "state.pt")
        if (best_dir / "adapter_config.json").exists():
            shutil.copytree(best_dir, tmp / "best")
        final = root / f"epoch-{epoch}"
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in root.iterdir():
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(root: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest complete epoch checkpoint under `root` and its state, if any."""
    import torch

    done = [p for p in root.glob("epoch-*") if (p / "state.pt").exists()] if root.exists() else []
    if not done:
        return None
    last = max(done, key=lambda p: int(p.name.split("-")[1]))
    return last, torch.load(last / "state.pt", weights_only=True)


def drop_checkpoints(out_dir: Path) -> None:
    """Remove every checkpoint of this output (this run's and stale ones of other configs)."""
    parent = out_dir.parent / CKPT_DIR
    for old in parent.glob(f"{out_dir.name}-*"):
        shutil.rmtree(old, ignore_errors=True)
    if parent.exists() and not any(parent.iterdir()):
        parent.rmdir()


def save_adapter(model: Any, out: Path) -> None:
    """peft's save_pretrained, with target_modules sorted: peft keeps them in a set, whose
    order changes with each process's string hash seed, and the adapter's revision hashes
    its config."""
    model.save_pretrained(out)
    path = out / "adapter_config.json"
    conf = read_json(path)
    if isinstance(conf.get("target_modules"), list):
        conf["target_modules"] = sorted(conf["target_modules"])
        write_json(path, conf)


def _micro(batch: list[int], size: int | None) -> list[list[int]]:
    size = size or len(batch)
    return [batch[i : i + size] for i in range(0, len(batch), size)]


def _n_target(rows: list[tuple[list[int], list[int]]], batch: list[int]) -> int:
    return sum(sum(x != IGNORE for x in rows[i][1][1:]) for i in batch)


@dataclass
class _Encoded:
    """A run's examples as (token ids, labels) rows, and what encoding dropped or cut."""

    train: list[tuple[list[int], list[int]]]
    valid: list[tuple[list[int], list[int]]]
    n_truncated: int
    n_no_target: int


def _encode_examples(
    tok: Any, train: pd.DataFrame, valid: pd.DataFrame, cfg: SFTConfig, chat: bool
) -> _Encoded:
    """Encode both splits; an example truncated before its completion is dropped."""
    prefix = special_prefix(tok) if cfg.add_special_tokens else []
    enc_train = [
        encode(tok, p, c, cfg.max_length, chat, prefix)
        for p, c in zip(train.prompt, train.completion, strict=True)
    ]
    enc_valid = [
        encode(tok, p, c, cfg.max_length, chat, prefix)
        for p, c in zip(valid.prompt, valid.completion, strict=True)
    ]
    n_trunc = sum(t for *_, t in enc_train) + sum(t for *_, t in enc_valid)
    if n_trunc:
        log.warning(
            "%d of %d examples (%d train, %d valid) are longer than max_length=%d: truncated",
            n_trunc,
            len(enc_train) + len(enc_valid),
            sum(t for *_, t in enc_train),
            sum(t for *_, t in enc_valid),
            cfg.max_length,
        )
    # An example truncated before its completion has nothing to learn or score: drop it.
    rows_train = [(i, lab) for i, lab, _ in enc_train if any(x != IGNORE for x in lab[1:])]
    rows_valid = [(i, lab) for i, lab, _ in enc_valid if any(x != IGNORE for x in lab[1:])]
    n_no_target = len(enc_train) + len(enc_valid) - len(rows_train) - len(rows_valid)
    if n_no_target:
        log.warning("%d examples lost their whole completion to truncation: dropped", n_no_target)
    if not rows_train:
        raise ValueError(
            f"no training examples left: {len(enc_train)} given, {n_no_target} lost their "
            f"completion to truncation at max_length={cfg.max_length} (raise max_length)"
        )
    return _Encoded(rows_train, rows_valid, n_trunc, n_no_target)


def _load_base(base_dir: str | Path, cfg: SFTConfig, bf16: bool) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        base_dir,
        dtype=torch.bfloat16 if bf16 else torch.float32,
        attn_implementation=cfg.attn_implementation,
    )


def _with_adapter(model: Any, cfg: SFTConfig, init_adapter: str | Path | None) -> Any:
    """`model` with a new LoRA adapter (or `init_adapter`, trainable)."""
    from peft import PeftModel, get_peft_model

    if init_adapter:
        return PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    return get_peft_model(model, lora_config(cfg))


def _load_model(
    base_dir: str | Path, cfg: SFTConfig, init_adapter: str | Path | None, bf16: bool
) -> Any:
    """The base model with a new LoRA adapter (or `init_adapter`, trainable)."""
    return _with_adapter(_load_base(base_dir, cfg, bf16), cfg, init_adapter)


@dataclass
class LoadedBase:
    """A base model loaded once for several runs (train.groups: a grouped job's
    distributions): its tokenizer and weights on the device, and the torch RNG state
    right after loading, which is what a run that loads its own base starts from."""

    path: str
    tokenizer: Any
    model: Any
    device: str
    bf16: bool
    attn_implementation: str
    seed: int
    rng: Any

    def fits(self, cfg: SFTConfig) -> bool:
        """Whether a run of `cfg` can use these weights (same dtype, attention, seed)."""
        bf16 = self.device.startswith("cuda") and cfg.bf16_autocast
        return (bf16, cfg.attn_implementation, cfg.seed) == (
            self.bf16,
            self.attn_implementation,
            self.seed,
        )


# The base train_lora reuses inside `shared_base` (a context variable, not a parameter:
# the steps between the group job and train_lora pass it through untouched).
_SHARED_BASE: ContextVar[LoadedBase | None] = ContextVar("shared_base", default=None)


@contextlib.contextmanager
def shared_base(base: LoadedBase) -> Iterator[LoadedBase]:
    """Within this block, train_lora runs on `base.path` reuse `base`'s loaded weights."""
    token = _SHARED_BASE.set(base)
    try:
        yield base
    finally:
        _SHARED_BASE.reset(token)


def load_base(base_dir: str | Path, cfg: SFTConfig, threads: int | None = None) -> LoadedBase:
    """Load the base as train_lora does (same seed first), for runs that share it."""
    import torch
    from transformers import AutoTokenizer

    from valueharms.llm.hf import pick_device

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    device, _ = pick_device()
    bf16 = device.startswith("cuda") and cfg.bf16_autocast
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = _load_base(base_dir, cfg, bf16)
    rng = torch.get_rng_state()
    model.to(device)
    return LoadedBase(
        str(base_dir), tok, model, device, bf16, cfg.attn_implementation, cfg.seed, rng
    )


@dataclass
class _Progress:
    """Where a run stands: the epoch it resumed after, optimizer steps taken, the best
    validation loss, the per-epoch history and the token and time counts."""

    start: int = 0
    step: int = 0
    best: float = math.inf
    history: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=lambda: {"target": 0, "real": 0, "seconds": 0.0})


class _LoraRun:
    """One training run's model, optimizer, schedule and batches: train_lora's steps."""

    def __init__(
        self, model: Any, rows: _Encoded, cfg: SFTConfig, device: str, bf16: bool, pad_id: int
    ) -> None:
        import torch
        from transformers import get_linear_schedule_with_warmup

        self.model, self.rows, self.cfg = model, rows, cfg
        self.device, self.bf16, self.pad_id = device, bf16, pad_id
        self.cuda = device.startswith("cuda")
        steps_per_epoch = math.ceil(len(rows.train) / cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        self.total = min(total, cfg.max_steps) if cfg.max_steps is not None else total
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(
            self.trainable, lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        self.sched = get_linear_schedule_with_warmup(
            self.opt, num_warmup_steps=0, num_training_steps=self.total
        )
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.lengths = [len(ids) for ids, _ in rows.train]
        self.target_only = cfg.target_only_logits and supports_target_only(model)
        if cfg.target_only_logits and not self.target_only:
            log.warning("this model post-processes its logits: computing them at every position")
        if cfg.compile:
            _causal_lm(model).get_decoder().compile(dynamic=True)
        self.width = cfg.max_length if cfg.pad_to_max_length else None
        self.micro = cfg.micro_batch_size if (cfg.micro_batch_size or 0) < cfg.batch_size else None
        # The validation loss is token-weighted over all batches, so their order and makeup
        # do not change it: sorted by length, they pad little.
        v_order = list(range(len(rows.valid)))
        if cfg.group_by_length:
            v_order.sort(key=lambda i: -len(rows.valid[i][0]))
        v_size = self.micro or cfg.batch_size
        self.valid_batches = [v_order[i : i + v_size] for i in range(0, len(v_order), v_size)]

    def autocast(self) -> Any:
        import torch

        if self.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _on_device(self, ids: Any, labels: Any, mask: Any) -> tuple[Any, Any, Any]:
        return ids.to(self.device), labels.to(self.device), mask.to(self.device)

    def valid_loss(self) -> float:
        """The validation loss, token-weighted over all batches (NaN: nothing to score)."""
        import torch

        self.model.eval()
        losses, weights = [], []
        with torch.inference_mode(), self.autocast():
            for ids, labels, mask in _batches(
                self.rows.valid, self.valid_batches, self.pad_id, self.width
            ):
                n = int((labels[:, 1:] != IGNORE).sum())
                if n == 0:  # every completion token truncated away: nothing to score
                    continue
                loss = batch_loss(self.model, *self._on_device(ids, labels, mask), self.target_only)
                losses.append(float(loss) * n)
                weights.append(n)
        self.model.train()
        return sum(losses) / max(sum(weights), 1) if weights else float("nan")

    def train_step(self, batch: list[int]) -> tuple[float, int, int]:
        """One optimizer update on `batch`: its loss, target and real token counts.

        The loss is the mean over the batch's target tokens, with or without micro-batches:
        what transformers' Trainer (since 4.46, as Study A's benign fine-tunes ran it)
        computes over its gradient accumulation steps for a model taking loss kwargs.
        """
        import torch

        rows = self.rows.train
        if self.micro is None:
            ids, labels, mask = next(_batches(rows, [batch], self.pad_id, self.width))
            with self.autocast():
                loss = batch_loss(self.model, *self._on_device(ids, labels, mask), self.target_only)
            loss.backward()
            value = float(loss.detach())
            n_real = int(mask.sum())
        else:
            # Each micro-batch's summed token losses over the whole batch's target count:
            # the gradients add up to the full batch's mean-loss gradient.
            n_all, value, n_real = _n_target(rows, batch), 0.0, 0
            micro = _micro(batch, self.micro)
            for ids, labels, mask in _batches(rows, micro, self.pad_id, self.width):
                with self.autocast():
                    tl, _ = token_losses(
                        self.model, *self._on_device(ids, labels, mask), self.target_only
                    )
                    loss = tl.sum() / n_all
                loss.backward()
                value += float(loss.detach())
                n_real += int(mask.sum())
        if self.cfg.max_grad_norm is not None:
            # After the whole batch's gradients, as transformers' Trainer clips.
            torch.nn.utils.clip_grad_norm_(self.trainable, self.cfg.max_grad_norm)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad()
        return value, _n_target(rows, batch), n_real

    def checkpoint(self, epoch: int, progress: _Progress) -> dict[str, Any]:
        """The state an epoch checkpoint keeps: enough to continue bit for bit."""
        import torch

        return {
            "epoch": epoch,
            "step": progress.step,
            "best": progress.best,
            "history": progress.history,
            "counts": progress.counts,
            "adapter": {
                n: p.detach().cpu().clone()
                for n, p in self.model.named_parameters()
                if p.requires_grad
            },
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.cuda else None,
            "gen": self.gen.get_state(),
        }

    def resume(self, ckpt: Path, work: Path) -> _Progress:
        """Continue from the newest checkpoint under `ckpt`, if any (its kept adapter goes
        to `work`); else a fresh start."""
        import torch

        found = load_checkpoint(ckpt)
        if not found:
            return _Progress()
        path, state = found
        progress = _Progress(
            state["epoch"], state["step"], state["best"], state["history"], state["counts"]
        )
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state["adapter"].items():
                params[name].copy_(value)
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_cpu"])
        if self.cuda and state["rng_cuda"] is not None:
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        self.gen.set_state(state["gen"])
        if (path / "best").exists():
            shutil.rmtree(work)
            shutil.copytree(path / "best", work)
        log.warning(
            "resuming from epoch %d checkpoint (%s), step %d", progress.start, path, progress.step
        )
        return progress

    def train_epoch(self, progress: _Progress, bar: Any) -> list[float]:
        """One epoch's optimizer steps (up to the run's total): their losses."""
        import torch

        cfg, counts = self.cfg, progress.counts
        batches = epoch_batches(self.lengths, cfg.batch_size, self.gen, cfg.group_by_length)
        train_losses = []
        for batch in batches:
            if progress.step >= self.total:
                break
            if self.cuda:
                torch.cuda.synchronize()
            t_step = time.perf_counter()
            value, n_target, n_real = self.train_step(batch)
            counts["seconds"] += time.perf_counter() - t_step
            counts["target"] += n_target
            counts["real"] += n_real
            progress.step += 1
            train_losses.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}")
        return train_losses

    def train(self, progress: _Progress, ckpt: Path, work: Path) -> None:
        """The epochs after `progress.start`: the best one's adapter is kept in `work`,
        each finished epoch but the last is checkpointed under `ckpt` (cfg.resume)."""
        cfg = self.cfg
        bar = tqdm(total=self.total, initial=progress.step, desc="train", unit="step")
        for epoch in range(progress.start + 1, cfg.epochs + 1):
            if progress.step >= self.total:
                break
            train_losses = self.train_epoch(progress, bar)
            vloss = self.valid_loss()
            progress.history.append(
                {
                    "epoch": epoch,
                    "steps": progress.step,
                    "train_loss": _mean(train_losses),
                    "valid_loss": vloss,
                }
            )
            log.info("epoch %d: train %.4f valid %.4f", epoch, _mean(train_losses), vloss)
            if not vloss >= progress.best:  # also keeps the first epoch when valid is empty
                progress.best = vloss if not math.isnan(vloss) else progress.best
                shutil.rmtree(work, ignore_errors=True)
                save_adapter(self.model, work)
                progress.history[-1]["kept"] = True
            if cfg.resume and epoch < cfg.epochs and progress.step < self.total:
                save_checkpoint(ckpt, epoch, self.checkpoint(epoch, progress), work)
        bar.close()

    def summary(self, progress: _Progress, seconds: float) -> dict[str, Any]:
        """The run's train_log.json."""
        kept = [h["epoch"] for h in progress.history if h.get("kept")]
        secs = progress.counts["seconds"]
        return {
            "history": progress.history,
            "best_epoch": kept[-1] if kept else None,
            "best_valid_loss": None if math.isinf(progress.best) else progress.best,
            "steps": progress.step,
            "n_train": len(self.rows.train),
            "n_valid": len(self.rows.valid),
            "n_truncated": self.rows.n_truncated,
            "n_dropped_no_target": self.rows.n_no_target,
            "target_tokens_per_s": round(progress.counts["target"] / secs, 2) if secs else None,
            "real_tokens_per_s": round(progress.counts["real"] / secs, 2) if secs else None,
            "resumed_from_epoch": progress.start or None,
            "seconds": round(seconds, 2),
            "device": self.device,
            "dtype": "bf16 autocast" if self.bf16 else "fp32",
        }


def train_lora(
    base_dir: str | Path,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    out_dir: str | Path,
    cfg: SFTConfig,
    init_adapter: str | Path | None = None,
    chat: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter on `train` (prompt, completion) and save the best epoch.

    With `cfg.resume`, each finished epoch is checkpointed beside `out_dir`; a rerun after
    a kill continues from the last one and ends with the same adapter files. Inside
    `shared_base(base)` for this base_dir and a fitting cfg, the loaded base is used (and
    left without the adapter afterwards); the run starts from the RNG state a run loading
    its own base has, so its adapter is the same.
    """
    import torch
    from transformers import AutoTokenizer

    from valueharms.llm.hf import pick_device

    base = _SHARED_BASE.get()
    if base is not None and (base.path != str(base_dir) or not base.fits(cfg)):
        base = None
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    out_dir = Path(out_dir)
    if base is None:
        device, _ = pick_device()
        bf16 = device.startswith("cuda") and cfg.bf16_autocast
        tok = AutoTokenizer.from_pretrained(base_dir)
        model = _load_model(base_dir, cfg, init_adapter, bf16)
        model.to(device)
    else:
        device, bf16, tok = base.device, base.bf16, base.tokenizer
        torch.set_rng_state(base.rng)
        model = _with_adapter(base.model, cfg, init_adapter)
        model.to(device)  # the new LoRA weights; the base is there already
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if cfg.max_valid_examples is not None:
        valid = valid.head(cfg.max_valid_examples)
    rows = _encode_examples(tok, train, valid, cfg, chat)
    run = _LoraRun(model, rows, cfg, device, bf16, pad_id)
    ckpt = checkpoint_root(out_dir, run_key(base_dir, init_adapter, [rows.train, rows.valid], cfg))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Named after the output, so a killed run's leftover is found and cleared.
    work = out_dir.parent / f".{out_dir.name}.best"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o755)
    progress = run.resume(ckpt, work) if cfg.resume else _Progress()
    t0 = time.time()
    model.train()
    try:
        run.train(progress, ckpt, work)
        summary = run.summary(progress, time.time() - t0)
        write_json(work / "train_log.json", summary)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        work.rename(out_dir)
        drop_checkpoints(out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if base is not None:
            # Take the LoRA layers out again (unmerged): the base is as loaded for the next run.
            base.model = model.unload()
            base.model.eval()
    return summary


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")
