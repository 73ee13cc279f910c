"""Human verification of the value subsets (METHODS B1; seed 004 Section 4, Table 3, the
human rows of Table 2, the instructions of Figure 8).

**Export.** N pairs are drawn per value from the subsets (results/studyb/subsets.parquet).
Each item shows the prompt, the subset's chosen response (the one the extractor found the
value in; the rejected one too unless `chosen_only`) and 4 labels: the target value and 3
distractors drawn from the other values, in shuffled order. Items of all values are
shuffled together. The sheet (CSV) goes to every annotator; the key (each item's target,
source and row id) stays apart, so the sheet does not give the target away.

**Filling.** Each annotator fills `chosen_values` (and `rejected_values`, if shown) with the
shown labels they see in that response, separated by `|`, `,` or `;`, or writes `none`.
A blank `chosen_values` cell is an item not annotated yet, and the import stops on it;
a blank `rejected_values` cell means that side was not annotated.

**Import (Table 3).** Per value, over its items, with every annotator's filled sheet:
- precision (union): the share of items whose target value is among the labels of at
  least one annotator (Table 3's column; their mean over values is Table 2's
  "Human (Union)": the mean of Table 3's column is the paper's 76.67);
- precision (intersection): among the items where the annotators' label sets intersect,
  the share whose target is in the intersection. The paper drops the items with an empty
  intersection (46% of its items) and reports 77.24 "for the remaining samples": we take
  that as pooled over items (`human_intersection`), and give the mean over values too;
- Jaccard: the mean over items of the mean pairwise Jaccard index |A ∩ B| / |A ∪ B| of
  the annotators' label sets ("Mean Jaccard Index amongst annotators").

Choices where the paper is silent: two empty sets (both annotators saw none of the
labels) agree fully (Jaccard 1); the rejected side, when annotated, gives the share of
items whose target an annotator saw in the rejected response (`rejected_union`; low is
expected, since the subsets keep pairs with the value in one response only).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from valueharms.studyb.extract import normalise

NONE = "none"
N_PER_VALUE = 100  # the paper samples 100 pairs per value
N_DISTRACTORS = 3  # 4 labels shown: the target and 3 distractors
SEP = " | "  # joins the labels shown with an item
SPLIT = re.compile(r"[|,;\n]")
KEY_COLUMNS = ["item_id", "value", "source", "row_id", "flipped", "labels"]
TEXTS = ["prompt", "chosen", "rejected"]
FILL_COLUMNS = ["chosen_values", "rejected_values", "justification"]
ENCODING = "utf-8-sig"  # a BOM, so that spreadsheet programs read the file as UTF-8
TABLE3_COLUMNS = [
    "value",
    "n_items",
    "n_annotators",
    "precision_union",
    "precision_intersection",
    "n_intersection",
    "jaccard",
    "n_rejected",
    "rejected_union",
]


# --- export -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSettings:
    """What export samples: `n` pairs per target value (all when fewer), each shown with
    `n_distractors` other values of the label pool; `targets` (default: every value)
    limits the values sampled, not the pool; `chosen_only` leaves the rejected response
    out of the sheet."""

    n: int = N_PER_VALUE
    n_distractors: int = N_DISTRACTORS
    seed: int = 0
    targets: Sequence[str] | None = None
    chosen_only: bool = False


def sample_items(
    subsets: pd.DataFrame, values: Sequence[str], settings: ExportSettings = ExportSettings()
) -> pd.DataFrame:
    """Up to settings.n pairs per target value, each with its labels: the target and
    settings.n_distractors other values of `values` (fewer when there are fewer), shuffled.
    Items of all values are shuffled together and numbered item-0001, ...

    Columns: KEY_COLUMNS, prompt, chosen, rejected. Seeded: the same inputs give the same
    items, labels and order.
    """
    pool = [normalise(v) for v in values]
    targets = pool if settings.targets is None else [normalise(v) for v in settings.targets]
    if set(targets) - set(pool):
        raise ValueError(f"target values {sorted(set(targets) - set(pool))} are not in {pool}")
    rng = np.random.default_rng(settings.seed)
    rows = []
    for value in targets:
        pairs = subsets[subsets["value"].map(normalise) == value]
        pairs = pairs.sort_values(["source", "row_id"], kind="stable")
        take = rng.choice(len(pairs), size=min(settings.n, len(pairs)), replace=False)
        others = [v for v in pool if v != value]
        for i in sorted(take):
            k = min(settings.n_distractors, len(others))
            picked = rng.choice(len(others), size=k, replace=False)
            labels = [value, *(others[j] for j in picked)]
            r = pairs.iloc[i]
            rows.append(
                {
                    "value": value,
                    "source": r["source"],
                    "row_id": r["row_id"],
                    "flipped": bool(r["flipped"]),
                    "labels": SEP.join(labels[j] for j in rng.permutation(len(labels))),
                    "prompt": r["prompt"],
                    "chosen": r["chosen"],
                    "rejected": r["rejected"],
                }
            )
    out = pd.DataFrame(rows, columns=[c for c in KEY_COLUMNS if c != "item_id"] + TEXTS)
    out = out.iloc[rng.permutation(len(out))].reset_index(drop=True)
    out.insert(0, "item_id", [f"item-{i + 1:04d}" for i in range(len(out))])
    return out


def sheet_frame(items: pd.DataFrame, chosen_only: bool = False) -> pd.DataFrame:
    """The annotators' sheet of `items` (sample_items): the texts, the labels shown, and
    empty columns to fill."""
    texts = ["prompt", "chosen"] if chosen_only else TEXTS
    fill = [c for c in FILL_COLUMNS if not (chosen_only and c == "rejected_values")]
    sheet = items[["item_id", *texts, "labels"]].copy()
    for c in fill:
        sheet[c] = ""
    return sheet


def export_sheet(
    subsets: str | Path | pd.DataFrame,
    values: Sequence[str],
    sheet_out: str | Path,
    key_out: str | Path,
    settings: ExportSettings = ExportSettings(),
) -> pd.DataFrame:
    """Sample the items (sample_items) from a subsets table (or its Parquet file), write
    the annotators' sheet and the key as CSV, and return the items."""
    pairs = subsets if isinstance(subsets, pd.DataFrame) else pd.read_parquet(subsets)
    items = sample_items(pairs, values, settings)
    sheet = sheet_frame(items, settings.chosen_only)
    for path, df in ((sheet_out, sheet), (key_out, items[KEY_COLUMNS])):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False, encoding=ENCODING)
    return items


