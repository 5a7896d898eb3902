"""The floor plan's contracts (issue 27): which subpackage may import which, no import cycle at all (not even
through ``TYPE_CHECKING`` or a function-local import), and every subpackage says what it holds."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "blurlatent"
SUBPACKAGES = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every blurlatent module ``path`` imports, anywhere in the file (top level, functions, TYPE_CHECKING)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("blurlatent"):
            for alias in node.names:  # `from blurlatent.nets import latent` imports the module blurlatent.nets.latent
                sub = f"{node.module}.{alias.name}"
                found.add(sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists() else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("blurlatent"))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.add(f"<relative import in {path.name}>")
    return found


@functools.lru_cache(maxsize=1)
def cached_graph() -> dict[str, frozenset[str]]:
    return {module_name(p): frozenset(imported_modules(p)) for p in PACKAGE.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    return {m: set(i) for m, i in cached_graph().items()}


def test_package_imports_are_absolute():
    relative = {m: sorted(i for i in imps if i.startswith("<")) for m, imps in graph().items()}
    assert not {m: r for m, r in relative.items() if r}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the modules of ``edges`` (a package's ``__init__`` counts as the package), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in edges or nxt == node:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_counting_type_checking_and_local_imports():
    edges = graph()
    # the root's lazy API (__getattr__) and `python -m blurlatent` sit above everything by design
    edges["blurlatent"] = set()
    assert find_cycle(edges) is None, find_cycle(edges)


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def owners(module: str) -> str:
    """The subpackage a module belongs to (``blurlatent.nets.latent`` → ``nets``), or the module's own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "blurlatent"


# Which subpackages each may import (besides itself): the lowest concepts live lowest.
NEVER = {
    "files": {"config", "synth", "prepare", "nets", "training", "inference", "evaluation", "bmz", "cli", "napari",
              "bbbc006", "intensity", "progress", "demo"},
    "nets": {"training", "inference", "evaluation", "bmz", "cli", "napari", "demo"},
    "config": {"synth", "prepare", "nets", "training", "inference", "evaluation", "bmz", "cli", "napari", "demo"},
    "synth": {"prepare", "nets", "training", "inference", "evaluation", "bmz", "cli", "napari", "demo"},
    "prepare": {"nets", "training", "inference", "evaluation", "bmz", "cli", "napari", "demo"},
    "inference": {"training", "evaluation", "bmz", "cli", "napari", "demo"},
    "training": {"evaluation", "bmz", "cli", "napari", "demo"},
    "evaluation": {"training", "bmz", "cli", "napari", "demo"},
    "bmz": {"training", "cli", "napari", "demo"},
}


@pytest.mark.parametrize("sub", sorted(NEVER))
def test_subpackage_imports_only_what_lies_below_it(sub):
    bad = []
    for module, imports in graph().items():
        if owners(module) != sub:
            continue
        for imp in imports:
            target = owners(imp) if imp != "blurlatent" else "blurlatent"
            if target in NEVER[sub] or target.split(".")[-1] in NEVER[sub]:
                bad.append(f"{module} imports {imp}")
    assert not bad, bad


def test_files_imports_only_errors_and_itself():
    bad = [f"{m} imports {i}" for m, imps in graph().items() if owners(m) == "files"
           for i in imps if not (i.startswith("blurlatent.files") or i in ("blurlatent.errors", "blurlatent"))]
    assert not bad, bad


def test_nothing_imports_the_cli_or_napari():
    bad = [f"{m} imports {i}" for m, imps in graph().items() for i in imps
           for top in ("cli", "napari") if owners(i) == top and owners(m) != top and m != "blurlatent.__main__"]
    assert not bad, bad


def test_the_contract_checker_sees_a_planted_offender(tmp_path):
    planted = tmp_path / "offender.py"
    planted.write_text("def f():\n    from blurlatent.cli.errors import console\n"
                       "from typing import TYPE_CHECKING\n"
                       "if TYPE_CHECKING:\n    from blurlatent.training import trainer\n")
    assert imported_modules(planted) == {"blurlatent.cli.errors", "blurlatent.training.trainer"}


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_every_subpackage_has_a_docstring_and_all(sub):
    tree = ast.parse((PACKAGE / sub / "__init__.py").read_text())
    assert ast.get_docstring(tree), f"{sub}/__init__.py: no docstring"
    names = [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
    if sub not in ("cli", "napari"):
        assert "__all__" in names, f"{sub}/__init__.py: no __all__"


def public_definitions() -> dict[str, list[str]]:
    """Module-level public functions and classes of the package, by name → the modules defining them."""
    found: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            defines = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if defines and not node.name.startswith("_"):
                found.setdefault(node.name, []).append(module_name(path))
    return found


def test_every_public_function_and_class_name_is_defined_once():
    """A name means one thing across the package (``blur`` is the API, ``defocus_blur`` the optics'; the
    training ``run_folder`` and inference's ``predict_folder``)."""
    twice = {name: mods for name, mods in public_definitions().items() if len(mods) > 1}
    assert not twice, twice
