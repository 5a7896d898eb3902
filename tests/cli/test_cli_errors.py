"""The command line's error policy (library messages and warnings name parameters, which each command spells
with its own flags; root-level parse errors are one line too) and its conventions: --version, choices in
--help, shell completion."""

from __future__ import annotations

import ast
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from blurlatent import __version__
from blurlatent.cli import app
from blurlatent.cli.errors import FlagNamesHandler, OneLineCommand, command_names
from blurlatent.config import Amp, Intensity, Log, Normalization, OutDtype, Precision, Reg, TestCrops, choices
from blurlatent.errors import FIELD, Message, RuntimeFailure, UsageError, one_line

PACKAGE = Path(__file__).resolve().parents[2] / "blurlatent"
ERRORS = {"UsageError", "RuntimeFailure", "FidUnavailable", "Message"}  # what takes a template and its parameters


def test_a_library_error_says_parameters_in_its_words_and_renders_them_as_the_caller_spells_them():
    exc = UsageError("{tile} 8 is too small: use {tile} 0 for whole images; pass {force=True}, {z=P1 P2} or "
                     "{prepare:planes} 0:16:2; {other} and {} stay", "tile", "force", "z", "prepare:planes")
    assert str(exc) == ("tile 8 is too small: use tile 0 for whole images; pass force=True, z=P1 P2 or planes 0:16:2; "
                        "{other} and {} stay")
    names = {"tile": "--tile", "force": "--force", "z": "--z", "prepare:planes": "--planes"}
    assert exc.render(names) == ("--tile 8 is too small: use --tile 0 for whole images; pass --force, --z P1 P2 or "
                                 "--planes 0:16:2; {other} and {} stay")
    assert exc.render({"tile": "--tile"}).startswith("--tile 8") and "pass force=True" in exc.render({"tile": "--tile"})
    assert isinstance(exc, ValueError) and one_line(exc, names) == exc.render(names)
    failure = RuntimeFailure("non-finite loss; lower {optim.lr}", "optim.lr")
    assert str(failure) == "non-finite loss; lower optim.lr" and failure.render({"optim.lr": "--lr"}).endswith("--lr")


