"""Code params: the hash of a script's import closure (valueharms.hashing.code_hash).

Unit tests on a toy package, then the workflow: editing a helper a script reaches only
indirectly reruns exactly the jobs that run it, and comment edits rerun nothing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from paths import ROOT
from test_workflow import job_counts, planned_outputs, smk, workflow_copy

from valueharms.hashing import clear_code_cache, code_hash, import_closure

TOY = {
    "__init__.py": "",
    "a.py": """
        from toypkg.sub import helper


        def run():
            from toypkg.sub import lazy  # a function-local import

            return helper.f() + lazy.g()
        """,
    "sub/__init__.py": "",
    "sub/helper.py": """
        from . import deep  # `from pkg import submodule`, relative


        def f():
            return deep.VALUE
        """,
    "sub/deep.py": """
        '''Reached from the script only through a.py and helper.py.'''

        VALUE = 1


        def scale(x):
            # double it
            return x * 2
        """,
    "sub/lazy.py": """
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from toypkg import typing_only


        def g():
            return 2
        """,
    "typing_only.py": "X = 1\n",
    "unrelated.py": "def h():\n    return 3\n",
    "report/__init__.py": "",
    "report/templates/page.html": "<p>{x}</p>\n",
}
SCRIPT = "from toypkg import a\n\na.run()\n"


@pytest.fixture
def toy(tmp_path: Path) -> Iterator[Path]:
    pkg = tmp_path / "toypkg"
    for rel, text in TOY.items():
        f = pkg / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(text).lstrip("\n"))
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "step.py").write_text(SCRIPT)
    clear_code_cache()
    yield pkg
    clear_code_cache()


def toy_hash(pkg: Path, *roots: str) -> str:
    clear_code_cache()  # the files were edited within this process
    return code_hash(*(roots or ("scripts/step.py",)), base=pkg.parent, package=pkg)


def edit(path: Path, old: str, new: str, count: int = -1) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, count))


def test_closure_follows_indirect_local_and_submodule_imports(toy: Path) -> None:
    closure = import_closure("scripts/step.py", base=toy.parent, package=toy)
    assert sorted(closure) == [
        "scripts/step.py",
        "toypkg/__init__.py",
        "toypkg/a.py",
        "toypkg/sub/__init__.py",
        "toypkg/sub/deep.py",
        "toypkg/sub/helper.py",
        "toypkg/sub/lazy.py",
    ]
    # A dotted root: the module, the packages on its way and what it imports.
    assert sorted(import_closure("toypkg.sub.helper", package=toy)) == [
        "toypkg/__init__.py",
        "toypkg/sub/__init__.py",
        "toypkg/sub/deep.py",
        "toypkg/sub/helper.py",
    ]
    # A package's data files count with the package (templates the code reads).
    assert "toypkg/report/templates/page.html" in import_closure("toypkg.report", package=toy)
    with pytest.raises(ModuleNotFoundError):
        import_closure("toypkg.nope", package=toy)


def test_comment_docstring_and_layout_edits_keep_the_hash(toy: Path) -> None:
    before = toy_hash(toy)
    assert re.fullmatch(r"[0-9a-f]{16}", before)
    deep = toy / "sub" / "deep.py"
    edit(deep, "# double it", "# twice the input, as in the paper")
    edit(deep, "Reached from", "Only reached from")
    edit(deep, "return x * 2", "return (\n        x * 2\n    )  # layout")
    (toy.parent / "scripts" / "step.py").write_text("# the step\n" + SCRIPT + "\n\n")
    assert toy_hash(toy) == before


def test_code_edit_in_an_indirect_import_changes_the_hash(toy: Path) -> None:
    before = toy_hash(toy)
    edit(toy / "sub" / "deep.py", "return x * 2", "return x * 3")
    assert toy_hash(toy) != before


def test_code_edit_behind_a_function_local_import_changes_the_hash(toy: Path) -> None:
    before = toy_hash(toy)
    edit(toy / "sub" / "lazy.py", "return 2", "return 20")
    assert toy_hash(toy) != before


def test_unrelated_and_typing_only_edits_keep_the_hash(toy: Path) -> None:
    before = toy_hash(toy)
    edit(toy / "unrelated.py", "return 3", "return 4")
    edit(toy / "typing_only.py", "X = 1", "X = 2")
    edit(toy / "report" / "templates" / "page.html", "<p>", "<div>")
    assert toy_hash(toy) == before


def test_closure_of_the_real_scripts() -> None:
    """The modules the old by-hand lists missed are in the closures now."""
    gen = import_closure("scripts/generate.py", base=ROOT)
    for f in ("data/vim.py", "data/steps.py", "mitigation.py", "generate.py", "judge/parse.py"):
        assert f"valueharms/{f}" in gen
    # The judge of each Study B benchmark is reached from the judge stage's script.
    judge = import_closure("scripts/judge.py", base=ROOT)
    for f in ("studyb/extract.py", "benchmarks/advbench.py", "benchmarks/anthrobench.py"):
        assert f"valueharms/{f}" in judge
    # Upstream stages do not run generation code.
    for script in ("vim_examples", "train_vim", "prepare_base_model", "benchmark_prompts"):
        assert "valueharms/generate.py" not in import_closure(f"scripts/{script}.py", base=ROOT)


def test_a_registry_package_brings_every_module_it_lists() -> None:
    """valueharms.benchmarks imports its modules by listing itself: the metrics stage's
    closure holds every benchmark module, so editing one reruns its metrics."""
    metrics = import_closure("scripts/metrics.py", base=ROOT)
    found = {Path(k).name for k in metrics if k.startswith("valueharms/benchmarks/")}
    listed = {p.name for p in (ROOT / "src/valueharms/benchmarks").glob("*.py")}
    assert found == listed and "hexphi.py" in found


def rules_by_name() -> dict[str, str]:
    text = "\n".join(p.read_text() for p in sorted((ROOT / "rules").glob("*.smk")))
    starts = list(re.finditer(r"^\s*(?:rule|checkpoint) (\w+):", text, flags=re.M))
    ends = [m.start() for m in starts[1:]] + [len(text)]
    return {m.group(1): text[m.start() : end] for m, end in zip(starts, ends, strict=True)}


def test_every_rule_hashes_the_script_it_runs() -> None:
    """A script rule's code param is its own script's closure (no hand-kept lists)."""
    checked = 0
    for name, body in rules_by_name().items():
        script = re.search(r'script:\s*"\.\./(scripts/[\w.]+\.py)"', body)
        code = re.findall(r"^\s*code=(.*)$", body, flags=re.M)
        if script is None:
            assert not code or "run:" in body, name
            continue
        if name == "fetch_dataset":  # a download: a code edit must not fetch again
            assert not code
            continue
        assert code == [f'code("{script.group(1)}"),'], name
        checked += 1
    assert checked >= 25


@pytest.mark.slow
def test_editing_a_helper_reruns_exactly_the_jobs_that_run_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a workflow copy with its own library on PYTHONPATH (so Snakemake, the hash and
    the scripts all use the copy's src/), mark one benchmark's chain as done, then edit."""
    wf = workflow_copy(tmp_path / "wf")
    shutil.copytree(
        ROOT / "src" / "valueharms",
        wf / "src" / "valueharms",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    lib = wf / "src" / "valueharms"
    monkeypatch.setenv("PYTHONPATH", str(wf / "src"))
    # `script:` jobs run this interpreter with the environment inherited: the copy's code.
    where = subprocess.run(
        [sys.executable, "-c", "import valueharms; print(valueharms.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()) == lib / "__init__.py"

    # Every output of the target's chain as an empty file or folder, then --touch -F:
    # the jobs' metadata (params included) recorded as if each had run.
    target = "results/metrics/hexphi.parquet"
    out = smk(wf, "-n", "-F", "--", target)
    assert out.returncode == 0, out.stderr + out.stdout
    for line in planned_outputs(out.stdout):
        for o in line.split(", "):
            p = wf / o
            if p.suffix:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.touch()
            else:  # the model folders (directory() outputs)
                p.mkdir(parents=True, exist_ok=True)
    out = smk(wf, "--touch", "-F", "--cores", "1", "--", target)
    assert out.returncode == 0, out.stderr + out.stdout

    # A comment, docstring and layout edit in a module every job imports, and a code
    # edit in one no job of the chain imports: nothing to do.
    vim = lib / "data" / "vim.py"
    edit(vim, '"""', '"""Edited docstring. ', 1)
    edit(
        vim, "from __future__ import annotations\n", "from __future__ import annotations\n# a\n", 1
    )
    edit(vim, "import math\n", "import math  # layout\n\n", 1)
    edit(lib / "train" / "throughput.py", "\n\n\ndef ", "\n\nEDITED = 1\n\n\ndef ", 1)
    out = smk(wf, "-n", "--", target)
    assert out.returncode == 0, out.stderr + out.stdout
    assert job_counts(out.stdout) == {}, out.stdout

    # The regard classifier: scripts/judge.py reaches it only through
    # valueharms.judge.steps, which imports it inside a function. Its edit reruns what
    # forcing the rules whose scripts import it (directly or not) reruns: the judge jobs
    # and what follows them.
    regard = "valueharms/judge/regard.py"
    dependent = [
        name
        for name, body in rules_by_name().items()
        if (m := re.search(r'script:\s*"\.\./(scripts/\w+\.py)"', body))
        and regard in import_closure(m.group(1), base=ROOT)
    ]
    assert dependent == ["judge"]
    forced = job_counts(smk(wf, "-n", "-R", "judge", "--", target).stdout)
    assert forced["judge"] >= 1 and "generate" not in forced
    path = wf / "src" / regard
    text = path.read_text()
    assert "        return out\n" in text
    path.write_text(text.replace("        return out\n", "        return list(out)\n", 1))
    out = smk(wf, "-n", "--", target)
    assert out.returncode == 0, out.stderr + out.stdout
    assert job_counts(out.stdout) == forced
    assert "Params have changed since last execution" in out.stdout


def test_parses_are_kept_on_disk_by_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file's (digest, imports) is stored under its bytes: the next process reads it
    instead of parsing; a damaged entry is parsed again; an edit gets a new entry."""
    from valueharms import hashing

    monkeypatch.setattr(hashing, "_AST_CACHE", tmp_path / "cache")
    src = tmp_path / "mod.py"
    src.write_text("import os\nfrom valueharms import io\nX = 1  # a comment\n")
    clear_code_cache()
    first = hashing._parsed(src)
    assert first == hashing._parse(src.read_text(), src)
    (stored,) = (tmp_path / "cache").rglob("*.json")

    stored.write_text('["from-disk", [[0, "os", []]]]')  # proves the next call reads it
    clear_code_cache()
    assert hashing._parsed(src) == ("from-disk", ((0, "os", ()),))

    stored.write_text("not json")
    clear_code_cache()
    assert hashing._parsed(src) == first

    src.write_text("import sys\n")
    clear_code_cache()
    assert hashing._parsed(src)[1] == ((0, "sys", ()),)
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 2
    clear_code_cache()
