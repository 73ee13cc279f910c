"""Atomic, schema-checked writes and content hashes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from valueharms import io
from valueharms.hashing import sha256_dir, sha256_json, sha256_text
from valueharms.io import SchemaError, read_json, read_table, write_json, write_table, write_text

SCHEMA = pa.schema(
    [
        pa.field("name", pa.string(), nullable=False),
        pa.field("n", pa.int64()),
        pa.field("score", pa.float64()),
        pa.field("ok", pa.bool_()),
    ]
)


def good() -> pd.DataFrame:
    return pd.DataFrame(
        {"name": ["a", "b"], "n": [1, 2], "score": [0.5, float("nan")], "ok": [True, False]}
    )


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_write_then_read_table_round_trips(tmp_path: Path, umask_022) -> None:
    path = tmp_path / "sub" / "t.parquet"
    write_table(path, good()[["ok", "score", "n", "name"]], SCHEMA)  # column order is fixed
    back = read_table(path, SCHEMA)
    assert list(back.columns) == ["name", "n", "score", "ok"]
    assert back["name"].tolist() == ["a", "b"]
    assert back["n"].tolist() == [1, 2]
    assert back["score"].iloc[0] == 0.5 and pd.isna(back["score"].iloc[1])
    assert back["ok"].tolist() == [True, False]
    assert pq.read_schema(path).field("name").nullable is False
    assert os.listdir(path.parent) == ["t.parquet"]


def _bad_tables() -> list[tuple[str, pd.DataFrame]]:
    extra = good().assign(extra=[1, 2])
    missing = good().drop(columns=["score"])
    wrong_int = good().assign(n=["one", "two"])
    fractional = good().assign(n=[1.5, 2.0])
    wrong_str = good().assign(name=[1, 2])
    null_required = good().assign(name=["a", None])
    return [
        ("unexpected=['extra']", extra),
        ("missing=['score']", missing),
        ("does not fit", wrong_int),
        ("does not fit", fractional),
        ("does not fit", wrong_str),
        ("non-nullable", null_required),
    ]


@pytest.mark.parametrize(("message", "df"), _bad_tables())
def test_write_table_rejects_a_table_off_schema_and_writes_nothing(
    tmp_path: Path, message: str, df: pd.DataFrame
) -> None:
    path = tmp_path / "t.parquet"
    with pytest.raises(SchemaError) as err:
        write_table(path, df, SCHEMA)
    assert message in str(err.value)
    assert os.listdir(tmp_path) == []  # neither the table nor a temp file


@pytest.mark.parametrize("values", [[True, False], ["7", "8"]])
def test_write_table_rejects_bools_and_strings_in_an_int_column(
    tmp_path: Path, values: list
) -> None:
    with pytest.raises(SchemaError):
        write_table(tmp_path / "t.parquet", good().assign(n=values), SCHEMA)


def test_existing_file_survives_a_failed_write(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "t.parquet"
    write_table(path, good(), SCHEMA)
    before = path.read_bytes()

    def crash(table, where):
        Path(where).write_bytes(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(io.pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        write_table(path, good().assign(n=[7, 8]), SCHEMA)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["t.parquet"]
    assert read_table(path, SCHEMA)["n"].tolist() == [1, 2]


def test_written_files_get_umask_permissions_not_0600(tmp_path: Path, umask_022) -> None:
    write_table(tmp_path / "t.parquet", good(), SCHEMA)
    write_text(tmp_path / "t.txt", "x")
    for name in ("t.parquet", "t.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644


def test_read_table_rejects_a_different_schema(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    write_table(path, good(), SCHEMA)
    other = pa.schema([f if f.name != "n" else pa.field("n", pa.float64()) for f in SCHEMA])
    with pytest.raises(SchemaError, match="declared"):
        read_table(path, other)
    assert read_table(path)["n"].tolist() == [1, 2]  # without a schema it just reads


def test_write_json_is_sorted_and_readable(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b.json"
    write_json(path, {"b": 1, "a": [1, 2], "p": Path("x/y")})
    assert read_json(path) == {"a": [1, 2], "b": 1, "p": "x/y"}
    text = path.read_text(encoding="utf-8")
    assert text.index('"a"') < text.index('"b"') and text.endswith("}\n")


def test_sha256_text_and_json() -> None:
    assert sha256_text("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert sha256_json({"a": 1, "b": [1, 2]}) == sha256_json({"b": [1, 2], "a": 1})
    assert sha256_json({"a": 1}) == sha256_text('{"a":1}')
    assert sha256_json({"a": 1}) != sha256_json({"a": 1.5})
    assert sha256_json([1, 2]) != sha256_json([2, 1])


def test_sha256_dir_depends_on_names_and_contents_not_hidden_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("1")
    (tmp_path / "sub" / "b.txt").write_text("2")
    first = sha256_dir(tmp_path)
    (tmp_path / ".hidden").write_text("ignored")
    (tmp_path / "sub" / ".tmp").write_text("ignored")
    assert sha256_dir(tmp_path) == first
    (tmp_path / "log.json").write_text(json.dumps({"seconds": 1}))
    assert sha256_dir(tmp_path) != first
    assert sha256_dir(tmp_path, exclude=("log.json",)) == first
    (tmp_path / "sub" / "b.txt").write_text("3")
    assert sha256_dir(tmp_path, exclude=("log.json",)) != first
    (tmp_path / "sub" / "b.txt").write_text("2")
    (tmp_path / "sub" / "b.txt").rename(tmp_path / "sub" / "c.txt")
    assert sha256_dir(tmp_path, exclude=("log.json",)) != first
