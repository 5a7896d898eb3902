"""What every command shares: the Typer app, the root options and option helpers.

The command line is Typer only. Each command parses, builds a config, calls one library function, prints.

Errors: every command is a ``OneLineCommand`` (``cli.errors``): a failure is one line on stderr with the
command's flag names and the exit code ``blurlatent.errors`` states, no traceback unless ``--debug``.
Heavy imports (torch) happen inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import typer

from blurlatent import __version__
from blurlatent.cli.errors import DEBUG, VERBOSE, OneLineGroup

# Choices: a parameter annotated with a config's Literal option type (``Reg``, ``Arch``, …) is a choice for Typer
# (>= 0.19): --help lists the values ([none|weak|strong]), others are refused, and the command gets the string.

app = typer.Typer(
    cls=OneLineGroup,
    help="Defocus blur synthesis and deblurring for microscopy by interpolation in an autoencoder's latent space.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"blurlatent {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print blurlatent's version and exit."),
):
    ctx.meta[DEBUG], ctx.meta[VERBOSE] = debug, verbose  # the command's context shares meta (OneLineCommand)


def split_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def at_least(value: int | None, low: int, what: str) -> int | None:
    """An option callback: ``value`` unless it is below ``low`` (a parse error naming the option, exit 2)."""
    if value is not None and value < low:
        raise typer.BadParameter(f"{value}: give {low} or more {what}")
    return value


def int_list(text: str, param: str) -> list[int]:
    """``8,16,32`` → [8, 16, 32]; UsageError naming ``param`` (a parameter, shown as its flag) otherwise."""
    from blurlatent.errors import UsageError

    try:
        return [int(t) for t in split_list(text)]
    except ValueError:
        raise UsageError(f"{{{param}}} {text}: give comma-separated whole numbers, e.g. 8,16,32", param) from None
