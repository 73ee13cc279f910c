"""Where every dataset comes from: declared upstream source, checksum, local override.

Resolution order for a dataset: `datasets.<name>.path` in the config (must exist), then
its file name in each of `data_search_paths`, then a download job from its URL (checked
against its sha256). A dataset with no URL (ESS needs registration) and no local file is
an error that says where to get it and which key to set.
"""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from valueharms.hashing import sha256_file
from valueharms.io import atomic_path

log = logging.getLogger(__name__)

# Study A's public repository, pinned: its data/ folder is the reference copy of most files.
STUDY_A_REPO = "https://raw.githubusercontent.com/JaehyeokLee-119/Unintended-Harms-LLM"
STUDY_A_REV = "4a20909328a10dea73761b0a96afc2d10a2cb60a"


def study_a_file(path: str) -> str:
    """The pinned address of a file of Study A's data/ folder."""
    return f"{STUDY_A_REPO}/{STUDY_A_REV}/data/{path}"


@dataclass(frozen=True)
class Source:
    """One dataset: where it comes from upstream, its licence, and the file we expect."""

    name: str
    filename: str
    url: str | None
    sha256: str | None
    description: str
    how_to_get: str
    revision: str | None = STUDY_A_REV
    # Where the data originally come from (dataset id, revision, paper); licence as stated.
    upstream: str = ""
    licence: str = "unknown"
    # Data rows of the declared file (checked by the loaders when the file is the declared one).
    rows: int | None = None


STUDY_A_FOLDER = "Study A data/ folder (github.com/JaehyeokLee-119/Unintended-Harms-LLM)"

# Study B's preference datasets on the Hugging Face hub, pinned to a commit.
_HF = "https://huggingface.co/datasets"
_PKU_REV = "c04a25eb44ac0be2a714c16e072122466bc6d416"
_UF_REV = "3949bf5f8c17c394422ccfab0c31ea9c20bdeb85"
_HS2_REV = "990b2711a36180dd19d9c94b8627844866f8982a"
_HH_REV = "09be8c5bbc57cb3887f3a9732ad6aa7ec602a1fa"
# The paper's releases (RLHFlow's "-standard" sets, docs/study_b.md "Sources"). Only
# UltraFeedback's data commit is known in full; PKU-SafeRLHF's is the commit of the hub's
# parquet-converter branch; HH-RLHF's and Helpsteer2's files are addressed by branch until
# someone online pins the commit (the fetch job records the sha256 it saw).
_RLHFLOW = f"{_HF}/RLHFlow"
_PKU_STD_REV = "19e92c78a76311ff3ba63e2241ad9313ebe6a81e"  # refs/convert/parquet
_UF_STD_REV = "03bae668c67d5f0d127ca8298f62a6cdbdcd23d3"
_HS2_STD_REV = "refs/convert/parquet"  # a branch: its converter commit 4248bce, Jul 2024
_HH_STD_REV = "main"  # a branch: its data commit d28a641, May 2024
# Shard -> (file, sha256): shard 1's checksum is the hub's LFS record; 2 and 3 are unknown.
_UF_STD_SHARDS: dict[str, tuple[str, str | None]] = {
    "1of3": (
        "train-00000-of-00003-e82ff6ed69653c1c.parquet",
        "dada3eb5edfb07dd3c68be94031757f772daea05aa9005e45b4354f7bcdad76f",
    ),
    "2of3": ("train-00001-of-00003-0196dad938ced3c9.parquet", None),
    "3of3": ("train-00002-of-00003-33462d35a35bd46b.parquet", None),
}


_NO_SHA = "download; no checksum pinned yet, the fetch job records the one it saw"


def _hub_url(repo: str, revision: str, path: str) -> str:
    """A hub `resolve/<revision>/<file>` address; a branch's slashes are escaped."""
    return f"{_RLHFLOW}/{repo}/resolve/{revision.replace('/', '%2F')}/{path}"


def _uf_standard_shard(tag: str, file: str, sha256: str | None) -> Source:
    """One of the three parquet shards of RLHFlow/UltraFeedback-preference-standard."""
    repo = "UltraFeedback-preference-standard"
    return Source(
        f"ultrafeedback_standard_{tag}",
        f"{repo}/data/{file}",
        _hub_url(repo, _UF_STD_REV, f"data/{file}"),
        sha256,
        f"UltraFeedback as RLHFlow's standard pairs, shard {tag.replace('of', ' of ')}: "
        "chosen/rejected message lists",
        "download" if sha256 else _NO_SHA,
        _UF_STD_REV,
        upstream="RLHFlow/UltraFeedback-preference-standard (HF; from openbmb/UltraFeedback, "
        "Cui et al. 2024; 340k pairs in 3 shards)",
        licence="MIT (openbmb/UltraFeedback)",
    )


