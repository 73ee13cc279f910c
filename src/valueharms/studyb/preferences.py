"""Preference datasets (METHODS B1) as one triplet table: source, row_id, prompt, chosen, rejected.

Each loader reads its dataset's public layout (jsonl, json, parquet or csv, by extension;
.gz/.xz/.bz2 compressed JSON lines too) and drops unusable rows with a counted reason.
PAPER_SOURCES are the releases the paper used (RLHFlow's message-list "-standard" sets);
ALTERNATIVE_SOURCES the upstream releases in their own layouts (docs/study_b.md, "Sources").

Conventions shared by all sources:
- `row_id` is "<source>-<source row number>" (HelpSteer2: both rows, "a+b"), so ids are
  stable under subsampling and across reruns on the pinned file.
- `prompt` is the conversation before the final assistant turn. Multi-turn context keeps
  its earlier turns inline as "\\n\\nAssistant: ..." / "\\n\\nHuman: ..." (the HH-RLHF style);
  the first human turn carries no label. The extractor's transcript
  (`studyb.extract.transcript`) prefixes "Human: " and appends the reply, so it sees the
  whole dialogue.
- A pair whose chosen and rejected texts are identical carries no preference: dropped.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import IO, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from valueharms.data.sources import DataError, LoadReport, require_columns, require_file
from valueharms.io import jsonl_objects

TRIPLETS_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("chosen", pa.string(), nullable=False),
        pa.field("rejected", pa.string(), nullable=False),
    ]
)

# The releases the paper used (Fig. 9 of seed 004: RLHFlow's "-standard" sets; docs/study_b.md,
# "Sources"), all in one message-list layout. UltraFeedback's comes as three parquet shards,
# one source each, so every source stays one pinned file (valueharms.data.sources.Source).
PAPER_SOURCES: tuple[str, ...] = (
    "pku_saferlhf_standard",
    "ultrafeedback_standard_1of3",
    "ultrafeedback_standard_2of3",
    "ultrafeedback_standard_3of3",
    "helpsteer2_standard",
    "hh_rlhf_standard",
)
# The alternatives: the upstream releases (H4's binarization for UltraFeedback), each in its
# own layout with our own pairing and splitting.
ALTERNATIVE_SOURCES: tuple[str, ...] = ("pku_saferlhf", "ultrafeedback", "helpsteer2", "hh_rlhf")
SOURCES: tuple[str, ...] = PAPER_SOURCES + ALTERNATIVE_SOURCES

Record = dict[str, Any] | None
_OPENERS: dict[str, Callable[..., IO[str]]] = {
    ".gz": gzip.open,
    ".xz": lzma.open,
    ".bz2": bz2.open,
}
HUMAN, ASSISTANT = "\n\nHuman: ", "\n\nAssistant: "


# --- reading ---------------------------------------------------------------------------


def read_records(name: str, path: str | os.PathLike[str]) -> list[Record]:
    """The rows of `path` as dicts (None for a JSON line that is not an object).

    The format comes from the extension: .jsonl (optionally .gz/.xz/.bz2), .json (a list
    of objects), .parquet (nested lists stay Python lists), .csv (all cells strings).
    """
    p = require_file(name, path)
    suffixes = [s.lower() for s in p.suffixes]
    opener = _OPENERS.get(suffixes[-1]) if suffixes else None
    kind = suffixes[-2] if opener and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if kind == ".jsonl":
        with (opener or open)(p, "rt", encoding="utf-8-sig") as fh:
            return jsonl_objects(fh)
    if opener is not None:
        raise DataError(f"datasets.{name}.path: {path}: only .jsonl files may be compressed")
    if kind == ".json":
        data = json.loads(p.read_text(encoding="utf-8-sig"))
        if not isinstance(data, list):
            raise DataError(f"datasets.{name}.path: {path}: a .json file must hold a list")
        return [r if isinstance(r, dict) else None for r in data]
    if kind == ".parquet":
        return pq.read_table(p).to_pylist()
    if kind == ".csv":
        # keep_default_na=False: a response that reads "NA" or "None" is text, not missing.
        df = pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        return df.to_dict("records")
    raise DataError(
        f"datasets.{name}.path: {path}: unknown format; use .jsonl[.gz|.xz|.bz2], .json, "
        ".parquet or .csv"
    )


def _columns(records: list[Record]) -> list[str]:
    return sorted({k for r in records if r for k in r})


def _text(value: Any) -> str | None:
    """A non-blank string, else None."""
    return value if isinstance(value, str) and value.strip() else None


def _as_int(value: Any) -> int | None:
    """An integer read strictly: int, integral float, or a string of digits (CSV)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def _frame(source: str, rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(source, rid, p, c, r) for rid, p, c, r in rows], columns=TRIPLETS_SCHEMA.names
    )