# --- import -----------------------------------------------------------------------------


def _read_csv(path: str | Path) -> pd.DataFrame:
    # Everything as text, blanks as "" (not NaN), "none" and "NA" as written.
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding=ENCODING)


def read_key(path: str | Path) -> pd.DataFrame:
    """The key written by export_sheet."""
    key = _read_csv(path)
    missing = [c for c in KEY_COLUMNS if c not in key.columns]
    if missing:
        raise ValueError(f"{path}: not an annotation key (no column {missing[0]!r})")
    if key["item_id"].duplicated().any():
        raise ValueError(f"{path}: item ids repeat")
    return key


def parse_cell(cell: str, allowed: Iterable[str]) -> frozenset[str] | None:
    """The labels written in one cell: None when blank (not annotated), the empty set for
    `none`; every label must be one of `allowed` (the labels shown), else ValueError."""
    if not cell.strip():
        return None
    items = [normalise(x) for x in SPLIT.split(cell)]
    items = [x for x in items if x]
    if items == [NONE]:
        return frozenset()
    allowed = set(allowed)
    unknown = sorted(set(items) - allowed)
    if unknown:
        raise ValueError(
            f"{unknown[0]!r} is not one of the labels shown ({', '.join(sorted(allowed))})"
        )
    return frozenset(items)


def read_sheet(path: str | Path, key: pd.DataFrame) -> pd.DataFrame:
    """One annotator's filled sheet: item_id, chosen (a frozenset of labels) and rejected
    (a frozenset, or None where not annotated), in the key's order. Stops on a sheet whose
    items are not the key's, an unfilled chosen cell or a label that was not shown."""
    sheet = _read_csv(path)
    if "item_id" not in sheet.columns or "chosen_values" not in sheet.columns:
        raise ValueError(f"{path}: not an annotation sheet (item_id, chosen_values)")
    if sorted(sheet["item_id"]) != sorted(key["item_id"]):
        extra = sorted(set(sheet["item_id"]) ^ set(key["item_id"]))[:5]
        raise ValueError(f"{path}: its items are not the key's (e.g. {extra})")
    sheet = sheet.set_index("item_id").loc[list(key["item_id"])]
    shown = dict(zip(key["item_id"], key["labels"], strict=True))
    rows, blank = [], []
    for item, r in sheet.iterrows():
        allowed = [normalise(x) for x in shown[item].split("|")]
        try:
            chosen = parse_cell(r["chosen_values"], allowed)
            rejected = parse_cell(r.get("rejected_values", ""), allowed)
        except ValueError as e:
            raise ValueError(f"{path}: {item}: {e}") from None
        if chosen is None:
            blank.append(str(item))
        rows.append({"item_id": item, "chosen": chosen, "rejected": rejected})
    if blank:
        raise ValueError(
            f"{path}: chosen_values is blank for {len(blank)} item(s) ({', '.join(blank[:5])}); "
            f"write the labels seen, or {NONE!r}"
        )
    return pd.DataFrame(rows)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a ∩ b| / |a ∪ b|; 1 for two empty sets (both saw none of the labels)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def mean_pairwise_jaccard(sets: Sequence[frozenset[str]]) -> float:
    """The mean Jaccard index over every pair of annotators; NaN with fewer than two."""
    pairs = list(itertools.combinations(sets, 2))
    return float(np.mean([jaccard(a, b) for a, b in pairs])) if pairs else float("nan")