@pytest.mark.parametrize("args, line", [
    (["blur", "--tile", "-1", "-o", "x.tif"], "error: --tile -1: give a tile size in pixels"),
    (["deblur", "--batch-size", "0", "-o", "x.tif"], "error: --batch-size 0: must be at least 1"),
    (["train", "--gpus", "0", "--out", "run"], "error: --gpus 0: must be at least 1"),  # train says nproc as --gpus
    (["train", "--nproc", "0", "--out", "run"], "error: --nproc 0: must be at least 1"),
    (["synth", "out", "--wavelength", "2"], "error: --wavelength 2.0: the emission wavelength"),  # Optics' µm name
])
def test_the_command_line_spells_library_parameters_with_its_own_flags(args, line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and res.output.startswith(line), res.output
    assert not any(tmp_path.iterdir())


def test_warnings_are_shown_with_flags_but_the_record_is_left_alone():
    console = Console(record=True, width=200)
    handler = FlagNamesHandler({"out_dtype": "--out-dtype"}, console=console, show_path=False, show_time=False)
    record = logging.LogRecord("blurlatent.intensity", logging.WARNING, __file__, 1,
                               Message("12 pixels clipped; pass {out_dtype=float32} to keep them", "out_dtype"), (),
                               None)
    handler.emit(record)
    shown = console.export_text()
    assert "12 pixels clipped; pass --out-dtype float32 to keep them" in shown
    # other handlers (log files, pytest's caplog) still see the library's own words
    assert record.getMessage() == "12 pixels clipped; pass out_dtype=float32 to keep them"


def library_messages():
    """(where, template text, declared names, whether names are given dynamically) of every error and logged
    ``Message`` in the package whose template is a literal or an f-string (its values stand in as ``0``)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            name = getattr(node, "func", None) and getattr(node.func, "id", getattr(node.func, "attr", None))
            if not (isinstance(node, ast.Call) and name in ERRORS and node.args):
                continue
            template = node.args[0]
            if isinstance(template, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "0" for v in template.values)
            elif isinstance(template, ast.Constant) and isinstance(template.value, str):
                text = template.value
                assert "{{" not in text, f"{path.name}:{node.lineno}: doubled braces in a plain (not f-) string"
            else:
                continue
            declared = [a.value for a in node.args[1:] if isinstance(a, ast.Constant)]
            dynamic = len(declared) < len(node.args) - 1
            found.append((f"{path.relative_to(PACKAGE)}:{node.lineno}", text, declared, dynamic))
    return found


def test_every_parameter_a_library_message_names_is_declared_and_is_a_flag_of_some_command():
    """A template's ``{name}`` fields are the parameters its error declares (an undeclared one would print with
    its braces), and each is an option of a command, as that command or another spells it (``prepare:planes``):
    a reworded or misspelt parameter fails here instead of silently naming a wrong flag."""
    group = typer.main.get_command(app)
    known = set()
    for command in group.commands.values():
        for params in ({}, {"gpus": 2}):  # train's table depends on whether --gpus was given
            known |= set(command_names(command, params, group.commands))
    messages = library_messages()
    assert len(messages) > 100  # the scan sees the package's errors
    undeclared, unknown = [], []
    for where, text, declared, dynamic in messages:
        fields = {match[1] for match in FIELD.finditer(text)}
        if not dynamic and fields - set(declared):
            undeclared.append(f"{where} {sorted(fields - set(declared))}")
        unknown += [f"{where} {name}" for name in {*declared, *(fields & set(declared))} if name not in known]
    assert not undeclared, undeclared
    assert not unknown, f"parameters no command has: {unknown}"


def test_every_command_prints_its_errors_as_one_line():
    assert all(isinstance(c, OneLineCommand) for c in typer.main.get_command(app).commands.values())


def test_debug_shows_the_traceback_instead(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["--debug", "blur", "--tile", "-1", "-o", "x.tif"])
    assert isinstance(res.exception, UsageError) and "error:" not in res.output
    res = CliRunner().invoke(app, ["blur", "--tile", "-1", "-o", "x.tif"])  # --debug does not outlive its call
    assert res.exit_code == 2 and res.output.startswith("error: --tile -1")


def test_a_plain_value_error_from_our_code_is_a_bug_exit_1(tmp_path, monkeypatch):
    """errors.py: UsageError exits 2; a plain ValueError is an internal error, exit 1 (the old docstrings said 2)."""
    from blurlatent.inference import alphas

    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(alphas, "blur_alphas", broken)
    monkeypatch.chdir(tmp_path)
    for name in ("x.tif", "y.tif"):  # the inputs exist: their paths are checked first
        (tmp_path / name).write_bytes(b"")
    res = CliRunner().invoke(app, ["blur", "x.tif", "y.tif", "-c", "x.pt", "--alpha", "0.5", "-o", "o.tif"])
    assert res.exit_code == 1 and res.output.startswith("internal error: ValueError: a bug"), res.output


def test_napari_imports_no_command_line_module():
    code = ("import sys, blurlatent.napari.jobs; "
            "print(sorted(m for m in sys.modules if m.startswith('blurlatent.cli')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("args, words", [
    (["nonsense"], "No such command 'nonsense'"),
    (["--bogus"], "No such option: --bogus"),
    (["-v", "--bogus", "train"], "No such option: --bogus"),
    (["--debug"], "Missing command"),
    (["train", "--bogus"], "No such option: --bogus"),
])
def test_root_and_command_parse_errors_are_one_line_exit_2(args, words):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0] and "--help)" in lines[0]


def test_version():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output == f"blurlatent {__version__}\n"


# every option with fixed choices, and the config Literal it lists
CHOICES = [("train", "--reg", Reg), ("train", "--amp", Amp), ("train", "--log", Log),
           ("prepare", "--normalize", Normalization), ("prepare", "--test-crops", TestCrops),
           ("blur", "--intensity", Intensity), ("deblur", "--precision", Precision),
           ("deblur", "--out-dtype", OutDtype),
           ("export", "--task", ("deblur", "blur"))]


@pytest.mark.parametrize("command, flag, option", CHOICES, ids=[f"{c} {f}" for c, f, _ in CHOICES])
def test_fixed_choices_are_listed_in_help_and_enforced(command, flag, option):
    values = option if isinstance(option, tuple) else choices(option)
    res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "250"})
    assert f"<{'|'.join(values)}>" in res.output
    res = CliRunner().invoke(app, [command, flag, "nonsense"])
    assert res.exit_code == 2 and flag in res.output and len(res.output.strip().splitlines()) == 1


def test_shell_completion_is_on(monkeypatch):
    # typer's switch for tests: take the shell from the argument instead of detecting the parent shell (CI runs
    # under no shell at all, where detection fails with "Shell  not supported")
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    res = CliRunner().invoke(app, ["--show-completion", "bash"])
    assert res.exit_code == 0, (res.output, repr(res.exception))
    assert "complete " in res.output and "_COMPLETE=complete_bash" in res.output
    assert "--install-completion" in CliRunner().invoke(app, ["--help"]).output