_DECLARED: dict[str, Source] = {
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
            upstream="ESS ERIC data portal, human-values module (registration); Study A's "
            "data/ess.csv extract",
            licence="ESS conditions of use (registration, non-commercial)",
            rows=22190,
        ),
        Source(
            "touche",
            "valueEval_10.csv",
            study_a_file("valueEval_10.csv"),
            "6f843d64b1874267c8fb42d67cf85533cd5847d935533ff993b5ab1345fe5385",
            "Touché23-ValueEval arguments with 10 value labels (CC-BY 4.0)",
            "download",
            upstream="Touché23-ValueEval (Zenodo 10.5281/zenodo.6814563), level-2 labels "
            f"collapsed to 10 values by Study A; {STUDY_A_FOLDER}",
            licence="CC-BY-4.0",
            rows=7374,
        ),
        Source(
            "touche_stage2_train",
            "argument_generation/value_split/train.csv",
            study_a_file("argument_generation/value_split/train.csv"),
            "cd675fe589b6458a4c8d58897d963e4cd6c39327f0c49ae2cb4e949b2c1b9b70",
            "fixed VIM stage-2 training split",
            "download",
            upstream=f"Study A's fixed split of Touché23-ValueEval; {STUDY_A_FOLDER}",
            licence="CC-BY-4.0",
            rows=5899,
        ),
        Source(
            "touche_stage2_valid",
            "argument_generation/value_split/valid.csv",
            study_a_file("argument_generation/value_split/valid.csv"),
            "1bcb924585c0932c6ee39e1a0f81d65a6e0edb944c062d85bf981255baf70609",
            "fixed VIM stage-2 validation split",
            "download",
            upstream=f"Study A's fixed split of Touché23-ValueEval; {STUDY_A_FOLDER}",
            licence="CC-BY-4.0",
            rows=738,
        ),
        Source(
            "published_distributions",
            "extreme_distributions.csv",
            study_a_file("extreme_distributions.csv"),
            "7e96fa15a8016866e15d0f96afe691836bd84de0f37f4afd877bc813c32ac7e9",
            "Study A's published target distributions (name + 10 value columns, tab-separated)",
            "download",
            upstream=f"Study A's data/extreme_distributions.csv; {STUDY_A_FOLDER}",
            licence="as Study A's repository (ESS-derived)",
            rows=181,
        ),
        Source(
            "alpaca",
            "alpaca_data.json",
            study_a_file("alpaca_data.json"),
            None,
            "Stanford Alpaca 52K instructions",
            "download; no checksum pinned yet",
            upstream="tatsu-lab/stanford_alpaca alpaca_data.json",
            licence="CC-BY-NC-4.0",
            rows=52002,
        ),
        Source(
            "dolly",
            "databricks-dolly-15k-no-safety.jsonl",
            study_a_file("databricks-dolly-15k-no-safety.jsonl"),
            None,
            "Dolly 15K without safety-related rows",
            "download; no checksum pinned yet",
            upstream="databricks/databricks-dolly-15k (HF), safety rows removed by Study A",
            licence="CC-BY-SA-3.0",
        ),
        Source(
            "grammar",
            "gtrain_10k.csv",
            study_a_file("gtrain_10k.csv"),
            "db8c78516b73f90e096c6f5822f2e2a17d4832b217031605dd844bb17fc0db13",
            "grammar correction pairs (JFLEG + C4_200M)",
            "download",
            upstream="JFLEG (Napoles et al. 2017) + C4_200M (Stahlberg & Kumar 2021); "
            f"{STUDY_A_FOLDER}",
            licence="CC-BY-NC-SA-4.0 (JFLEG), CC-BY-4.0 (C4_200M)",
            rows=13016,
        ),
        Source(
            "grammar_valid",
            "grammar_validation.csv",
            study_a_file("grammar_validation.csv"),
            "54c81412aa32971b9505d309b0fd4e44f9a6e25eb68e1d7d81b259ff44c58411",
            "grammar correction validation pairs",
            "download",
            upstream=f"JFLEG + C4_200M; {STUDY_A_FOLDER}",
            licence="CC-BY-NC-SA-4.0 (JFLEG), CC-BY-4.0 (C4_200M)",
            rows=2988,
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
            upstream="SAMSum (Gliwa et al. 2019, arXiv 1911.12237), train split; HF "
            "knkarthick/samsum mirror",
            licence="CC-BY-NC-ND-4.0",
            rows=14732,
        ),
        # Study B preference sources (METHODS B1). Revisions are pinned; no checksum is
        # pinned yet, so the fetch job records the one it saw; row counts are not checked.
        Source(
            "pku_saferlhf",
            "PKU-SafeRLHF/data/Alpaca-7B/train.jsonl",
            f"{_HF}/PKU-Alignment/PKU-SafeRLHF/resolve/{_PKU_REV}/data/Alpaca-7B/train.jsonl",
            None,
            "PKU-SafeRLHF preference pairs (prompt, response_0/1, better/safer_response_id)",
            "download; no checksum pinned yet, the fetch job records the one it saw",
            _PKU_REV,
            upstream="PKU-Alignment/PKU-SafeRLHF (HF; Ji et al. 2025), data/Alpaca-7B train "
            "split; the Alpaca2-7B/Alpaca3-8B folders and PKU-SafeRLHF-30K share the layout",
            licence="CC-BY-NC-4.0",
        ),
        Source(
            "ultrafeedback",
            "ultrafeedback_binarized/train_prefs-00000-of-00001.parquet",
            f"{_HF}/HuggingFaceH4/ultrafeedback_binarized/resolve/{_UF_REV}"
            "/data/train_prefs-00000-of-00001.parquet",
            None,
            "UltraFeedback, binarized: prompt + chosen/rejected message lists",
            "download; no checksum pinned yet, the fetch job records the one it saw",
            _UF_REV,
            upstream="HuggingFaceH4/ultrafeedback_binarized train_prefs (binarized from "
            "openbmb/UltraFeedback, Cui et al. 2024)",
            licence="MIT",
        ),
        Source(
            "helpsteer2",
            "HelpSteer2/train.jsonl.gz",
            f"{_HF}/nvidia/HelpSteer2/resolve/{_HS2_REV}/train.jsonl.gz",
            None,
            "HelpSteer2 single responses with helpfulness ratings (paired per prompt)",
            "download; no checksum pinned yet, the fetch job records the one it saw",
            _HS2_REV,
            upstream="nvidia/HelpSteer2 (HF; Wang et al. 2024), train.jsonl.gz",
            licence="CC-BY-4.0",
        ),
        Source(
            "hh_rlhf",
            "hh-rlhf/harmless-base/train.jsonl.gz",
            f"{_HF}/Anthropic/hh-rlhf/resolve/{_HH_REV}/harmless-base/train.jsonl.gz",
            None,
            "Anthropic HH-RLHF chosen/rejected transcripts (harmless-base)",
            "download; no checksum pinned yet, the fetch job records the one it saw",
            _HH_REV,
            upstream="Anthropic/hh-rlhf (HF; Bai et al. 2022), harmless-base train; the "
            "helpful-* folders share the layout",
            licence="MIT",
        ),
        # The paper's releases (Fig. 9 of seed 004): RLHFlow's "-standard" sets, chosen and
        # rejected as {role, content} message lists (valueharms.studyb.preferences).
        Source(
            "pku_saferlhf_standard",
            "PKU-SafeRLHF-30K-standard/default/train/0000.parquet",
            _hub_url("PKU-SafeRLHF-30K-standard", _PKU_STD_REV, "default/train/0000.parquet"),
            None,
            "PKU-SafeRLHF-30K as RLHFlow's standard pairs: chosen/rejected message lists",
            _NO_SHA,
            _PKU_STD_REV,
            upstream="RLHFlow/PKU-SafeRLHF-30K-standard (HF; from PKU-Alignment/PKU-SafeRLHF-30K, "
            "Ji et al. 2025), the hub's parquet copy of its train split (26.9k pairs)",
            licence="CC-BY-NC-4.0 (PKU-Alignment/PKU-SafeRLHF-30K)",
        ),
        *(_uf_standard_shard(tag, *shard) for tag, shard in _UF_STD_SHARDS.items()),
        Source(
            "helpsteer2_standard",
            "Helpsteer2-standard/default/train/0000.parquet",
            _hub_url("Helpsteer2-standard", _HS2_STD_REV, "default/train/0000.parquet"),
            None,
            "HelpSteer2 as RLHFlow's standard pairs: chosen/rejected message lists",
            "download; not pinned (a branch) and no checksum yet, the fetch job records the "
            "one it saw",
            _HS2_STD_REV,
            upstream="RLHFlow/Helpsteer2-standard (HF; from nvidia/HelpSteer2, Wang et al. "
            "2024), the hub's parquet copy of its train split",
            licence="CC-BY-4.0 (nvidia/HelpSteer2)",
        ),
        Source(
            "hh_rlhf_standard",
            "HH-RLHF-Harmless-and-RedTeam-standard/data/train-00000-of-00001.parquet",
            _hub_url(
                "HH-RLHF-Harmless-and-RedTeam-standard",
                _HH_STD_REV,
                "data/train-00000-of-00001.parquet",
            ),
            None,
            "HH-RLHF harmless and red-team dialogues as RLHFlow's standard pairs: "
            "chosen/rejected message lists",
            "download; not pinned (a branch) and no checksum yet, the fetch job records the "
            "one it saw",
            _HH_STD_REV,
            upstream="RLHFlow/HH-RLHF-Harmless-and-RedTeam-standard (HF; from Anthropic/hh-rlhf, "
            "Bai et al. 2022; 42.3k pairs)",
            licence="MIT (Anthropic/hh-rlhf)",
        ),
        # Study B's evaluation prompts: user-supplied (no pinned copy to download).
    ]
}