def item_scores(key: pd.DataFrame, sheets: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per item (the key's rows): value, n_annotators, in_union, intersects, in_intersection,
    jaccard, and rejected_in_union (None where no annotator did the rejected side)."""
    rows = []
    for i, item in enumerate(key.itertuples(index=False)):
        value = normalise(item.value)
        chosen = [s["chosen"].iat[i] for s in sheets.values()]
        rejected = [s["rejected"].iat[i] for s in sheets.values()]
        rejected = [r for r in rejected if r is not None]
        inter = frozenset.intersection(*chosen) if chosen else frozenset()
        rows.append(
            {
                "item_id": item.item_id,
                "value": value,
                "n_annotators": len(chosen),
                "in_union": value in frozenset().union(*chosen),
                "intersects": bool(inter),
                "in_intersection": value in inter,
                "jaccard": mean_pairwise_jaccard(chosen),
                "rejected_in_union": value in frozenset().union(*rejected) if rejected else None,
            }
        )
    return pd.DataFrame(rows)


def agreement_table(items: pd.DataFrame) -> pd.DataFrame:
    """Table 3 (module docstring) from item_scores, per value, highest union precision
    first (as the paper's table). Shares are fractions."""
    rows = []
    for value, g in items.groupby("value", sort=True):
        inter = g[g["intersects"]]
        rej = g["rejected_in_union"].dropna()
        rows.append(
            {
                "value": value,
                "n_items": len(g),
                "n_annotators": int(g["n_annotators"].max()),
                "precision_union": g["in_union"].mean(),
                "precision_intersection": inter["in_intersection"].mean() if len(inter) else np.nan,
                "n_intersection": len(inter),
                "jaccard": g["jaccard"].mean(),
                "n_rejected": len(rej),
                "rejected_union": rej.astype(bool).mean() if len(rej) else np.nan,
            }
        )
    out = pd.DataFrame(rows, columns=TABLE3_COLUMNS)
    return out.sort_values(["precision_union", "value"], ascending=[False, True], ignore_index=True)


def summary(items: pd.DataFrame, table: pd.DataFrame) -> dict[str, float | int | None]:
    """Table 2's human rows and the overall agreement (module docstring)."""

    def num(x: float) -> float | None:
        return None if pd.isna(x) else float(x)

    inter = items[items["intersects"]]
    return {
        "human_union": num(table["precision_union"].mean()),
        "human_intersection": num(inter["in_intersection"].mean() if len(inter) else np.nan),
        "human_intersection_macro": num(table["precision_intersection"].mean()),
        "empty_intersection_share": num(1 - items["intersects"].mean()),
        "jaccard": num(table["jaccard"].mean()),
        "n_items": len(items),
        "n_values": len(table),
        "n_annotators": int(items["n_annotators"].max()) if len(items) else 0,
    }


def import_sheets(
    key_path: str | Path, sheet_paths: Sequence[str | Path]
) -> tuple[pd.DataFrame, dict[str, float | int | None]]:
    """Table 3 and the summary from the key and every annotator's filled sheet (an
    annotator is named by the sheet's file name)."""
    key = read_key(key_path)
    names = [Path(p).stem for p in sheet_paths]
    if len(set(names)) != len(names):
        raise ValueError(f"two sheets have the same file name: {names}")
    sheets = {name: read_sheet(p, key) for name, p in zip(names, sheet_paths, strict=True)}
    items = item_scores(key, sheets)
    table = agreement_table(items)
    return table, summary(items, table)


# --- command line -----------------------------------------------------------------------


EPILOG = """\
steps:
  1. python -m valueharms.studyb.annotation export --config config/study_b.yaml
     writes results/studyb/annotation/sheet.csv (for the annotators) and sheet.key.csv
     (the targets: keep it from them)
  2. each annotator fills a copy of the sheet: in chosen_values (and rejected_values)
     the labels of the `labels` column they see in that response, separated by |, comma
     or ;, or `none`; the file name names the annotator (e.g. ann1.csv)
  3. python -m valueharms.studyb.annotation import --key results/studyb/annotation/sheet.key.csv \\
         ann1.csv ann2.csv ann3.csv --out table3.csv --summary table2_human.json
     prints Table 3 (per value: precision of the target against the union and the
     intersection of the annotators' labels, mean pairwise Jaccard index) and Table 2's
     human rows

details: docs/study_b.md (Analyses) and the module's docstring
"""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m valueharms.studyb.annotation",
        description=__doc__.split("\n\n")[0].replace("\n", " ")
        + " `export` writes a sheet for annotators and its key; `import` reads the filled "
        "sheets and prints Table 3 (precision and Jaccard agreement per value) and "
        "Table 2's human rows.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="sample N pairs per value into a sheet (CSV) and a key")
    ex.add_argument(
        "--config",
        nargs="+",
        required=True,
        metavar="YAML",
        help="the workflow's config file(s), merged in order as by snakemake --configfile; "
        "they give the values, the seed and where the subsets are",
    )
    ex.add_argument("--subsets", help="subsets table (default: results/studyb/subsets.parquet)")
    ex.add_argument("--n", type=int, default=N_PER_VALUE, help="pairs per value (default 100)")
    ex.add_argument(
        "--distractors",
        type=int,
        default=N_DISTRACTORS,
        help="other values shown beside the target (default 3: 4 labels, as in the paper)",
    )
    ex.add_argument("--seed", type=int, help="sampling seed (default: studyb.seed)")
    ex.add_argument(
        "--values",
        nargs="+",
        metavar="VALUE",
        help="sample these values only (default: every studyb.values); the distractors "
        "still come from all of them",
    )
    ex.add_argument(
        "--out",
        default="results/studyb/annotation/sheet.csv",
        help="the sheet to give every annotator (default: %(default)s)",
    )
    ex.add_argument("--key", help="the key, kept from annotators (default: <out>.key.csv)")
    ex.add_argument(
        "--chosen-only",
        action="store_true",
        help="show the chosen response only, as the paper did (default: both responses)",
    )
    im = sub.add_parser(
        "import",
        help="compute Table 3 from filled sheets",
        description="Each filled sheet is one annotator (named by its file name). Fill "
        "chosen_values (and rejected_values) with the shown labels seen, separated by |, "
        "comma or ;, or write none.",
    )
    im.add_argument("sheets", nargs="+", metavar="SHEET", help="filled sheets, one per annotator")
    im.add_argument("--key", required=True, help="the key written by export")
    im.add_argument("--out", help="write Table 3 here (CSV, fractions)")
    im.add_argument("--summary", help="write the summary here (JSON)")
    return ap


def _export(args: argparse.Namespace) -> None:
    from valueharms.config import deep_merge, load_yaml, validate
    from valueharms.studyb import plan as sbplan

    cfg: dict = {}
    for path in args.config:
        cfg = deep_merge(cfg, load_yaml(path))
    cfg = validate(cfg)
    subsets = args.subsets or f"{sbplan.RESULTS}/subsets.parquet"
    key = args.key or str(Path(args.out).with_suffix(".key.csv"))
    seed = cfg["studyb"]["seed"] if args.seed is None else args.seed
    values = list(sbplan.values(cfg).values())
    settings = ExportSettings(args.n, args.distractors, seed, args.values, args.chosen_only)
    items = export_sheet(subsets, values, args.out, key, settings)
    targets = [normalise(v) for v in settings.targets or values]
    counts = items["value"].value_counts().reindex(targets, fill_value=0)
    print(f"{len(items)} items ({', '.join(f'{v} {n}' for v, n in counts.items())})")
    print(f"sheet: {args.out}\nkey:   {key}")


def _import(args: argparse.Namespace) -> None:
    table, summ = import_sheets(args.key, args.sheets)
    shown = table.assign(
        **{c: (100 * table[c]).round(1) for c in ("precision_union", "precision_intersection")},
        jaccard=table["jaccard"].round(2),
    )
    print("Table 3: precision (percent) and mean Jaccard index amongst annotators")
    print(shown.drop(columns=["n_rejected", "rejected_union"]).to_string(index=False))
    print(json.dumps(summ, indent=2))
    if args.out:
        table.to_csv(args.out, index=False)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summ, indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        (_export if args.command == "export" else _import)(args)
    except (OSError, ValueError) as e:
        print(f"valueharms.studyb.annotation: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
