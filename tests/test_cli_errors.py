"""The command line's error policy (parameter names in library messages and warnings become flags; root-level
parse errors are one line too) and its conventions: --version, choices in --help, shell completion."""

from __future__ import annotations

import logging

import pytest
from rich.console import Console
from typer.testing import CliRunner

from blurlatent import __version__
from blurlatent.cli import app
from blurlatent.cli.errors import FlagNamesHandler, flag_message
from blurlatent.config import Amp, Intensity, Log, Normalization, OutDtype, Precision, Reg, TestCrops, choices


def test_leading_parameters_and_keyword_fixes_become_flags():
    assert flag_message("tile 8 is too small for this model") == "--tile 8 is too small for this model"
    assert flag_message("x: exists; pass force=True to overwrite it") == "x: exists; pass --force to overwrite it"
    assert flag_message("nproc 64: no CUDA GPU", {"nproc": "--gpus"}) == "--gpus 64: no CUDA GPU"
    assert flag_message("tiles overlap") == "tiles overlap"  # a word that merely starts like a parameter stays


def test_warnings_are_shown_with_flags_but_the_record_is_left_alone():
    console = Console(record=True, width=200)
    handler = FlagNamesHandler(console=console, show_path=False, show_time=False)
    record = logging.LogRecord("blurlatent.intensity", logging.WARNING, __file__, 1,
                               "%d pixels clipped; pass out_dtype=float32 to keep them", (12,), None)
    handler.emit(record)
    shown = console.export_text()
    assert "12 pixels clipped; pass --out-dtype=float32 to keep them" in shown
    # other handlers (log files, pytest's caplog) still see the library's own words
    assert record.getMessage() == "12 pixels clipped; pass out_dtype=float32 to keep them"


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
