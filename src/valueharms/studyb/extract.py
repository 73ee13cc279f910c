"""Open-set value extraction (METHODS B1; the prompt follows Listing 2 of seed 004).

Every response of a triplet (chosen and rejected) is shown to an extractor LLM as a
transcript; the extractor answers `<thinking>...</thinking><answer>x, y, z</answer>`.
Only the answer part is parsed. The raw output is kept in the table, so `reparse` can
redo the parsing (a new synonym map, a fixed rule) without a single new call.

Statuses: ok (values read), none (the answer says `none`: no value), unparsed (no
readable answer; never guessed), failed (the call failed). Only ok and none count as
extracted; the value list is null for the other two.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from valueharms.llm.cache import LLMCache, cached_generate
from valueharms.llm.interface import STATUS_OK, Backend, Request, Sampling

OK, NONE, UNPARSED, FAILED = "ok", "none", "unparsed", "failed"
PARSED = (OK, NONE)
SIDES = ("chosen", "rejected")
MAX_WORDS = 4

DEFAULT_PROMPT = (
    Path(__file__).resolve().parents[3] / "resources" / "prompts" / "studyb_extract.txt"
)
# Greedy, with room for the thinking part before the answer.
DEFAULT_SAMPLING = Sampling(max_new_tokens=256, temperature=0.0)

EXTRACTIONS_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("side", pa.string(), nullable=False),
        pa.field("raw", pa.string()),  # null when the call failed
        pa.field("status", pa.string(), nullable=False),
        pa.field("values", pa.list_(pa.string())),  # null unless status is ok or none
        pa.field("dropped_items", pa.list_(pa.string()), nullable=False),
        pa.field("error", pa.string()),
    ]
)

VALUE_COUNTS_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("value", pa.string(), nullable=False),
        pa.field("n_responses", pa.int64(), nullable=False),
        pa.field("n_chosen", pa.int64(), nullable=False),
        pa.field("n_rejected", pa.int64(), nullable=False),
        pa.field("share", pa.float64(), nullable=False),
    ]
)


# --- prompt ----------------------------------------------------------------------------


def load_template(path: str | os.PathLike[str] | None = None) -> str:
    """A prompt template: ours by default, or any file (e.g. the published Listing 2)."""
    return Path(path or DEFAULT_PROMPT).read_text(encoding="utf-8")


def transcript(prompt: str, response: str) -> str:
    """The conversation shown to the extractor: the user turn(s), then the response."""
    return f"Human: {prompt.strip()}\n\nAssistant: {response.strip()}"


def render(template: str, text: str, labels: Iterable[str] | None = None) -> str:
    """`template` with the transcript inserted.

    Our templates use `{transcript}` (and `{labels}` for the closed set); the published
    listings use a bare TRANSCRIPT. Exactly one transcript slot is required, so a template
    with none (or two) fails loudly instead of sending a prompt without the conversation.
    """
    slot = "{transcript}" if "{transcript}" in template else "TRANSCRIPT"
    n = len(re.findall(r"\{transcript\}" if slot.startswith("{") else r"\bTRANSCRIPT\b", template))
    if n != 1:
        raise ValueError(f"template needs exactly one {{transcript}} or TRANSCRIPT slot, has {n}")
    if "{labels}" in template:
        if labels is None:
            raise ValueError("template has a {labels} slot but no labels were given")
        template = template.replace("{labels}", " ".join(labels))
    return template.replace(slot, text)


def response_key(source: str, row_id: str, side: str) -> str:
    return f"{source}|{row_id}|{side}"


def extraction_requests(
    triplets: pd.DataFrame, template: str, sampling: Sampling = DEFAULT_SAMPLING
) -> list[Request]:
    """One request per response (chosen and rejected) of every triplet."""
    out = []
    for row in triplets.itertuples(index=False):
        for side in SIDES:
            body = render(template, transcript(row.prompt, getattr(row, side)))
            out.append(
                Request(
                    response_key(row.source, row.row_id, side), (("user", body),), None, sampling
                )
            )
    return out


# --- parsing ---------------------------------------------------------------------------

_OPEN = re.compile(r"<\s*answer\s*>", re.I)
_CLOSE = re.compile(r"<\s*/\s*answer\s*>", re.I)
_MARKER = re.compile(r"^\s*(?:[-*•+]|\(?\d{1,2}[.)])\s+")
_WRAP = "\"'`*_“”‘’«» \t"
_NONE = re.compile(r"^[\s\"'`*]*none[\s\"'`*.!]*$", re.I)


def answer_block(raw: str) -> str | None:
    """Text inside <answer>...</answer> (closing tag optional), or None.

    Several answer blocks that disagree are ambiguous: None, never a guess.
    """
    starts = [m.end() for m in _OPEN.finditer(raw)]
    if not starts:
        return None
    blocks = set()
    for s in starts:
        end = _CLOSE.search(raw, s)
        nxt = _OPEN.search(raw, s)
        stop = min(m.start() for m in (end, nxt) if m) if (end or nxt) else len(raw)
        blocks.add(raw[s:stop].strip())
    return blocks.pop() if len(blocks) == 1 else None


def normalise(name: str) -> str:
    """Canonical value name: lower case, no punctuation but inner hyphens, single spaces."""
    s = name.lower().replace("’", "").replace("'", "")
    s = re.sub(r"[^\w\s-]|_", " ", s)
    s = re.sub(r"(?<![^\W_])-|-(?![^\W_])", " ", s)  # hyphens not between word chars
    return " ".join(s.split())


def normalise_synonyms(synonyms: Mapping[str, str] | None) -> dict[str, str]:
    return {normalise(k): normalise(v) for k, v in (synonyms or {}).items()}


@dataclass
class Parsed:
    values: list[str] | None
    status: str
    dropped: list[str] = field(default_factory=list)  # items rejected (too long), verbatim


def parse_answer(raw: str | None, synonyms: Mapping[str, str] | None = None) -> Parsed:
    """Values in the <answer> part of `raw`: 1-4 words each, normalised, synonyms applied.

    Items are separated by commas or new lines (bullet and numbered lists are read);
    quotes, list markers and a trailing period are stripped. An item longer than four
    words is dropped and reported, never truncated; if every item is dropped the answer is
    unparsed, and so is `none` next to other values. `none` alone (any case, quoted, with a
    period) means no value.
    """
    if raw is None:
        return Parsed(None, FAILED)
    block = answer_block(raw)
    if block is None or not block.strip(_WRAP + ".,"):
        return Parsed(None, UNPARSED)
    if _NONE.match(block):
        return Parsed([], NONE)
    syn = normalise_synonyms(synonyms)
    values: list[str] = []
    dropped: list[str] = []
    for item in re.split(r"[,\n]", block):
        text = _MARKER.sub("", item).strip(_WRAP).rstrip(".!").strip(_WRAP)
        name = normalise(text)
        if not name:
            continue
        if len(name.split()) > MAX_WORDS:
            dropped.append(text)
            continue
        name = syn.get(name, name)
        if name not in values:
            values.append(name)
    if not values or ("none" in values and len(values) > 1):
        return Parsed(None, UNPARSED, dropped)  # nothing readable, or "none" plus values
    return Parsed(values, OK, dropped)


def parse_values(
    raw: str | None, synonyms: Mapping[str, str] | None = None
) -> tuple[list[str] | None, str]:
    """(values, status) of one extractor output; values is None unless ok or none."""
    p = parse_answer(raw, synonyms)
    return p.values, p.status


# --- running ---------------------------------------------------------------------------


def run_extraction(
    triplets: pd.DataFrame,
    backend: Backend,
    cache: LLMCache,
    template: str | None = None,
    sampling: Sampling = DEFAULT_SAMPLING,
    synonyms: Mapping[str, str] | None = None,
    batch_size: int = 16,
) -> pd.DataFrame:
    """Extract the values of every response in `triplets`; EXTRACTIONS_SCHEMA rows.

    Calls go through the content-addressed cache: a rerun pays for no answer twice.
    """
    if triplets.duplicated(["source", "row_id"]).any():
        raise ValueError("triplet ids (source, row_id) must be unique")
    requests = extraction_requests(triplets, template or load_template(), sampling)
    pairs = zip(triplets["source"], triplets["row_id"], strict=True)
    ids = [(s, r, side) for s, r in pairs for side in SIDES]
    responses = cached_generate(backend, requests, cache, batch_size=batch_size)
    rows = []
    for (source, row_id, side), resp in zip(ids, responses, strict=True):
        ok = resp.status == STATUS_OK and bool(resp.texts)
        raw = resp.texts[0] if ok else None
        p = parse_answer(raw, synonyms)
        rows.append(
            (source, row_id, side, raw, p.status, p.values, p.dropped, None if ok else resp.error)
        )
    return pd.DataFrame(rows, columns=EXTRACTIONS_SCHEMA.names)


def reparse(extractions: pd.DataFrame, synonyms: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The same table with values and statuses parsed again from `raw` (no calls)."""
    out = extractions.copy()
    parsed = [parse_answer(r if isinstance(r, str) else None, synonyms) for r in out["raw"]]
    out["status"] = [p.status for p in parsed]
    out["values"] = [p.values for p in parsed]
    out["dropped_items"] = [p.dropped for p in parsed]
    return out


