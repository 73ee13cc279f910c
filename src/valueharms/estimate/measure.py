"""How many examples or prompts a stage has and how long they are, in tokens.

Measured from the data where its file is on this machine (the data stage's inputs, as the
plan resolves them: `datasets.<name>.path`, `data_search_paths`, or an earlier download),
built by the pipeline's own functions (VIM examples, benign sets, prompt tables, preference
triplets), so a length is that of the text a job sees; otherwise the declared default of
resources/estimate/datasets.yaml, marked "assumed".

Token lengths come from characters / `estimate.chars_per_token` (about 4 for English text
under the Llama, Mistral and OLMo tokenizers), or from a real tokenizer (`--tokenizer DIR`).
Chat templates and system prompts of the chat models add a few tokens that are not counted.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SAMPLE = 20_000  # texts measured per dataset at most (seeded); counts use every row


class TokenCounter:
    """Token lengths of texts: characters / chars_per_token, or a tokenizer's count."""

    def __init__(self, chars_per_token: float, tokenizer: str | None = None) -> None:
        self.chars_per_token = float(chars_per_token)
        self.tokenizer_dir = tokenizer
        self._tok: Any = None
        if tokenizer:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(tokenizer)

    @property
    def method(self) -> str:
        if self._tok is not None:
            return f"tokenizer {self.tokenizer_dir}"
        return f"characters / {self.chars_per_token:g}"

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if len(texts) > SAMPLE:
            rng = np.random.default_rng(0)
            texts = [texts[i] for i in sorted(rng.choice(len(texts), SAMPLE, replace=False))]
        if not texts:
            return np.zeros(0)
        if self._tok is not None:
            ids = self._tok(texts, add_special_tokens=False)["input_ids"]
            return np.array([len(i) for i in ids], dtype=float)
        return np.array([len(t) for t in texts], dtype=float) / self.chars_per_token


@dataclass
class Lengths:
    """A dataset as a stage uses it: rows (training examples, prompts or pairs), a sample of
    per-row token lengths (one value when assumed), and where both came from."""

    rows: int
    tokens: np.ndarray
    origin: str  # "measured: <file>" | "assumed: <datasets.yaml key>" | "paper: ..."
    valid_rows: int = 0
    valid_tokens: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def assumed(self) -> bool:
        return not self.origin.startswith("measured")

    def mean(self, max_length: int | None = None, tokens: np.ndarray | None = None) -> float:
        """Mean tokens per row, each row cut at max_length (what the trainer keeps)."""
        t = self.tokens if tokens is None else tokens
        if t is None or len(t) == 0:
            return 0.0
        return float(np.mean(np.minimum(t, max_length) if max_length else t))

    def padded_mean(self, group: int, max_length: int | None = None) -> float:
        """Mean tokens per row once padded to the longest of a batch of `group` rows drawn
        at random: E[max of `group` draws] of the empirical distribution (order statistics).
        A single assumed length has no spread: no padding is modelled for it."""
        t = np.sort(np.minimum(self.tokens, max_length) if max_length else self.tokens)
        n = len(t)
        if n == 0 or group <= 1:
            return self.mean(max_length)
        k = np.arange(1, n + 1)
        weights = (k / n) ** group - ((k - 1) / n) ** group
        return float(np.dot(weights, t))


def assumed(defaults: dict[str, Any], section: str, key: str) -> dict[str, Any]:
    row = (defaults.get(section) or {}).get(key)
    if row is None:
        raise KeyError(f"resources/estimate/datasets.yaml has no {section}.{key}")
    return row


def _assumed_lengths(row: dict[str, Any], section: str, key: str, rows: int) -> Lengths:
    return Lengths(
        rows,
        np.array([float(row["tokens"])]),
        f"assumed: {section}.{key}",
        valid_rows=int(row.get("valid_rows", 0)),
        valid_tokens=np.array([float(row["tokens"])]),
        extra={k: v for k, v in row.items() if k not in ("rows", "tokens", "valid_rows")},
    )


def local_file(entry: tuple[str, Any] | None) -> str | None:
    """The plan's (path, needs_download) of a dataset, when the file is on this machine."""
    if entry is None:
        return None
    return entry[0] if Path(entry[0]).is_file() else None


def _texts(df: pd.DataFrame) -> list[str]:
    return (df["prompt"].astype(str) + df["completion"].astype(str)).tolist()


def _split(df: pd.DataFrame, counter: TokenCounter, extra: int, origin: str) -> Lengths:
    """Train/valid lengths of a prompt/completion table with a `split` column; `extra`
    tokens per example (EOS, and BOS where the tokenizer adds one)."""
    train, valid = df[df["split"] == "train"], df[df["split"] == "valid"]
    return Lengths(
        len(train),
        counter(_texts(train)) + extra,
        origin,
        valid_rows=len(valid),
        valid_tokens=counter(_texts(valid)) + extra,
    )


