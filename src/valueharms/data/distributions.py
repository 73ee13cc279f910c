"""Study A target value distributions (METHODS A1): 14 extremes + 140 ESS neighbours.

Everything here is a pure function of its inputs so Snakemake can cache the tables.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from valueharms import VALUES
from valueharms.data.sources import DataError, check_rows, require_columns, require_file

SHORT_NAMES: dict[str, str] = {
    "Achievement": "Ach",
    "Benevolence": "Ben",
    "Conformity": "Con",
    "Hedonism": "Hed",
    "Power": "Pow",
    "Security": "Sec",
    "Self-direction": "SD",
    "Stimulation": "Sti",
    "Tradition": "Tra",
    "Universalism": "Uni",
}

# Study A's table puts Hedonism in Self-Enhancement; callers may pass another grouping.
DEFAULT_GROUPS: dict[str, list[str]] = {
    "Openness_to_Change": ["Self-direction", "Stimulation"],
    "Self-Enhancement": ["Achievement", "Hedonism", "Power"],
    "Conservation": ["Security", "Conformity", "Tradition"],
    "Self-Transcendence": ["Benevolence", "Universalism"],
}

# Standard ESS human-values scoring key (PVQ-21, ESS round suffix "a"). Checked against
# the published ess_distribution.csv, which is the unreversed mean of exactly these items.
ESS_ITEMS: dict[str, list[str]] = {
    "Achievement": ["ipshabta", "ipsucesa"],
    "Benevolence": ["iphlppla", "iplylfra"],
    "Conformity": ["ipfrulea", "ipbhprpa"],
    "Hedonism": ["ipgdtima", "impfuna"],
    "Power": ["impricha", "iprspota"],
    "Security": ["impsafea", "ipstrgva"],
    "Self-direction": ["ipcrtiva", "impfreea"],
    "Stimulation": ["impdiffa", "ipadvnta"],
    "Tradition": ["ipmodsta", "imptrada"],
    "Universalism": ["ipeqopta", "ipudrsta", "impenva"],
}

ESS_VALID_CODES: tuple[int, ...] = (1, 2, 3, 4, 5, 6)

KINDS = ("extreme", "realistic", "custom")

DISTRIBUTIONS_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("name", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("anchor", pa.string(), nullable=False),
        pa.field("rank", pa.int64(), nullable=False),
        pa.field("distance", pa.float64(), nullable=False),
        pa.field("respondent_id", pa.string()),
        *[pa.field(v, pa.float64(), nullable=False) for v in VALUES],
    ]
)

ESS_SCORES_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("respondent_id", pa.string(), nullable=False),
        *[pa.field(v, pa.float64(), nullable=False) for v in VALUES],
    ]
)

_META_COLUMNS = ["name", "kind", "anchor", "rank", "distance", "respondent_id"]


def _check_values(names: Sequence[str], what: str) -> None:
    unknown = [n for n in names if n not in VALUES]
    if unknown:
        raise ValueError(f"{what}: unknown Schwartz values {unknown}")


def extreme_distributions(
    groups: Mapping[str, Sequence[str]] = DEFAULT_GROUPS,
    high: float = 6.0,
    low: float = 1.0,
) -> pd.DataFrame:
    """One row per value (that value `high`, rest `low`), then one per higher-order group."""
    targets: list[tuple[str, set[str]]] = [(SHORT_NAMES[v], {v}) for v in VALUES]
    for group, members in groups.items():
        _check_values(members, f"group {group}")
        targets.append((group, set(members)))
    rows = [
        {
            "name": name,
            "kind": "extreme",
            "anchor": name,
            "rank": 0,
            "distance": 0.0,
            "respondent_id": None,
            **{v: float(high if v in on else low) for v in VALUES},
        }
        for name, on in targets
    ]
    return pd.DataFrame(rows, columns=[*_META_COLUMNS, *VALUES])


# ESS "missing" codes: 7/8/9 (refusal, don't know, no answer) and their 66/77/88/99 forms.
ESS_MISSING_CODES: tuple[int, ...] = (7, 8, 9, 66, 77, 88, 99)

DROP_BLANK = "item blank or not a number"
DROP_MISSING_CODE = "item holds an ESS missing code (7/8/9/66/77/88/99)"
DROP_OUT_OF_RANGE = "item outside 1-6 and not a missing code"


def read_ess(
    path: str | os.PathLike[str], expected_rows: int | None = None, name: str = "ess"
) -> pd.DataFrame:
    """Read the ESS extract (idno + PVQ-21 items). Items stay numeric; blanks become NaN.

    Stops (DataError naming `datasets.<name>.path`) when the file, idno or an item column
    is absent, or when the row count differs from `expected_rows`.
    """
    require_file(name, path)
    # idno is an identifier, not a number: keep it as text so leading zeros survive.
    df = pd.read_csv(path, dtype={"idno": str})
    items = sorted({c for cs in ESS_ITEMS.values() for c in cs})
    require_columns(name, path, list(df.columns), ["idno", *items])
    check_rows(name, path, len(df), expected_rows)
    return df


def score_ess(
    ess: pd.DataFrame,
    items: Mapping[str, Sequence[str]] = ESS_ITEMS,
    reverse_code: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-respondent value scores: mean of each value's items, reversed to importance.

    Respondents with any missing or out-of-range item are dropped and counted by reason
    (a row with several problems counts once, under the first of: blank, missing code,
    out of range). `reverse_code=False` keeps the raw ESS direction (1 = very much like me)
    and reproduces the published ess_distribution.csv.

    respondent_id is "<row>-<idno>" (row = 0-based data row of the input) because ESS idno
    repeats across countries and is not unique on its own.
    """
    _check_values(list(items), "items")
    missing_values = [v for v in VALUES if v not in items]
    if missing_values:
        raise ValueError(f"items: no scoring key for {missing_values}")
    cols = sorted({c for cs in items.values() for c in cs})
    absent = [c for c in [*cols, "idno"] if c not in ess.columns]
    if absent:
        raise ValueError(f"ESS table lacks columns {absent}")

    raw = ess[cols].apply(pd.to_numeric, errors="coerce").astype("float64")
    valid = raw.isin([float(c) for c in ESS_VALID_CODES]).all(axis=1).to_numpy()
    blank = raw.isna().any(axis=1).to_numpy()
    coded = raw.isin([float(c) for c in ESS_MISSING_CODES]).any(axis=1).to_numpy() & ~blank
    other = ~valid & ~blank & ~coded

    ids = [f"{i}-{idno}" for i, idno in enumerate(ess["idno"].astype(str))]
    kept = raw.loc[valid]
    if reverse_code:
        kept = 7.0 - kept
    scores = pd.DataFrame({v: kept[list(items[v])].mean(axis=1) for v in VALUES})
    scores.insert(0, "respondent_id", [rid for rid, ok in zip(ids, valid, strict=True) if ok])
    scores = scores.reset_index(drop=True)
    dropped = {
        DROP_BLANK: int(blank.sum()),
        DROP_MISSING_CODE: int(coded.sum()),
        DROP_OUT_OF_RANGE: int(other.sum()),
    }
    counts: dict[str, Any] = {
        "n_in": len(ess),
        "n_dropped_invalid": int((~valid).sum()),
        "n_out": len(scores),
        "dropped": {k: n for k, n in dropped.items() if n},
    }
    return scores, counts