class _Catalogue(Mapping[str, Source]):
    """The declared sources above plus those the registered benchmarks declare
    (valueharms.benchmarks), read when asked: the benchmark modules import this one."""

    def _all(self) -> dict[str, Source]:
        from valueharms import benchmarks

        out = dict(_DECLARED)
        for bench in benchmarks.all_benchmarks():
            if bench.source is not None:
                out.setdefault(bench.name, bench.source)
        return out

    def __getitem__(self, name: str) -> Source:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


CATALOGUE: Mapping[str, Source] = _Catalogue()


class DataError(RuntimeError):
    """A dataset is missing or corrupt; the message says how to fix it."""


def where_to_get(name: str) -> str:
    """One line naming the config key, the upstream source and licence of dataset `name`."""
    src = CATALOGUE.get(name)
    if src is None:
        return f"set datasets.{name}.path"
    where = src.url or src.how_to_get
    return (
        f"set datasets.{name}.path to a copy of {src.filename}; upstream: {src.upstream or where} "
        f"(licence: {src.licence}); get it from {where}"
    )


def require_file(name: str, path: str | os.PathLike[str]) -> Path:
    """`path` as a Path, or a DataError naming the config key and where to get the file."""
    p = Path(path)
    if not p.is_file():
        desc = CATALOGUE[name].description if name in CATALOGUE else name
        raise DataError(
            f"datasets.{name}.path: file not found: {path} ({desc}); {where_to_get(name)}"
        )
    return p