def value_counts(extractions: pd.DataFrame) -> pd.DataFrame:
    """Per value: responses expressing it (all, chosen, rejected) and their share.

    The share's denominator is the number of responses with an extraction (ok or none).
    Sorted by n_responses, then value.
    """
    done = extractions[extractions["status"].isin(PARSED)]
    long = done[["side", "values"]].explode("values").dropna(subset=["values"])
    n = len(done)
    if long.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _COUNT_DTYPES.items()})
    table = pd.crosstab(long["values"], long["side"]).reindex(columns=list(SIDES), fill_value=0)
    out = pd.DataFrame(
        {
            "value": table.index.astype(str),
            "n_responses": (table["chosen"] + table["rejected"]).astype("int64").to_numpy(),
            "n_chosen": table["chosen"].astype("int64").to_numpy(),
            "n_rejected": table["rejected"].astype("int64").to_numpy(),
        }
    )
    out["share"] = out["n_responses"] / n
    return out.sort_values(["n_responses", "value"], ascending=[False, True], ignore_index=True)


_COUNT_DTYPES = {
    "value": "object",
    "n_responses": "int64",
    "n_chosen": "int64",
    "n_rejected": "int64",
    "share": "float64",
}


# --- judging model responses (IssueBench value expression, METHODS B3) -------------------

