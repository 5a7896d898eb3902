"""The command line's error policy: one line per error, exit codes, and flag names in messages.

Exit codes: 2 for bad input (``UsageError``, a missing or unreadable path, a command-line parse error),
1 for a runtime failure (``RuntimeFailure``) and 1 with "internal error" for anything else, which is a
bug; ``--debug`` shows the traceback instead. Library messages name parameters (``tile 8 is too
small``); ``flag_message`` puts the command line's flag names in their place.
"""

from __future__ import annotations

import functools
import logging

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape  # messages hold paths and lists: [w1] must print, not vanish as markup
from typer.core import TyperGroup

from blurlatent.errors import RuntimeFailure, UsageError

console = Console(stderr=True)
state = {"debug": False}

# typer re-exports BadParameter only; its base is click's UsageError whether click is vendored or not
_ClickUsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class OneLineGroup(TyperGroup):
    """Command-line parse errors as one line like every other error, instead of click's usage block and framed
    panel; still exit 2: a command's (a missing option, ``--alpha abc``) and the root's (an unknown command or
    root option, a missing command)."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:  # parsing the root's own options: ``blurlatent --bogus``
            return super().make_context(info_name, args, parent=parent, **extra)
        except _ClickUsageError as exc:
            _parse_error(exc, info_name or "blurlatent")

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except _ClickUsageError as exc:
            _parse_error(exc, ctx.command_path)


def _parse_error(exc, where: str):
    """Print click's parse error as one line naming the command's --help; exit 2."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # not an error: click prints the help
        raise exc
    where = exc.ctx.command_path if exc.ctx is not None else where
    message = " ".join(exc.format_message().split())
    console.print(f"[red]error:[/red] {escape(message)} (see: {escape(where)} --help)", highlight=False, soft_wrap=True)
    raise typer.Exit(2) from None


# Library messages name parameters ("tile 8 is too small"); the command line names its flags instead.
FLAGS = {
    "tile": "--tile", "alpha": "--alpha", "steps": "--steps", "intensity": "--intensity", "precision": "--precision",
    "out_dtype": "--out-dtype", "device": "--device", "batch_size": "--batch-size", "batch size": "--batch-size",
    "reg": "--reg", "amp": "--amp", "epochs": "--epochs", "learning rate": "--lr", "model widths": "--widths",
    "nproc": "--nproc", "seed": "--seed", "normalize": "--normalize", "planes": "--planes", "levels": "--alpha/--steps",
    "alpha or planes": "--alpha or --planes", "init": "--init", "channel": "--channel", "data.channel": "--channel",
    "fields": "--fields", "channels": "--channels", "size": "--size", "crop": "--crop", "split": "--split",
    "test_crops": "--test-crops", "resume": "--resume", "out": "--out", "sync_bn": "--sync-bn", "workers": "--workers",
    "task": "--task", "z": "--z", "series": "--series", "log": "--log", "focus": "--focus",
    "na": "--na", "wavelength_um": "--wavelength", "z_step_um": "--z-step", "read_noise": "--read-noise",
    "gain": "--gain", "background": "--background",
}
# ... and parameters named inside a message's fix ("pass extrapolate=True", "choose channels that exist").
IN_MESSAGE = {
    "leave focus out": "leave --focus out",
    "extrapolate=True": "--extrapolate", "force=True": "--force", "from_scratch=True": "--from-scratch",
    "strict=True": "--strict", "resume=True": "--resume", "or from_scratch": "or --from-scratch",
    "give init": "give --init", "choose channels": "choose --channels", "choose planes": "choose --planes",
    "choose crop": "choose --crop", "prepare with planes": "prepare with --planes", "another crop": "another --crop",
    "fewer model widths": "fewer --widths", "matching model widths": "matching --widths",
    "smaller model widths": "smaller --widths", "new run with init": "new run with --init",
    "use amp bf16": "use --amp bf16", "lower the learning rate": "lower --lr", "new out folder": "new --out folder",
    "use device cpu": "use --device cpu", "optim.lr": "--lr", "optim.batch": "--batch-size",
    "with store=PATH": "with --store PATH", "pass out_dtype": "pass --out-dtype",
    "model.widths": "--widths", "data.store": "STORE", "data.channel": "--channel", "optim.epochs": "--epochs",
    "task blur takes alpha": "--task blur takes --alpha", "task deblur": "--task deblur",
    "with channel=": "with --channel=", "whole=True": "--whole", "fid_weights=": "--fid-weights=",
    "pass channel=": "pass --channel ", "pass series=": "pass --series ", "pass z=": "pass --z ",
    "so z=P1 P2": "so --z P1 P2", "and z=P1 P2": "and --z P1 P2", "without z=P1 P2": "without --z P1 P2",
    "stack_dir, or blurriest_dir and less_blurry_dir": "--stack-dir, or --blurriest-dir and --less-blurry-dir",
    "both blurriest_dir and less_blurry_dir": "both --blurriest-dir and --less-blurry-dir",
    "both a built-in model (": "both --model (", "and a checkpoint (": "and --checkpoint (",
    "pass a checkpoint trained": "pass --checkpoint trained",
}


class FlagNamesHandler(RichHandler):
    """Library warnings name parameters too ("pass out_dtype=float32"): show the command line's flags.

    Done where the line is rendered, not by changing the record, which other handlers also see."""

    def render_message(self, record: logging.LogRecord, message: str):
        return super().render_message(record, flag_message(message, state.get("flags")))


def flag_message(text: str, flags: dict[str, str] | None = None) -> str:
    """``text`` with a leading library parameter name, and parameters named in its fix, as command-line flags.

    ``flags`` overrides ``FLAGS`` for one command (``train --gpus N`` reports ``nproc`` as ``--gpus``).
    """
    table = {**FLAGS, **(flags or {})}
    for phrase, flag in IN_MESSAGE.items():
        text = text.replace(phrase, flag)
    for param in sorted(table, key=len, reverse=True):
        if text.startswith(param) and text[len(param):len(param) + 1] in (" ", ":"):
            return table[param] + text[len(param):]
    return text


def one_line(exc: BaseException) -> str:
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def handle_errors(fn):
    """One-line message; exit 2 for bad input (UsageError, a missing or unreadable path), 1 for a runtime
    failure, 1 with "internal error" for anything else (a bug); a traceback only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            console.print("[red]interrupted[/red]")
            raise typer.Exit(130)
        except (UsageError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
            if state["debug"]:
                raise
            message = flag_message(one_line(exc), state.get("flags"))
            console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        except RuntimeFailure as exc:
            if state["debug"]:
                raise
            message = flag_message(one_line(exc), state.get("flags"))
            console.print(f"[red]error:[/red] {escape(message)} (rerun with --debug for the traceback)",
                          highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        except Exception as exc:
            if state["debug"]:
                raise
            console.print(f"[red]internal error:[/red] {escape(type(exc).__name__ + ': ' + one_line(exc))} "
                          "(a bug in blurlatent: run with --debug and report the traceback)",
                          highlight=False, soft_wrap=True)
            raise typer.Exit(1)

    return wrapper
