"""Atomic, schema-checked writes and reads.

Every table the pipeline writes goes through `write_table`, so a crash never leaves a
half-written file behind and a table never drifts from its declared schema.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


class SchemaError(ValueError):
    """A table does not match its declared schema."""


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def jsonl_objects(lines: Iterable[str]) -> list[dict[str, Any] | None]:
    """One entry per non-blank line: its JSON object, or None where it is not one.

    Loaders count the None entries as malformed rows instead of dropping them silently.
    """
    out: list[dict[str, Any] | None] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
        out.append(obj if isinstance(obj, dict) else None)
    return out


def conform(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Convert `df` to an Arrow table with exactly `schema`'s columns and types."""
    missing = [n for n in schema.names if n not in df.columns]
    extra = [c for c in df.columns if c not in schema.names]
    if missing or extra:
        raise SchemaError(f"columns differ from schema: missing={missing} unexpected={extra}")
    for field in schema:
        kind = df[field.name].dtype.kind
        # Arrow would quietly cast bools and numeric strings into number columns.
        if len(df) and (
            (pa.types.is_integer(field.type) and kind not in "iu")
            or (pa.types.is_floating(field.type) and kind not in "fiu")
            or (pa.types.is_boolean(field.type) and kind != "b")
        ):
            raise SchemaError(
                f"table does not fit schema: column '{field.name}' has dtype "
                f"{df[field.name].dtype}, schema wants {field.type}"
            )
    try:
        return pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as err:
        raise SchemaError(f"table does not fit schema: {err}") from err


def write_table(path: str | os.PathLike[str], df: pd.DataFrame, schema: pa.Schema) -> None:
    """Check `df` against `schema` and write it as Parquet, atomically."""
    table = conform(df, schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | os.PathLike[str], schema: pa.Schema | None = None) -> pd.DataFrame:
    """Read a Parquet table; with `schema`, fail unless it matches."""
    table = pq.read_table(path)
    if schema is not None and not table.schema.remove_metadata().equals(schema):
        raise SchemaError(f"{path}: schema {table.schema} != declared {schema}")
    return table.to_pandas()


def split_rows(
    src: str | os.PathLike[str],
    schema: pa.Schema,
    model_id: str,
    condition: str,
    out: str | os.PathLike[str],
) -> int:
    """Write the rows of one subject (model_id, condition) of a group's table to `out`.

    A group job writes one table for all its subjects; this cuts out the per-subject file
    that later stages read. Returns the number of rows.
    """
    df = read_table(src, schema)
    rows = df[(df["model_id"] == model_id) & (df["condition"] == condition)]
    write_table(out, rows.reset_index(drop=True), schema)
    return len(rows)
