"""Grouped VIM training (training.subjects_per_job > 1): one job, one base load, N adapters.

A group job trains stage 1 then stage 2 of each of its distributions on one loaded base.
Each distribution's pair of adapters goes to a content-addressed store,
results/models/<base>/.store/vim/<key>/{stage1,adapter}, `key` a hash of everything the
pair depends on: the distribution's examples file, the base weights, both stages'
settings, the chat flag, tokenization and the training code. A distribution whose key is
in the store is not trained again, so a group job rerun because one member changed trains
that member only.

Three rules (rules/train.smk), so that Snakemake reruns one changed distribution's
adapters and downstream and not its siblings':
- vim_key (local, per distribution): writes the key. It reruns when that distribution's
  inputs or settings change, and only then.
- train_vim_group: trains the group's members missing from the store; writes a manifest.
- vim_adapters (local, per distribution): hard-links its entry to the usual
  results/models/<base>/vim/<dist>/{stage1,adapter}. It takes its key file, and the
  manifest as `ancient`: the group job's rerun for a sibling does not rerun it.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from valueharms.hashing import sha256_file, sha256_json
from valueharms.io import read_json, write_json
from valueharms.job import Job
from valueharms.models import REVISION_FILE, adapter_hash

log = logging.getLogger(__name__)

STORE = ".store/vim"
STAGES = ("stage1", "adapter")  # stage 2's adapter is the model's `adapter`


def store_root(base: str) -> str:
    return f"results/models/{base}/{STORE}"


def manifest_path(base: str, group: str) -> str:
    """The one output of a group job: member -> store key (beside the store)."""
    return f"results/models/{base}/.store/groups/{group}.json"


def entry_key(examples: str | Path, base_dir: str | Path, settings: dict[str, Any]) -> str:
    """The store key of one distribution's adapters: its examples file's bytes, the base
    weights' hash, and `settings` (both stages' sft settings, chat, tokenization, code)."""
    rev = Path(base_dir) / REVISION_FILE
    return sha256_json(
        {
            "examples": sha256_file(examples),
            "base": read_json(rev)["weights_sha256"] if rev.exists() else str(base_dir),
            "settings": settings,
        }
    )[:32]


def key_settings(params: dict[str, Any]) -> dict[str, Any]:
    """What of a group or materialise job's params goes into the key (they share these)."""
    return {k: params[k] for k in ("stage1", "stage2", "chat", "tokenization", "code")}


def _done(entry: Path) -> bool:
    # Each stage's directory appears by rename once complete (train_lora): present = done.
    return all((entry / s / "adapter_config.json").exists() for s in STAGES)


def keys_path(base: str, dist: str) -> str:
    """A distribution's key file (vim_key's output)."""
    return f"results/models/{base}/.store/keys/{dist}.json"


def write_key(
    examples: str | Path, base_dir: str | Path, settings: dict[str, Any], out: str | Path
) -> str:
    key = entry_key(examples, base_dir, settings)
    write_json(out, {"key": key})
    return key


def read_key(path: str | Path) -> str:
    return str(read_json(path)["key"])


def train_group(
    base_dir: str,
    members: dict[str, tuple[str, str]],
    settings: dict[str, Any],
    store: str | Path,
    threads: int = 1,
) -> dict[str, Any]:
    """Train every member (distribution -> (examples file, key)) whose key is not in
    `store`.

    The base is loaded once, on the first member that needs training (none: no load).
    Returns the manifest: per member its key and whether this job trained it.
    """
    from valueharms.train import steps
    from valueharms.train.sft import load_base, shared_base

    store = Path(store)
    loaded = None
    manifest: dict[str, Any] = {}
    for dist, (examples, key) in members.items():
        entry = store / key
        trained = not _done(entry)
        if trained:
            for stage, cfg in ((1, settings["stage1"]), (2, settings["stage2"])):
                out = entry / STAGES[stage - 1]
                if (out / "adapter_config.json").exists():
                    continue  # stage 1 of a killed job: stage 2 continues it
                sft = steps.sft_config(cfg)
                if loaded is None or not loaded.fits(sft):
                    loaded = None  # free the old weights before loading others
                    loaded = load_base(base_dir, sft, threads)
                log.info("%s: training stage %d (%s)", dist, stage, key)
                with shared_base(loaded):
                    steps.vim_stage(
                        base_dir,
                        examples,
                        stage,
                        cfg,
                        str(out),
                        init_adapter=str(entry / "stage1") if stage == 2 else None,
                        chat=settings["chat"],
                        threads=threads,
                    )
        else:
            log.info("%s: in the store (%s), not retrained", dist, key)
        manifest[dist] = {"key": key, "trained": trained}
    return manifest


def materialise(entry: Path, out_dir: Path) -> None:
    """`out_dir` as a copy of a store entry's directory: hard links where the filesystem
    allows (adapters are written once, never edited in place), else copies."""
    if out_dir.exists():
        shutil.rmtree(out_dir)

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(entry, out_dir, copy_function=link)


def place_adapters(
    dist: str, key: str, store: str | Path, manifest: str | Path, outputs: dict[str, str]
) -> None:
    """Put one distribution's stored adapters at its outputs (stage -> directory).

    A missing entry (the store was cleared) removes the group's manifest before failing,
    so the next run reruns the group job, which trains it again.
    """
    entry = Path(store) / key
    if not _done(entry):
        Path(manifest).unlink(missing_ok=True)
        raise FileNotFoundError(
            f"{dist}: no trained adapters in the store for key {key} ({entry}); removed "
            f"{manifest}, so the next run reruns the group job, which trains them"
        )
    for stage in STAGES:
        materialise(entry / stage, Path(outputs[stage]))
    log.info("%s: adapters %s from %s", dist, adapter_hash(outputs["adapter"])[:16], entry)


# --- the scripts' entry points: a rule's job record -> its step ------------------------


def _settings(job: Job) -> dict[str, Any]:
    """The key settings, each stage's with tokenization's special-token switch (as the
    one-stage rules give it)."""
    from valueharms.train.steps import with_special_tokens

    settings = key_settings(job.params)
    for stage in ("stage1", "stage2"):
        settings[stage] = with_special_tokens(settings[stage], job.params["tokenization"])
    return settings


def key_job(job: Job) -> None:
    write_key(job.input["examples"], job.input["base"], _settings(job), job.output[0])


def train_group_job(job: Job) -> None:
    keys = [read_key(k) for k in job.input.list("key_files")]
    members = dict(
        zip(job.params["dists"], zip(job.input.list("examples"), keys, strict=True), strict=True)
    )
    manifest = train_group(
        job.input["base"], members, _settings(job), job.params["store"], job.threads
    )
    write_json(job.output[0], manifest)


def place_adapters_job(job: Job) -> None:
    place_adapters(
        job.params["dist"],
        read_key(job.input["key"]),
        job.params["store"],
        job.input["manifest"],
        {"stage1": job.output["stage1"], "adapter": job.output["adapter"]},
    )
