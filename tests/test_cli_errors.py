"""The command line's error policy: parameter names in library messages and warnings become flags."""

from __future__ import annotations

import logging

from rich.console import Console

from blurlatent.cli_errors import FlagNamesHandler, flag_message


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