# --- Study A training data --------------------------------------------------------------


def _target(dists: dict[str, dict[str, Any]]) -> dict[str, float] | None:
    """Scores of the first distribution: stage-1 example counts and texts depend on a
    target only through which arguments fall on either side of the threshold."""
    for spec in dists.values():
        return spec.get("scores") or spec.get("anchor_scores")
    return None


def vim_lengths(
    plan: Any, counter: TokenCounter, defaults: dict[str, Any], extra: int
) -> tuple[Lengths, Lengths]:
    """VIM stage-1 and stage-2 examples of one distribution (train and valid splits), built
    by valueharms.data.vim from the Touché files when they are here."""
    from valueharms.data import vim

    names = ("touche", "touche_stage2_train", "touche_stage2_valid")
    paths = [local_file(plan.data.get(n)) for n in names]
    target = _target(plan.dists)
    if all(paths) and target is not None:
        v = plan.config["vim"]
        files = vim.ToucheFiles(*paths, stage2_labels=v["stage2_labels"])  # type: ignore[arg-type]
        args, s2_train, s2_valid = files.read()
        templates = {
            k.removeprefix("vim.prompts."): t
            for k, t in plan.templates.items()
            if k.startswith("vim.prompts.")
        }
        s1 = vim.stage1_examples(
            args, target, templates, v["threshold"], v["strategy"], v["seed"],
            v["stage1_questions"],
        )  # fmt: skip
        s2 = vim.stage2_examples(s2_train, s2_valid, target, templates, v["seed"])
        return (
            _split(s1, counter, extra, f"measured: {paths[0]}"),
            _split(s2, counter, extra, f"measured: {paths[1]}"),
        )
    out = []
    for key in ("vim_stage1", "vim_stage2"):
        row = assumed(defaults, "training", key)
        out.append(_assumed_lengths(row, "training", key, int(row["rows"])))
    return out[0], out[1]


def benign_lengths(
    plan: Any, name: str, counter: TokenCounter, defaults: dict[str, Any], extra: int
) -> Lengths:
    """One benign set's train and valid examples (valueharms.data.benign), or its default."""
    from valueharms.data.benign import benign_examples

    cfg = plan.config["benign"]
    path = local_file(plan.data.get(name))
    valid_entry = plan.data.get(f"{name}_valid")
    valid = local_file(valid_entry)
    if path and (valid_entry is None or valid):
        kwargs = {"exclude_categories": cfg["dolly_exclude_categories"]} if name == "dolly" else {}
        df = benign_examples(
            name, path, valid, seed=cfg["train"]["seed"],
            max_examples=cfg["train"]["max_train_examples"], **kwargs,
        )  # fmt: skip
        return _split(df, counter, extra, f"measured: {path}")
    row = assumed(defaults, "training", name)
    n = int(row["rows"])
    if not row.get("valid_rows"):  # a seeded 10% is held out (benign_examples)
        n_valid = round(0.1 * n)
        row = {**row, "valid_rows": n_valid}
        n -= n_valid
    cap = cfg["train"]["max_train_examples"]
    return _assumed_lengths(row, "training", name, min(n, cap) if cap else n)


# --- prompts of a benchmark ---------------------------------------------------------------


def _prompt_table(plan: Any, name: str, path: str) -> pd.DataFrame:
    """The prompts table the pipeline's data rule would write for benchmark `name`."""
    from valueharms import benchmarks
    from valueharms.data import steps
    from valueharms.data.benchmarks import duplicates_setting
    from valueharms.io import read_table
    from valueharms.studyb import plan as sbplan
    from valueharms.studyb import steps as sbsteps

    cfg = plan.config
    bench = cfg["benchmarks"][name]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "prompts.parquet")
        if benchmarks.get(name).load is not None:
            sample = {
                "n": bench["n_prompts"],
                "mode": bench["subsample"],
                "seed": cfg["benchmarks"]["seed"],
            }
            steps.benchmark_prompts(
                name, path, sample, out, str(Path(tmp) / "report.json"),
                duplicates=duplicates_setting(name, cfg),
            )  # fmt: skip
        else:
            templates = sbplan.prompt_templates(cfg, name) or None
            sbsteps.eval_prompts(
                name, path, templates, sbplan.n_templates(cfg, name), bench["n_prompts"],
                cfg["benchmarks"]["seed"], out,
            )  # fmt: skip
        return read_table(out)


