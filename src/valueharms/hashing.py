"""Content hashes: the identities behind model revisions, cache keys and rule params."""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_dir(path: str | os.PathLike[str], exclude: tuple[str, ...] = ()) -> str:
    """Hash every file below `path` (relative name + content), in sorted order."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix()
        if rel in exclude or any(part.startswith(".") for part in f.relative_to(root).parts):
            continue
        h.update(rel.encode() + b"\0" + sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a canonical JSON encoding: key order and whitespace do not matter."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return sha256_text(blob)


def code_hash(*roots: str, base: str | os.PathLike[str] = ".", package: Path | None = None) -> str:
    """Hash of the import closure of `roots` (16 hex digits): a rule's `code` param.

    A root is a script path (relative to `base`) or a dotted module name of the package
    ("valueharms.io"). Every package module the roots import, directly or not, counts,
    with its normalised source: editing code a step runs reruns that step, and nothing
    else; comments, docstrings and formatting rerun nothing. Cached per process: call
    `clear_code_cache` after editing files in a running process.
    """
    pkg = (package or _PACKAGE_DIR).resolve()
    return _closure_digest(tuple(sorted(set(roots))), str(Path(base).resolve()), pkg)


def import_closure(
    *roots: str, base: str | os.PathLike[str] = ".", package: Path | None = None
) -> dict[str, Path]:
    """{label: file} of the roots and every package file they import, directly or not.

    Labels are location-free: a script's root as given, a package file's path from the
    package's parent ("valueharms/io.py"), so a workflow copy hashes the same. Beside the
    modules: the package `__init__.py` files on their way, and the data files of every
    package reached (report/templates/index.html), which its code reads.
    """
    pkg = (package or _PACKAGE_DIR).resolve()
    return dict(_closure(tuple(sorted(set(roots))), str(Path(base).resolve()), pkg))


def clear_code_cache() -> None:
    """Forget every cached parse and closure (for files edited within one process)."""
    for f in (_closure, _closure_digest, _module_files, _parsed, _discovers_modules):
        f.cache_clear()


_PACKAGE_DIR = Path(__file__).resolve().parent  # the package actually imported


@functools.cache
def _closure_digest(roots: tuple[str, ...], base: str, pkg: Path) -> str:
    h = hashlib.sha256()
    for label, path in _closure(roots, base, pkg):
        digest = _parsed(path)[0] if path.suffix == ".py" else sha256_file(path)
        h.update(label.encode() + b"\0" + digest.encode() + b"\n")
    return h.hexdigest()[:16]


@functools.cache
def _closure(roots: tuple[str, ...], base: str, pkg: Path) -> tuple[tuple[str, Path], ...]:
    files: dict[str, Path] = {}
    todo: list[tuple[str, Path, str | None]] = []  # (label, file, module name)
    for root in roots:
        if root.endswith(".py") or "/" in root:
            path = Path(base, root)
            if not path.is_file():
                raise FileNotFoundError(f"code_hash: no script {path}")
            todo.append((root, path, None))
        else:
            found = _module_files(root, pkg)
            if not found:
                raise ModuleNotFoundError(f"code_hash: no module {root} in {pkg}")
            todo.extend(found)
    while todo:
        label, path, name = todo.pop()
        if label in files:
            continue
        files[label] = path
        if path.suffix != ".py":
            continue
        for mod in _parsed(path)[1]:
            for target in _resolve(mod, name, path, pkg):
                todo.extend(_module_files(target, pkg))
        if name and path.name == "__init__.py" and _discovers_modules(path):
            # A registry package imports its modules by listing itself (the benchmarks):
            # every module in it is part of what importing it runs.
            for sub in sorted(path.parent.glob("*.py")):
                if sub.name != "__init__.py":
                    todo.extend(_module_files(f"{name}.{sub.stem}", pkg))
    return tuple(sorted(files.items()))


@functools.cache
def _module_files(name: str, pkg: Path) -> tuple[tuple[str, Path, str | None], ...]:
    """The files importing `name` executes: each package's __init__.py on the way, the
    module's own file, and a package's data files; empty when `name` is no module."""
    parts = name.split(".")
    if parts[0] != pkg.name:
        return ()
    out: list[tuple[str, Path, str | None]] = []
    for i in range(1, len(parts) + 1):
        here = pkg.joinpath(*parts[1:i])
        if (here / "__init__.py").is_file():
            out.append(
                (_label(here / "__init__.py", pkg), here / "__init__.py", ".".join(parts[:i]))
            )
            out.extend((_label(f, pkg), f, None) for f in _data_files(here))
        elif i == len(parts) and here.with_suffix(".py").is_file():
            out.append((_label(here.with_suffix(".py"), pkg), here.with_suffix(".py"), name))
        else:
            return ()
    return tuple(out)


def _data_files(package_dir: Path) -> list[Path]:
    """Non-Python files of a package, outside its subpackages (templates and the like)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(package_dir):
        here = Path(dirpath)
        dirnames[:] = [
            d
            for d in dirnames
            if not d.startswith(".")
            and d != "__pycache__"
            and not (here / d / "__init__.py").exists()
        ]
        out += [
            here / f
            for f in filenames
            if not f.startswith(".") and not f.endswith((".py", ".pyc", "~"))
        ]
    return sorted(out)