def require_columns(
    name: str, path: str | os.PathLike[str], have: Sequence[str], needed: Sequence[str]
) -> None:
    """Stop with a message naming the absent columns, the file and the config key."""
    absent = [c for c in needed if c not in have]
    if absent:
        raise DataError(
            f"datasets.{name}.path: {path} lacks columns {absent} (has {list(have)}); "
            f"{where_to_get(name)}"
        )


@dataclass
class LoadReport:
    """What a loader read, dropped (by reason) and returned. Drops are never silent.

    `kept` counts rows kept although they look suspect (a repeated prompt a benchmark
    keeps, a prompt spanning lines): kept rows are in rows_out, so they stay visible
    without unbalancing the books.
    """

    dataset: str
    path: str
    rows_in: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    rows_out: int = 0
    notes: list[str] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, n: int) -> None:
        """Record `n` dropped rows for `reason` and log them (n == 0 records nothing)."""
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(n)
            log.warning("%s (%s): dropped %d rows: %s", self.dataset, self.path, n, reason)

    def flag(self, reason: str, n: int) -> None:
        """Record `n` suspect rows that were kept, for `reason` (n == 0 records nothing)."""
        if n:
            self.kept[reason] = self.kept.get(reason, 0) + int(n)
            log.warning("%s (%s): kept %d rows: %s", self.dataset, self.path, n, reason)

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def close(self, rows_out: int) -> LoadReport:
        """Set rows_out and check the books balance: in = dropped + out."""
        self.rows_out = int(rows_out)
        if self.rows_in != self.n_dropped + self.rows_out:
            raise AssertionError(f"{self.dataset}: {self.rows_in} in != dropped + {rows_out} out")
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "path": self.path,
            "rows_in": self.rows_in,
            "dropped": dict(sorted(self.dropped.items())),
            "rows_out": self.rows_out,
            "kept": dict(sorted(self.kept.items())),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LoadReport:
        """The report `as_dict` wrote (a benchmark_prompts job's JSON)."""
        keys = ("dataset", "path", "rows_in", "dropped", "rows_out", "notes", "kept")
        return cls(**{k: d[k] for k in keys if k in d})


