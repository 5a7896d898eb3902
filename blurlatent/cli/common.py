"""What every command shares: the Typer app, the root options, option helpers and the choice Enums.

The command line is Typer only. Each command parses, builds a config, calls one library function, prints.

Errors: library code raises ``UsageError``/``ValueError``/``FileNotFoundError`` (exit 2) or
``RuntimeFailure`` (exit 1); ``handle_errors`` turns them into one line on stderr, no traceback unless
``--debug``. Heavy imports (torch) happen inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import enum
import logging
from typing import Optional

import typer

from ..cli_errors import FlagNamesHandler, OneLineGroup, console, state
from ..config import Intensity, OutDtype, Precision, choices

# Enums made from config's Literal options, so --help lists the choices and typer refuses others.
IntensityChoice = enum.Enum("IntensityChoice", {v: v for v in choices(Intensity)}, type=str)
PrecisionChoice = enum.Enum("PrecisionChoice", {v: v for v in choices(Precision)}, type=str)
OutDtypeChoice = enum.Enum("OutDtypeChoice", {v: v for v in choices(OutDtype)}, type=str)

app = typer.Typer(
    cls=OneLineGroup,
    help="Defocus blur synthesis and deblurring for microscopy by interpolation in an autoencoder's latent space.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
):
    state["debug"] = debug
    state.pop("flags", None)  # one command's flag names (train --gpus) must not leak into the next in-process call
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[FlagNamesHandler(console=console, show_path=False)],
        force=True,
    )


def choice_value(option):
    """The plain string of an Enum choice (typer passes Enums), or the value itself."""
    return getattr(option, "value", option)


def split_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def at_least(value: Optional[int], low: int, what: str) -> Optional[int]:
    """An option callback: ``value`` unless it is below ``low`` (a parse error naming the option, exit 2)."""
    if value is not None and value < low:
        raise typer.BadParameter(f"{value}: give {low} or more {what}")
    return value


def int_list(text: str, what: str) -> list[int]:
    """``8,16,32`` → [8, 16, 32]; UsageError naming ``what`` (a parameter, shown as its flag) otherwise."""
    from ..errors import UsageError

    try:
        return [int(t) for t in split_list(text)]
    except ValueError:
        raise UsageError(f"{what} {text}: give comma-separated whole numbers, e.g. 8,16,32") from None