LABEL_SEP = "|"  # joins a response's values in a judgments row (normalise() drops "|")


def answer_choices(names: Iterable[str]) -> tuple[str, ...]:
    """Choice-mode answers of the extractor or verifier: one `<answer>` per name.

    A small local model rarely writes the format; choosing the likeliest of these gives it
    one readable answer per response. It is a forced choice of one name: no open set and
    no `none` (the 135M model found `none` likeliest for every response, which leaves
    every value subset empty)."""
    return tuple(f"<answer>{n}</answer>" for n in dict.fromkeys(names))


def judge_values(
    gens: pd.DataFrame,
    backend: Backend,
    cache: LLMCache,
    judge_name: str,
    template: str | None = None,
    sampling: Sampling = DEFAULT_SAMPLING,
    synonyms: Mapping[str, str] | None = None,
    batch_size: int = 16,
) -> pd.DataFrame:
    """The values each ok generation expresses (GENERATIONS_SCHEMA rows in), as
    JUDGMENTS_SCHEMA rows: label = the values joined by "|" ("" for none), score = their
    count; an answer with no readable <answer> part is unparsed, a failed call failed."""
    from valueharms.judge.run import Verdict, judge_each

    template = template or load_template()

    def body(i: int) -> tuple[str, str]:
        response = gens["output"].iat[i] or ""
        return response, render(template, transcript(gens["prompt"].iat[i], response))

    def read(raw: str) -> Verdict:
        p = parse_answer(raw, synonyms)
        if p.values is None:
            return None, None, "no readable <answer> part"
        return float(len(p.values)), LABEL_SEP.join(p.values), None

    return judge_each(gens, backend, cache, judge_name, body, read, sampling, batch_size)