def data_error(name: str, path: str | os.PathLike[str], where: str, what: str) -> DataError:
    """A DataError about one place in dataset `name`'s file: config key, file, place, what
    is wrong there, and where a clean copy comes from."""
    at = f", {where}" if where else ""
    return DataError(f"datasets.{name}.path: {path}{at}: {what}; {where_to_get(name)}")


def check_rows(name: str, path: str | os.PathLike[str], n: int, expected: int | None) -> None:
    """Stop when a file has another number of data rows than the declared one."""
    if expected is not None and n != expected:
        raise DataError(
            f"datasets.{name}.path: {path} has {n} data rows, the declared file has {expected} "
            f"(truncated or another version?); {where_to_get(name)}"
        )


def expected_rows(name: str, config: dict[str, Any] | None = None) -> int | None:
    """Declared row count of the declared file, found by search path or download.

    None (no check) when the config names its own file, url or sha256 for the dataset: that
    is a deliberate other file (a fixture, a newer release); the summary notes the count.
    """
    over = ((config or {}).get("datasets") or {}).get(name) or {}
    if over.get("path") or over.get("url") or over.get("sha256"):
        return None
    src = CATALOGUE.get(name)
    return src.rows if src else None


def source(name: str, overrides: dict[str, Any] | None = None) -> Source:
    src = CATALOGUE[name]
    over = (overrides or {}).get(name, {})
    return replace(src, **{k: over[k] for k in ("url", "sha256") if k in over})


def resolve(name: str, config: dict[str, Any], download_dir: str) -> tuple[str, bool]:
    """Return (path, needs_download) for dataset `name`; raise DataError if unobtainable."""
    over = (config.get("datasets") or {}).get(name) or {}
    declared = CATALOGUE.get(name)
    if over.get("path"):
        if not Path(over["path"]).is_file():
            about = (
                f" ({declared.description}; {declared.how_to_get}; "
                f"upstream: {declared.upstream}, licence: {declared.licence})"
                if declared
                else ""
            )
            raise DataError(f"datasets.{name}.path: file not found: {over['path']}{about}")
        return over["path"], False
    if declared is None:
        raise DataError(f"dataset '{name}' has no declared source: set datasets.{name}.path")
    src = source(name, config.get("datasets"))
    for folder in config.get("data_search_paths", []):
        candidate = Path(folder) / src.filename
        if candidate.is_file():
            return str(candidate), False
    # A user-supplied file (no download address) still gets a path: its fetch job fails
    # with `missing_message`, so planning (and a dry run) need no user files.
    return os.path.join(download_dir, name, src.filename), True


def missing_message(name: str, src: Source) -> str:
    """Why a dataset with no download address cannot be fetched, and what to set."""
    return (
        f"dataset '{name}' ({src.description}) has no download address: "
        f"{src.how_to_get}; then set datasets.{name}.path to the file"
    )


def download(src: Source, out: str | Path, timeout: float = 60.0) -> str:
    """Fetch `src.url` to `out`, atomically, checking the declared sha256."""
    if not src.url:
        raise DataError(missing_message(src.name, src))
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


def local_path(name: str, config: dict[str, Any]) -> str | None:
    """The local file of dataset `name` (configured path or search paths), or None."""
    try:
        path, needs_download = resolve(name, config, "")
    except DataError:
        return None
    return None if needs_download else path


def require_local(name: str, config: dict[str, Any]) -> str:
    """The local file of dataset `name`, or a DataError naming its config key."""
    path = local_path(name, config)
    if path is None:
        raise DataError(
            f"dataset '{name}' not found locally: set datasets.{name}.path or add its folder "
            f"to data_search_paths; {where_to_get(name)}"
        )
    return path