def _open(
    name: str, path: str | os.PathLike[str], columns: list[str], report: LoadReport | None
) -> tuple[list[Record], LoadReport]:
    """A source's records, checked for `columns`, and the report its rows are counted in."""
    records = read_records(name, path)
    require_columns(name, path, _columns(records), columns)
    rep = report if report is not None else LoadReport(name, str(path))
    rep.rows_in = len(records)
    return records, rep


def _keep(
    rep: LoadReport, out: list[tuple[str, str, str, str]], rid: str, p: str, c: str, r: str
) -> None:
    if c.strip() == r.strip():
        rep.drop("identical chosen and rejected", 1)
    else:
        out.append((rid, p, c, r))


# --- PKU-SafeRLHF ----------------------------------------------------------------------


def load_pku_saferlhf(
    path: str | os.PathLike[str],
    preference: Literal["better", "safer"] = "better",
    report: LoadReport | None = None,
) -> pd.DataFrame:
    """PKU-SafeRLHF: prompt, response_0, response_1 and better_/safer_response_id.

    `preference` picks the label: "better" (helpfulness-and-harmlessness preference, the
    default; the paper does not say which it used) or "safer". An id other than 0/1 is
    dropped and counted.
    """
    name, col = "pku_saferlhf", f"{preference}_response_id"
    if preference not in ("better", "safer"):
        raise ValueError(f"preference must be 'better' or 'safer', got {preference!r}")
    records, rep = _open(name, path, ["prompt", "response_0", "response_1", col], report)
    out: list[tuple[str, str, str, str]] = []
    for i, r in enumerate(records):
        if r is None:
            rep.drop("line is not a JSON object", 1)
            continue
        prompt, r0, r1 = (
            _text(r.get("prompt")),
            _text(r.get("response_0")),
            _text(r.get("response_1")),
        )
        best = _as_int(r.get(col))
        if prompt is None or r0 is None or r1 is None:
            rep.drop("missing or empty prompt/response", 1)
        elif best not in (0, 1):
            rep.drop(f"{col} is not 0 or 1", 1)
        else:
            chosen, rejected = (r0, r1) if best == 0 else (r1, r0)
            _keep(rep, out, f"{name}-{i:06d}", prompt, chosen, rejected)
    rep.close(len(out))
    return _frame(name, out)


# --- chat message lists (UltraFeedback binarized, RLHFlow "-standard") ------------------

_ROLES = ("user", "assistant")


def _messages(value: Any) -> list[dict[str, Any]] | None:
    """A chat message list; a CSV cell holding its JSON is read too. Else None."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in value
    ):
        return None
    return value


def _render_context(messages: list[dict[str, Any]]) -> str:
    """Messages before the final reply, in the triplet table's prompt convention."""
    parts = []
    for k, m in enumerate(messages):
        label = "" if k == 0 else (ASSISTANT if m["role"] == "assistant" else HUMAN)
        parts.append(label + m["content"].strip())
    return "".join(parts)


def split_messages(chosen: Any, rejected: Any) -> tuple[str, str, str] | str:
    """(prompt, chosen reply, rejected reply) of a pair of message lists, or why not.

    Both lists must end with the assistant's reply and agree on everything before it, a
    dialogue of user and assistant turns that opens and closes with the user. The shared
    dialogue becomes the prompt (earlier turns labelled inline, see the module docstring),
    so a multi-turn conversation reaches the extractor whole. The reason, when there is no
    triplet, is the LoadReport's drop reason.
    """
    ch, rj = _messages(chosen), _messages(rejected)
    if ch is None or rj is None:
        return "chosen/rejected is not a message list"
    if not ch or not rj or ch[-1]["role"] != "assistant" or rj[-1]["role"] != "assistant":
        return "message list does not end with an assistant reply"
    context = ch[:-1]
    if context != rj[:-1]:
        return "chosen and rejected differ before the reply"
    if any(m["role"] not in _ROLES for m in ch + rj):
        return "message role other than user or assistant"
    if not context or context[0]["role"] != "user" or context[-1]["role"] != "user":
        return "dialogue before the reply does not open and close with a user turn"
    if not all(_text(m["content"]) for m in (*context, ch[-1], rj[-1])):
        return "missing or empty prompt/response"
    return _render_context(context), ch[-1]["content"], rj[-1]["content"]


