"""The command line: Typer only. Each command parses, builds a config, calls one library function, prints.

Errors: library code raises ``UsageError``/``ValueError``/``FileNotFoundError`` (exit 2) or
``RuntimeFailure`` (exit 1); ``handle_errors`` turns them into one line on stderr, no traceback unless
``--debug``. Heavy imports (torch) happen inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

app = typer.Typer(
    help="Defocus blur synthesis and deblurring for microscopy by interpolation in an autoencoder's latent space.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
):
    _state["debug"] = debug
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )


def handle_errors(fn):
    """One-line message and exit code 2 (usage) or 1 (runtime failure); a traceback only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .errors import RuntimeFailure

        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            console.print("[red]interrupted[/red]")
            raise typer.Exit(130)
        except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
            if _state["debug"]:
                raise
            console.print(f"[red]error:[/red] {_one_line(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        except (RuntimeFailure, Exception) as exc:
            if _state["debug"]:
                raise
            kind = "" if isinstance(exc, RuntimeFailure) else f"{type(exc).__name__}: "
            console.print(f"[red]error:[/red] {kind}{_one_line(exc)} (rerun with --debug for the traceback)", highlight=False, soft_wrap=True)
            raise typer.Exit(1)

    return wrapper


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def split_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


# === data: synth, prepare ===================================================================


# === train ===================================================================================


# === inference: blur, deblur =================================================================


# === evaluate ================================================================================


# === demo ====================================================================================


def main() -> None:
    app()


if __name__ == "__main__":
    main()
