"""Where every dataset comes from: declared upstream source, checksum, local override.

Resolution order for a dataset: `datasets.<name>.path` in the config (must exist), then
its file name in each of `data_search_paths`, then a download job from its URL (checked
against its sha256). A dataset with no URL (ESS needs registration) and no local file is
an error that says where to get it and which key to set.
"""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from valueharms.hashing import sha256_file
from valueharms.io import atomic_path

# Study A's public repository, pinned: its data/ folder is the reference copy of most files.
STUDY_A_REPO = "https://raw.githubusercontent.com/JaehyeokLee-119/Unintended-Harms-LLM"
STUDY_A_REV = "4a20909328a10dea73761b0a96afc2d10a2cb60a"


def _study_a(path: str) -> str:
    return f"{STUDY_A_REPO}/{STUDY_A_REV}/data/{path}"


@dataclass(frozen=True)
class Source:
    name: str
    filename: str
    url: str | None
    sha256: str | None
    description: str
    how_to_get: str
    revision: str | None = STUDY_A_REV


CATALOGUE: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            "ess",
            "ess.csv",
            None,
            "0272824f2d562fc03fb926bc27d4b9ac999cc80c2a3d0818e84e25ca86b09e41",
            "European Social Survey PVQ-21 items per respondent",
            "register at the ESS ERIC data portal (europeansocialsurvey.org) and export idno + "
            "the 21 human-values items, or use Study A's data/ess.csv",
            None,
        ),
        Source(
            "touche",
            "valueEval_10.csv",
            _study_a("valueEval_10.csv"),
            "6f843d64b1874267c8fb42d67cf85533cd5847d935533ff993b5ab1345fe5385",
            "Touché23-ValueEval arguments with 10 value labels (CC-BY 4.0)",
            "download",
        ),
        Source(
            "touche_stage2_train",
            "argument_generation/value_split/train.csv",
            _study_a("argument_generation/value_split/train.csv"),
            "cd675fe589b6458a4c8d58897d963e4cd6c39327f0c49ae2cb4e949b2c1b9b70",
            "fixed VIM stage-2 training split",
            "download",
        ),
        Source(
            "touche_stage2_valid",
            "argument_generation/value_split/valid.csv",
            _study_a("argument_generation/value_split/valid.csv"),
            "1bcb924585c0932c6ee39e1a0f81d65a6e0edb944c062d85bf981255baf70609",
            "fixed VIM stage-2 validation split",
            "download",
        ),
        Source(
            "rtp",
            "real_toxic_prompts.csv",
            _study_a("real_toxic_prompts.csv"),
            "8c5116e61b916b22557f47e5d05cedea02b9b0fa4791e15241d4eef5bd5af7fd",
            "RealToxicityPrompts prompt texts (Apache-2.0)",
            "download",
        ),
        Source(
            "holisticbiasr",
            "HolisticBiasR.jsonl",
            _study_a("HolisticBiasR.jsonl"),
            None,
            "HolisticBiasR prompts (ROBBIE, Esiobu et al. 2023)",
            "download; no checksum is pinned yet, the fetch job records the one it saw",
        ),
        Source(
            "hexphi",
            "hex-phi.csv",
            _study_a("hex-phi.csv"),
            "50908beeb410d5bc90620af1cd56e57311dc8b0bb22412a6bb8a19b106473330",
            "HEx-PHI harmful instructions (gated: accept LLM-Tuning-Safety/HEx-PHI terms)",
            "download",
        ),
        Source(
            "beavertails",
            "BeaverTails-Evaluation.csv",
            _study_a("BeaverTails-Evaluation.csv"),
            "7d88f60b9cd104ca2df28613685d7dbbc0c7b372acf0c936e00666a23b8977bb",
            "BeaverTails evaluation prompts",
            "download",
        ),
        Source(
            "alpaca",
            "alpaca_data.json",
            _study_a("alpaca_data.json"),
            None,
            "Stanford Alpaca 52K instructions",
            "download; no checksum pinned yet",
        ),
        Source(
            "dolly",
            "databricks-dolly-15k-no-safety.jsonl",
            _study_a("databricks-dolly-15k-no-safety.jsonl"),
            None,
            "Dolly 15K without safety-related rows",
            "download; no checksum pinned yet",
        ),
        Source(
            "grammar",
            "gtrain_10k.csv",
            _study_a("gtrain_10k.csv"),
            "db8c78516b73f90e096c6f5822f2e2a17d4832b217031605dd844bb17fc0db13",
            "grammar correction pairs (JFLEG + C4_200M)",
            "download",
        ),
        Source(
            "grammar_valid",
            "grammar_validation.csv",
            _study_a("grammar_validation.csv"),
            "54c81412aa32971b9505d309b0fd4e44f9a6e25eb68e1d7d81b259ff44c58411",
            "grammar correction validation pairs",
            "download",
        ),
        Source(
            "samsum",
            "samsum/train.csv",
            "https://huggingface.co/datasets/knkarthick/samsum/resolve/main/train.csv",
            None,
            "SAMSum dialogue summaries (CC BY-NC-ND 4.0; the original corpus.7z of arXiv "
            "1911.12237 holds a train.json that loads too)",
            "download; no checksum pinned yet",
            None,
        ),
    ]
}


class DataError(RuntimeError):
    """A dataset is missing or corrupt; the message says how to fix it."""


def source(name: str, overrides: dict[str, Any] | None = None) -> Source:
    src = CATALOGUE[name]
    over = (overrides or {}).get(name, {})
    return replace(src, **{k: over[k] for k in ("url", "sha256") if k in over})


def resolve(name: str, config: dict[str, Any], download_dir: str) -> tuple[str, bool]:
    """Return (path, needs_download) for dataset `name`; raise DataError if unobtainable."""
    over = config.get("datasets", {}).get(name, {})
    if over.get("path"):
        if not Path(over["path"]).is_file():
            raise DataError(
                f"datasets.{name}.path: file not found: {over['path']} "
                f"({CATALOGUE[name].description}; {CATALOGUE[name].how_to_get})"
            )
        return over["path"], False
    src = source(name, config.get("datasets"))
    for folder in config.get("data_search_paths", []):
        candidate = Path(folder) / src.filename
        if candidate.is_file():
            return str(candidate), False
    if not src.url:
        raise DataError(
            f"dataset '{name}' ({src.description}) has no download address: "
            f"{src.how_to_get}; then set datasets.{name}.path to the file"
        )
    return os.path.join(download_dir, name, src.filename), True


def download(src: Source, out: str | Path, timeout: float = 60.0) -> str:
    """Fetch `src.url` to `out`, atomically, checking the declared sha256."""
    assert src.url
    with atomic_path(out) as tmp:
        try:
            with urllib.request.urlopen(src.url, timeout=timeout) as resp, open(tmp, "wb") as fh:
                while chunk := resp.read(1 << 20):
                    fh.write(chunk)
        except OSError as err:
            raise DataError(
                f"could not download dataset '{src.name}' from {src.url}: {err}. Offline, get "
                f"{src.filename} elsewhere and set datasets.{src.name}.path"
            ) from err
        digest = sha256_file(tmp)
        if src.sha256 and digest != src.sha256:
            raise DataError(
                f"dataset '{src.name}': sha256 {digest} != declared {src.sha256} ({src.url})"
            )
    return digest


def verify(name: str, path: str | Path, config: dict[str, Any]) -> str:
    """Checksum a local file; a mismatch with the declared sha256 is only reported."""
    return sha256_file(path)