def _load_message_pairs(
    name: str, path: str | os.PathLike[str], columns: list[str], report: LoadReport | None
) -> pd.DataFrame:
    """Triplets of a file whose rows hold `chosen` and `rejected` message lists."""
    records, rep = _open(name, path, columns, report)
    out: list[tuple[str, str, str, str]] = []
    for i, r in enumerate(records):
        split = (
            "line is not a JSON object"
            if r is None
            else split_messages(r.get("chosen"), r.get("rejected"))
        )
        if isinstance(split, str):
            rep.drop(split, 1)
        else:
            _keep(rep, out, f"{name}-{i:06d}", *split)
    rep.close(len(out))
    return _frame(name, out)


def load_ultrafeedback(
    path: str | os.PathLike[str], report: LoadReport | None = None
) -> pd.DataFrame:
    """UltraFeedback, binarized (HuggingFaceH4/ultrafeedback_binarized, train_prefs).

    Rows hold `prompt` and `chosen`/`rejected` message lists ({role, content}) that end with
    the assistant reply; the replies are the last messages, the prompt is what precedes
    them (`split_messages`). A pair whose lists differ before the reply, or do not end with
    an assistant message, is dropped and counted.
    """
    return _load_message_pairs("ultrafeedback", path, ["prompt", "chosen", "rejected"], report)


def load_standard(
    name: str, path: str | os.PathLike[str], report: LoadReport | None = None
) -> pd.DataFrame:
    """An RLHFlow "-standard" release (the paper's four; PAPER_SOURCES): `chosen` and
    `rejected` hold the whole conversation as {role, content} messages, the last one the
    assistant's reply. Other columns (chosen_score, rejected_score) are ignored. The
    preference is RLHFlow's: for PKU-SafeRLHF there is no label to pick.
    """
    if name not in PAPER_SOURCES:
        raise ValueError(f"{name!r} is not an RLHFlow standard source; known: {PAPER_SOURCES}")
    return _load_message_pairs(name, path, ["chosen", "rejected"], report)


# --- HelpSteer2 ------------------------------------------------------------------------

_HS2_TURNS = (("<extra_id_1>Assistant\n", ASSISTANT), ("<extra_id_1>User\n", HUMAN))


def _hs2_prompt(prompt: str) -> str:
    """HelpSteer2 marks earlier turns with <extra_id_1>User/Assistant lines; relabel them."""
    for marker, label in _HS2_TURNS:
        prompt = prompt.replace(marker, label)
    return prompt.strip()


def load_helpsteer2(path: str | os.PathLike[str], report: LoadReport | None = None) -> pd.DataFrame:
    """HelpSteer2: one rated response per row; two responses to one prompt make a pair.

    Pairing rule: rows are grouped by exact prompt text and, within a group, paired in file
    order (1st with 2nd, 3rd with 4th, ...; the public file has two responses per prompt).
    The response with the higher `helpfulness` is chosen; equal helpfulness is dropped, as
    is a left-over row with no partner. The load report counts rows (responses): each
    kept pair is 2 rows out.
    """
    name = "helpsteer2"
    records, rep = _open(name, path, ["prompt", "response", "helpfulness"], report)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        if r is None:
            rep.drop("line is not a JSON object", 1)
        elif _text(r.get("prompt")) is None or _text(r.get("response")) is None:
            rep.drop("missing or empty prompt/response", 1)
        elif _as_int(r.get("helpfulness")) is None:
            rep.drop("helpfulness is not an integer", 1)
        else:
            groups.setdefault(r["prompt"], []).append(i)
    out: list[tuple[str, str, str, str]] = []
    for prompt, rows in groups.items():
        if len(rows) % 2:
            rep.drop("response without a partner for its prompt", 1)
        for a, b in zip(rows[0:-1:2], rows[1::2], strict=True):
            ra, rb = records[a], records[b]
            assert ra is not None and rb is not None
            ha, hb = _as_int(ra["helpfulness"]), _as_int(rb["helpfulness"])
            assert ha is not None and hb is not None
            if ha == hb:
                rep.drop("pair with equal helpfulness (2 rows each)", 2)
            elif ra["response"].strip() == rb["response"].strip():
                rep.drop("identical chosen and rejected (2 rows each)", 2)
            else:
                chosen, rejected = (ra, rb) if ha > hb else (rb, ra)
                rid = f"{name}-{a:06d}+{b:06d}"
                out.append((rid, _hs2_prompt(prompt), chosen["response"], rejected["response"]))
    # The books count rows: each kept pair used two.
    rep.close(2 * len(out))
    rep.notes.append(f"{len(out)} pairs from {2 * len(out)} rows")
    return _frame(name, out)


# --- HH-RLHF ---------------------------------------------------------------------------