def realistic_name(anchor: str, rank: int) -> str:
    """`close_<anchor>` for the nearest respondent, `close_<anchor>_<rank>` after it."""
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    return f"close_{anchor}" if rank == 1 else f"close_{anchor}_{rank}"


def _js_distances(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Vectorised scipy.spatial.distance.jensenshannon(p, q_i) for every row q_i of q."""
    from scipy.special import rel_entr  # scipy here: the workflow's parse imports this module

    p = p / p.sum()
    q = q / q.sum(axis=1, keepdims=True)
    m = (p + q) / 2.0
    js = (rel_entr(p, m).sum(axis=1) + rel_entr(q, m).sum(axis=1)) / 2.0
    return np.sqrt(js)


def realistic_distributions(
    anchors: pd.DataFrame, scores: pd.DataFrame, k: int = 10
) -> pd.DataFrame:
    """For each anchor, the k respondents nearest by Jensen-Shannon distance.

    Ties are broken by respondent order in `scores` (stable sort). Distances come from
    scipy's `jensenshannon` itself: the vectorised pass only shortlists candidates, so a
    last-bit difference between the two can never reorder neighbours.
    """
    from scipy.spatial.distance import jensenshannon

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(scores) < k:
        raise ValueError(f"need at least k={k} respondents, got {len(scores)}")
    q = scores[list(VALUES)].to_numpy(dtype=np.float64)
    rows: list[dict[str, object]] = []
    for _, anchor in anchors.iterrows():
        p = anchor[list(VALUES)].to_numpy(dtype=np.float64)
        approx = _js_distances(p, q)
        kth = np.sort(approx)[k - 1]
        # Generous slack: anything that could be within the k nearest gets an exact check.
        cand = np.flatnonzero(approx <= kth + 1e-9)
        exact = np.array([jensenshannon(p, q[i]) for i in cand])
        order = cand[np.argsort(exact, kind="stable")][:k]
        exact_by_idx = dict(zip(cand.tolist(), exact.tolist(), strict=True))
        name = str(anchor["name"])
        for rank, i in enumerate(order, start=1):
            resp = scores.iloc[i]
            rows.append(
                {
                    "name": realistic_name(name, rank),
                    "kind": "realistic",
                    "anchor": name,
                    "rank": rank,
                    "distance": float(exact_by_idx[int(i)]),
                    "respondent_id": str(resp["respondent_id"]),
                    **{v: float(resp[v]) for v in VALUES},
                }
            )
    return pd.DataFrame(rows, columns=[*_META_COLUMNS, *VALUES])


def distributions_table(
    scores: pd.DataFrame,
    groups: Mapping[str, Sequence[str]] = DEFAULT_GROUPS,
    k: int = 10,
) -> pd.DataFrame:
    """The full `distributions` table: extremes first, then their realistic neighbours."""
    extremes = extreme_distributions(groups)
    table = pd.concat([extremes, realistic_distributions(extremes, scores, k)], ignore_index=True)
    if not table["name"].is_unique:
        raise ValueError("distribution names are not unique")
    return table


_CLOSE = re.compile(r"^close_(?P<anchor>.+?)(?:_(?P<rank>\d+))?$")


def load_published_table(
    path: str | os.PathLike[str],
    extreme_names: Sequence[str] | None = None,
    name: str = "published_distributions",
) -> pd.DataFrame:
    """A published distributions table (Study A's extreme_distributions.csv layout).

    Layout: a name column (Study A calls it "Country") and the 10 value columns, tab- or
    comma-separated. `close_<anchor>[_<rank>]` rows become realistic (rank 1 when absent)
    with their Jensen-Shannon distance to the anchor row; names in `extreme_names` (default:
    the 14 standard extremes) become extreme; any other row (Study A's reverse_*) custom.
    Respondent ids are unknown (null). Scores must lie in [1, 6].
    """
    from scipy.spatial.distance import jensenshannon

    require_file(name, path)
    with open(path, encoding="utf-8-sig") as fh:
        header = fh.readline()
    raw = pd.read_csv(path, sep="\t" if "\t" in header else ",", encoding="utf-8-sig")
    require_columns(name, path, list(raw.columns), list(VALUES))
    name_col = raw.columns[0]
    if name_col in VALUES:
        raise DataError(f"datasets.{name}.path: {path}: first column must hold the names")
    values = raw[list(VALUES)].apply(pd.to_numeric, errors="coerce")
    bad = values.isna().any(axis=1) | ~values.apply(lambda c: c.between(1, 6)).all(axis=1)
    if bad.any():
        rows = raw.loc[bad, name_col].astype(str).tolist()
        raise DataError(
            f"datasets.{name}.path: {path}: {int(bad.sum())} rows have scores missing or "
            f"outside [1, 6]: {rows[:5]}"
        )
    names = raw[name_col].astype(str).str.strip()
    if not names.is_unique:
        raise DataError(
            f"datasets.{name}.path: {path}: duplicate names {names[names.duplicated()].tolist()}"
        )
    extremes = set(extreme_names) if extreme_names is not None else set(_standard_extremes())
    by_name = {n: values.iloc[i].to_numpy(dtype=np.float64) for i, n in enumerate(names)}
    rows: list[dict[str, object]] = []
    for n in names:
        m = _CLOSE.match(n)
        meta: dict[str, object]
        if m and m["anchor"] in by_name:
            anchor, rank = m["anchor"], int(m["rank"] or 1)
            dist = float(jensenshannon(by_name[anchor], by_name[n]))
            meta = {"kind": "realistic", "anchor": anchor, "rank": rank, "distance": dist}
        elif m:
            raise DataError(f"datasets.{name}.path: {path}: {n}: anchor {m['anchor']} not in table")
        else:
            kind = "extreme" if n in extremes else "custom"
            meta = {"kind": kind, "anchor": n, "rank": 0, "distance": 0.0}
        rows.append(
            {"name": n, **meta, "respondent_id": None, **dict(zip(VALUES, by_name[n], strict=True))}
        )
    return pd.DataFrame(rows, columns=[*_META_COLUMNS, *VALUES])


def _standard_extremes() -> list[str]:
    return [SHORT_NAMES[v] for v in VALUES] + list(DEFAULT_GROUPS)
