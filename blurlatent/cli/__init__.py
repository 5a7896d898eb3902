"""The command line (Typer): ``blurlatent`` and its commands, one module per group.

Errors: each command prints a failure as one line with its own flag names and exits with the code
``blurlatent.errors`` states (2 bad input, 1 runtime failure or internal error); ``--debug`` shows the
traceback (``cli.errors``). Heavy imports (torch) happen inside the commands so ``--help`` is instant.
"""

# ruff: noqa: I001  (the order of the command imports below is the order --help lists the commands)
from __future__ import annotations

# Each module registers its commands on ``app``; the import order is the order --help lists them.
from blurlatent.cli.common import app
from blurlatent.cli import data, train, infer, reports, models  # noqa: F401

__all__ = ["app", "main"]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
