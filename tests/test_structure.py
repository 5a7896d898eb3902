"""The package's house rules (issue 10), checked on its source: small modules and functions, no private
names imported across modules, one home for the in-focus plane and for Eq. 2, no torch behind --help."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "blurlatent"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def sources(*folders: str) -> list[Path]:
    """Our .py files; hidden folders skipped (benchmarks/care/.venv is a whole CAREamics environment)."""
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py")
                  if not any(part.startswith(".") for part in p.relative_to(ROOT).parts))


def test_modules_are_small():
    big = {p.name: n for p in sources("blurlatent") if (n := p.read_text().count("\n")) > MAX_MODULE_LINES}
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"


def test_functions_are_small():
    long = []
    for path in sources("blurlatent"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({length} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def private_imports(path: Path) -> list[str]:
    """``from X import _name`` and ``module._name`` uses of a blurlatent module, outside that module."""
    found = []
    tree = ast.parse(path.read_text())
    own_modules = {p.stem for p in PACKAGE.rglob("*.py")} | {p.parent.name for p in PACKAGE.rglob("__init__.py")}
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in {"blurlatent", ""} | own_modules:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno} imports {alias.name}")
                if alias.name in own_modules:
                    aliases[alias.asname or alias.name] = alias.name
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("blurlatent."):
                    aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_private_name_is_imported_across_modules():
    found = [f for p in sources("blurlatent", "tests", "benchmarks", "examples") for f in private_imports(p)]
    assert not found, found


def test_in_focus_plane_and_eq2_are_written_once():
    focus = [p.name for p in sources("blurlatent") if re.search(r"^\s*\w*FOCUS\w*\s*=\s*16\b", p.read_text(), re.M)]
    assert focus == ["bbbc006.py"], focus
    # Eq. 2 by hand: "alpha * z... + (1 - alpha) * z..." anywhere but latent.py
    eq2 = re.compile(r"\balpha\s*\*\s*\w+\s*\+\s*\(\s*1(\.0)?\s*-\s*alpha\s*\)\s*\*")
    by_hand = [p.name for p in sources("blurlatent") if p.name != "latent.py" and eq2.search(p.read_text())]
    assert not by_hand, by_hand


def test_help_imports_no_torch():
    code = "import sys, blurlatent.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_checker_catches_what_it_looks_for(tmp_path):
    """The private-import check is not vacuous: it flags a planted offender."""
    planted = tmp_path / "planted.py"
    planted.write_text("from blurlatent.training.trainer import _run\n"
                       "from blurlatent.inference import predictor as I\nI._private\n")
    assert len(private_imports(planted)) == 2


def test_package_modules_import_each_other_at_the_top():
    """Function-local imports of our own modules hide the dependency graph; only the CLI (whose --help must
    not import torch) and the package's lazy ``__getattr__`` may import inside functions."""
    local = []
    for path in sources("blurlatent"):
        if path.parent.name == "cli" or path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and inner.level > 0:
                        local.append(f"{path.name}:{inner.lineno} from .{inner.module} (in {node.name})")
    assert not local, local


MAX_POSITIONAL = 8


def positional_overflow(path: Path) -> list[str]:
    """Public functions and methods of ``path`` with more than MAX_POSITIONAL positional parameters (self and cls
    not counted; keyword-only options are fine)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            names = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
            if len(names) > MAX_POSITIONAL:
                found.append(f"{path.name}:{node.lineno} {node.name} ({len(names)} positional)")
    return found


def test_library_functions_take_few_positional_parameters(tmp_path):
    """A call with nine positional arguments cannot be read without the signature: past eight, options are
    keyword-only. The CLI's commands are Typer's parameter tables, not calls, and are not counted."""
    found = [f for p in sources("blurlatent") if p.parent.name != "cli" for f in positional_overflow(p)]
    assert not found, found
    planted = tmp_path / "planted.py"
    planted.write_text("def job(a, b, c, d, e, f, g, h, i): ...\ndef ok(a, b, c, d, e, f, g, h, *, i): ...\n"
                       "def _private(a, b, c, d, e, f, g, h, i): ...\n")
    assert positional_overflow(planted) == ["planted.py:1 job (9 positional)"]