def split_hh_transcript(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """(prompt, chosen reply, rejected reply) of an HH-RLHF pair, or None if they differ.

    Both transcripts read "\\n\\nHuman: ...\\n\\nAssistant: ...". The final assistant turn
    of each is its reply; everything before it must be the same in both and becomes the
    prompt, with the leading "Human:" label removed.
    """
    marker = ASSISTANT.rstrip(" ")
    ci, ri = chosen.rfind(marker), rejected.rfind(marker)
    if ci < 0 or ri < 0 or chosen[:ci] != rejected[:ri]:
        return None
    prefix = chosen[:ci]
    head = HUMAN.rstrip(" ")
    if not prefix.startswith(head):
        return None
    prompt = prefix[len(head) :].strip()
    return prompt, chosen[ci + len(marker) :].strip(), rejected[ri + len(marker) :].strip()


def load_hh_rlhf(path: str | os.PathLike[str], report: LoadReport | None = None) -> pd.DataFrame:
    """HH-RLHF (Anthropic/hh-rlhf *-base files): `chosen` and `rejected` full transcripts.

    The shared dialogue before the last "Assistant:" turn is the prompt; the two final
    assistant turns are the replies. A pair whose transcripts differ before that turn (or
    do not start with a Human turn) is dropped and counted.
    """
    name = "hh_rlhf"
    records, rep = _open(name, path, ["chosen", "rejected"], report)
    out: list[tuple[str, str, str, str]] = []
    for i, r in enumerate(records):
        if r is None:
            rep.drop("line is not a JSON object", 1)
            continue
        ch, rj = r.get("chosen"), r.get("rejected")
        split = split_hh_transcript(ch, rj) if isinstance(ch, str) and isinstance(rj, str) else None
        if split is None:
            rep.drop("transcripts do not share the dialogue before the last reply", 1)
        elif not all(split):
            rep.drop("missing or empty prompt/response", 1)
        else:
            _keep(rep, out, f"{name}-{i:06d}", *split)
    rep.close(len(out))
    return _frame(name, out)


# --- all sources -----------------------------------------------------------------------

LOADERS: dict[str, Callable[..., pd.DataFrame]] = {
    **{name: partial(load_standard, name) for name in PAPER_SOURCES},
    "pku_saferlhf": load_pku_saferlhf,
    "ultrafeedback": load_ultrafeedback,
    "helpsteer2": load_helpsteer2,
    "hh_rlhf": load_hh_rlhf,
}


def subsample(df: pd.DataFrame, n: int | None, seed: int = 0) -> pd.DataFrame:
    """`n` rows drawn uniformly without replacement (seeded), kept in source order."""
    if n is None or n >= len(df):
        return df.reset_index(drop=True)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    idx = np.random.default_rng(seed).choice(len(df), size=n, replace=False)
    return df.iloc[np.sort(idx)].reset_index(drop=True)


def load_preferences(
    name: str,
    path: str | os.PathLike[str],
    n: int | None = None,
    seed: int = 0,
    report: LoadReport | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Triplets of source `name` (see SOURCES), optionally a seeded subsample of `n` pairs."""
    if name not in LOADERS:
        raise ValueError(f"unknown preference dataset {name!r}; known: {list(LOADERS)}")
    return subsample(LOADERS[name](path, report=report, **options), n, seed)


def load_all(
    paths: Mapping[str, str | os.PathLike[str]],
    n: int | None = None,
    seed: int = 0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    reports: dict[str, LoadReport] | None = None,
) -> pd.DataFrame:
    """The concatenated triplet table of every source in `paths` (n pairs per source)."""
    frames = []
    for name, path in paths.items():
        rep = LoadReport(name, str(path))
        frames.append(load_preferences(name, path, n, seed, rep, **(options or {}).get(name, {})))
        if reports is not None:
            reports[name] = rep
    if not frames:
        return pd.DataFrame(columns=TRIPLETS_SCHEMA.names)
    df = pd.concat(frames, ignore_index=True)
    dup = df.duplicated(["source", "row_id"])
    if dup.any():
        raise DataError(f"duplicate triplet ids: {df.loc[dup, 'row_id'].head().tolist()}")
    return df


__all__ = [
    "ALTERNATIVE_SOURCES",
    "LOADERS",
    "PAPER_SOURCES",
    "SOURCES",
    "TRIPLETS_SCHEMA",
    "load_all",
    "load_helpsteer2",
    "load_hh_rlhf",
    "load_preferences",
    "load_pku_saferlhf",
    "load_standard",
    "load_ultrafeedback",
    "read_records",
    "split_hh_transcript",
    "split_messages",
    "subsample",
]