def _label(path: Path, pkg: Path) -> str:
    return path.relative_to(pkg.parent).as_posix()


def _resolve(
    mod: tuple[int, str, tuple[str, ...]], name: str | None, path: Path, pkg: Path
) -> list[str]:
    """Absolute module names an import statement may load: the module and, for
    `from m import x`, m.x where x is a submodule (`_module_files` drops the rest)."""
    level, module, names = mod
    if level:
        if name is None:  # a script: relative imports do not reach the package
            return []
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        base = base[: len(base) - (level - 1)]
        module = ".".join([*base, *([module] if module else [])])
    return [module, *(f"{module}.{n}" for n in names if n != "*")]


@functools.cache
def _discovers_modules(init: Path) -> bool:
    """Whether a package's __init__.py imports its own modules by listing the package."""
    return "iter_modules(__path__)" in init.read_text("utf-8")


Imports = tuple[tuple[int, str, tuple[str, ...]], ...]


@functools.cache
def _parsed(path: Path) -> tuple[str, Imports]:
    """(hash of the normalised source, imports) of one Python file.

    Normalised: the AST without positions, so comments and layout do not count;
    docstrings are dropped too, as nothing in the package reads __doc__. Every Snakemake
    start (each SLURM job, each test run) hashes ~100 files, ~2 s of parsing, so the
    answer is kept on disk under the file's bytes and the Python version (`_AST_CACHE`).
    """
    data = path.read_bytes()
    key = f"{hashlib.sha256(data).hexdigest()}-{sys.version_info[0]}.{sys.version_info[1]}"
    stored = _AST_CACHE / key[:2] / f"{key}.json"
    try:
        digest, imports = json.loads(stored.read_text("utf-8"))
        return digest, tuple((lvl, mod, tuple(names)) for lvl, mod, names in imports)
    except (OSError, ValueError, TypeError):
        pass
    out = _parse(data.decode("utf-8"), path)
    with contextlib.suppress(OSError):  # a read-only home only costs the time
        stored.parent.mkdir(parents=True, exist_ok=True)
        tmp = stored.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(out), encoding="utf-8")
        os.replace(tmp, stored)
    return out


# Where `_parsed` keeps its answers: content-addressed, so shared by every checkout.
_AST_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "valueharms" / "code-ast"
)


def _parse(text: str, path: Path) -> tuple[str, Imports]:
    tree = ast.parse(text, filename=str(path))
    imports: list[tuple[int, str, tuple[str, ...]]] = []
    todo: list[ast.AST] = [tree]
    while todo:  # statements only (imports are statements), function-local ones included
        node = todo.pop()
        if isinstance(node, ast.Import):
            imports += [(0, a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            imports.append((node.level, node.module or "", tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Expr) and (step := _step_module(node.value)):
            imports.append((0, step, ()))  # a script's worker.run("module:function", job)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            todo += node.orelse  # typing-only imports never run
            continue
        elif isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    node.body = node.body[1:]
        for field in _BLOCKS:
            todo += getattr(node, field, ())
    return sha256_text(ast.dump(tree)), tuple(imports)


_BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")  # where statements nest
_STEP = re.compile(r"([A-Za-z_][\w.]*):[A-Za-z_]\w*")


def _step_module(expr: ast.expr) -> str | None:
    """The module of `run("module:function", ...)` (valueharms.worker.run, which imports
    it by name): what a script runs, so part of its code."""
    if not (isinstance(expr, ast.Call) and expr.args and isinstance(expr.args[0], ast.Constant)):
        return None
    func = expr.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    m = _STEP.fullmatch(str(expr.args[0].value)) if name == "run" else None
    return m.group(1) if m else None


def _is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`."""
    if isinstance(test, ast.Attribute):
        return test.attr == "TYPE_CHECKING"
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
