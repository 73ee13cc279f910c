"""Code shape as a test: no library function takes more than 8 parameters, none is
longer than 80 lines (issue: scripts pass one typed job record, valueharms.job.Job)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "valueharms"
MAX_PARAMS = 8
MAX_LINES = 80
EXCLUDED: tuple[str, ...] = ()


def _n_params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Parameters, not counting a method's self or cls; *args and **kwargs count one each."""
    a = fn.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    n = len(names) - (1 if names[:1] in (["self"], ["cls"]) else 0)
    return n + (a.vararg is not None) + (a.kwarg is not None)


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] in EXCLUDED:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append((f"{rel}:{node.lineno} {node.name}", node))
    return found


def test_the_scan_sees_the_library() -> None:
    names = {where.split()[-1] for where, _ in _functions()}
    assert {"from_snakemake", "train_lora", "make_backend"} <= names


def test_no_function_takes_more_than_8_parameters() -> None:
    over = [f"{where} ({n})" for where, fn in _functions() if (n := _n_params(fn)) > MAX_PARAMS]
    assert not over, f"more than {MAX_PARAMS} parameters:\n" + "\n".join(over)


def test_no_function_is_longer_than_80_lines() -> None:
    over = [
        f"{where} ({n} lines)"
        for where, fn in _functions()
        if (n := (fn.end_lineno or fn.lineno) - fn.lineno + 1) > MAX_LINES
    ]
    assert not over, f"longer than {MAX_LINES} lines:\n" + "\n".join(over)