def _turns(name: str, prompts: list[str]) -> list[list[str]]:
    """Each prompt's user turns (a multi-turn benchmark's module says how to read them)."""
    from valueharms import benchmarks

    split = getattr(benchmarks.module(name), "user_turns", None)
    return [split(p) if split else [p] for p in prompts]


def prompt_lengths(
    plan: Any, name: str, counter: TokenCounter, defaults: dict[str, Any]
) -> Lengths:
    """Prompts of a benchmark after its subsampling, their length in tokens once in the
    benchmark's template (one user turn), the mean number of turns and the prompts per
    category; or the declared default."""
    from valueharms.studyb import plan as sbplan

    cfg = plan.config
    bench = cfg["benchmarks"][name]
    entry = plan.data.get(name) or plan.sb.data.get(name)
    path = local_file(entry)
    template = plan.templates.get(f"benchmarks.{name}.template", "{prompt}")
    wrap = max(len(template) - len("{prompt}"), 0)
    if path:
        df = _prompt_table(plan, name, path)
        turns = _turns(name, df["prompt"].astype(str).tolist())
        texts = [t for ts in turns for t in ts]
        extra = {
            "turns": float(np.mean([len(t) for t in turns])) if turns else 1.0,
            "categories": df["category"].dropna().value_counts().to_dict(),
        }
        tokens = counter(texts) + wrap / counter.chars_per_token
        return Lengths(len(df), tokens, f"measured: {path}", extra=extra)
    row = assumed(defaults, "prompts", name)
    rows = int(row["rows"])
    if "per_template" in row:  # issues x framings per template drawn
        n_t = sbplan.n_templates(cfg, name)
        rows = int(row["per_template"]) * int(n_t or row["templates"])
    n = bench["n_prompts"]
    lengths = _assumed_lengths(row, "prompts", name, min(rows, n) if n else rows)
    lengths.extra.setdefault("turns", 1.0)
    lengths.extra["categories"] = {}
    return lengths


# --- Study B preference data -------------------------------------------------------------


def preference_lengths(
    plan: Any, counter: TokenCounter, defaults: dict[str, Any]
) -> dict[str, Lengths]:
    """Per source: the pairs the config takes (n_per_source) and the token length of each
    sequence (prompt + one response; tokens hold chosen and rejected). From the triplets
    the pipeline wrote, else the source file, else the declared default."""
    from valueharms.io import read_table
    from valueharms.studyb import plan as sbplan
    from valueharms.studyb.preferences import load_preferences

    sb = plan.config["studyb"]
    n, out = sb["n_per_source"], {}
    for source in plan.sb.sources:
        done = Path(f"{sbplan.RESULTS}/triplets/{source}.parquet")
        path = local_file(plan.sb.data.get(source))
        df = None
        if done.is_file():
            df, origin = read_table(str(done)), f"measured: {done}"
        elif path:
            options = sbplan.loader_options(plan.config, source)
            df = load_preferences(source, path, n, sb["seed"], **options)
            origin = f"measured: {path}"
        if df is not None:
            seqs = pd.concat([df["prompt"] + df["chosen"], df["prompt"] + df["rejected"]])
            out[source] = Lengths(len(df), counter(seqs.astype(str).tolist()), origin)
            continue
        row = assumed(defaults, "preferences", source)
        pairs = int(row["pairs"])
        seq = float(row["prompt"]) + float(row["response"])
        out[source] = Lengths(
            min(pairs, n) if n else pairs,
            np.array([seq]),
            f"assumed: preferences.{source}",
            extra={"prompt": float(row["prompt"]), "response": float(row["response"])},
        )
    return out


def subset_sizes(
    plan: Any, pool: dict[str, Lengths], defaults: dict[str, Any]
) -> dict[str, tuple[int, str]]:
    """Pairs per target value: the subset file the pipeline wrote, else the paper's Table 1
    count scaled by this config's pool of pairs against the paper's pool (values the paper
    did not induce: the median share of its 15)."""
    from valueharms.studyb import plan as sbplan

    table = defaults["subsets"]["table1"]
    paper_pool = sum(
        int(defaults["preferences"][s]["pairs"]) for s in defaults["subsets"]["paper_sources"]
    )
    scale = sum(p.rows for p in pool.values()) / paper_pool
    median = float(np.median(list(table.values())))
    out = {}
    for slug, value in plan.sb.values.items():
        done = Path(f"{sbplan.RESULTS}/subsets/{slug}.parquet")
        if done.is_file():
            import pyarrow.parquet as pq

            out[value] = (pq.read_metadata(done).num_rows, f"measured: {done}")
        elif value in table:
            out[value] = (max(1, math.floor(table[value] * scale + 0.5)), "paper: Table 1, scaled")
        else:
            out[value] = (max(1, math.floor(median * scale + 0.5)), "assumed: Table 1 median")
    return out
