"""The command line's error policy: one line per error, its exit code, and the command's own flag names.

Exit codes are ``blurlatent.errors``'s (2 bad input, 1 a runtime failure, 1 "internal error" for a bug),
and 2 for a command-line parse error; the root's ``--debug`` shows the traceback instead. A library
message names parameters (``blurlatent.errors.Message``); each command spells them with its flags, from
its own click parameters (``flag_names``: ``tile`` → ``--tile``), plus the few library names it declares
beside itself (``library_names``: ``nproc`` → ``--gpus``). No text is rewritten. The root's options live
in click's ``ctx.meta`` (``DEBUG``, ``VERBOSE``), shared by the command's context.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape  # messages hold paths and lists: [w1] must print, not vanish as markup
from typer.core import TyperCommand, TyperGroup

from blurlatent.errors import Message, RuntimeFailure, UsageError, one_line

console = Console(stderr=True)
DEBUG, VERBOSE = "blurlatent.debug", "blurlatent.verbose"  # ctx.meta keys the root callback sets

# typer re-exports BadParameter only; its base is click's UsageError whether click is vendored or not
_ClickUsageError = next(c for c in typer.BadParameter.__mro__
                        if c.__name__ == "UsageError" and issubclass(c, Exception))


class OneLineGroup(TyperGroup):
    """Command-line parse errors as one line like every other error, instead of click's usage block and framed
    panel; still exit 2: a command's (a missing option, ``--alpha abc``) and the root's (an unknown command or
    root option, a missing command)."""

    def get_params(self, ctx):
        return plain_metavars(super().get_params(ctx), ctx)

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


def plain_metavars(params: list, ctx) -> list:
    """``params`` with the value hints ``--help`` shows after each option made plain: none after a flag (not
    ``<bool>``), the element after a repeatable option (``<float>``, not ``<list[float]>``, which invites
    ``--alpha 0.2,0.5``). Options of several values name them with their own metavar (``--z P1 P2``)."""
    for param in params:
        if param.param_type_name != "option" or param.metavar is not None:
            continue
        if param.is_flag and not param.count:
            param.metavar = ""
        elif param.multiple and hasattr(param, "display_type"):
            param.metavar = re.sub(r"^<list\[(.*)\]>$", r"<\1>", param.display_type(ctx))
    return params


def comma_values(command, ctx, args: list[str]) -> None:
    """A click parse error (one line, exit 2) for an option of several values given with commas, ``--z 4,12``,
    showing the form it takes, ``--z 4 12``; click would say "not a valid integer"."""
    for i, token in enumerate(args[:-1]):
        param = next((p for p in command.params if p.param_type_name == "option" and token in p.opts), None)
        if param is None or param.nargs < 2 or "," not in args[i + 1]:
            continue
        typed: list[str] = []
        values: list[str] = []
        for text in args[i + 1:]:
            if text.startswith("--") or len(values) >= param.nargs:
                break
            typed.append(text)
            values += [v for v in text.split(",") if v.strip()]
        raise _ClickUsageError(f"{token} {' '.join(typed)}: give {param.nargs} values separated by spaces, e.g. "
                               f"{token} {' '.join(values[:param.nargs])}", ctx)


def library_names(table: Mapping[str, str] | Callable[[dict], Mapping[str, str]]):
    """Declare, beside a command, the library parameters it spells otherwise: library name → the command's
    parameter (its python name), e.g. ``{"optim.lr": "lr"}``; a callable gets the parsed parameters
    (``train --gpus N`` reports the library's ``nproc`` as ``--gpus``)."""

    def mark(fn):
        fn.library_names = table
        return fn

    return mark


def spelling(param) -> str:
    """How the command line spells a click parameter: an option's long flag, an argument's metavar."""
    if param.param_type_name == "option":
        return next((o for o in param.opts if o.startswith("--")), param.opts[0])
    return param.metavar or param.name.upper()


def flag_names(ctx) -> dict[str, str]:
    """Library parameter name → how the running command (click context ``ctx``) spells it: ``command_names``."""
    group = ctx.parent.command if ctx.parent is not None else None
    return command_names(ctx.command, ctx.params, getattr(group, "commands", {}))


def command_names(command, params: dict, commands: Mapping[str, TyperCommand]) -> dict[str, str]:
    """Library parameter name → how ``command`` spells it: each of its own parameters (python name → ``--flag``
    or ``METAVAR``), then the library names it declared with ``library_names`` (given its parsed ``params``),
    and the parameters of the app's ``commands`` as ``name:param`` (a fix that sends the user to ``prepare
    --planes``)."""
    spelled = {param.name: spelling(param) for param in command.params if param.name}
    table = getattr(command.callback, "library_names", None) or {}
    if callable(table):
        table = table(params)
    others = {f"{name}:{param.name}": spelling(param) for name, other in commands.items()
              for param in other.params if param.name}
    return {**others, **spelled, **{name: spelled[param] for name, param in table.items()}}


class FlagNamesHandler(RichHandler):
    """Library warnings that name parameters (a ``Message`` as the record's message) shown with the command's
    flags. Done where the line is rendered, not by changing the record, which other handlers also see."""

    def __init__(self, names: Mapping[str, str], **kwargs):
        super().__init__(**kwargs)
        self.names = names

    def render_message(self, record: logging.LogRecord, message: str):
        if isinstance(record.msg, Message) and not record.args:
            message = record.msg.render(self.names)
        return super().render_message(record, message)


def log_to_console(ctx, names: Mapping[str, str]) -> None:
    """Log lines on stderr (INFO with the root's --verbose, else WARNING), parameters spelled as ``names``."""
    logging.basicConfig(
        level=logging.INFO if ctx.meta.get(VERBOSE) else logging.WARNING,
        format="%(message)s",
        handlers=[FlagNamesHandler(names, console=console, show_path=False)],
        force=True,
    )


class OneLineCommand(TyperCommand):
    """Every command's class: it runs with log lines and errors that spell parameters as its own flags
    (``flag_names``), and turns its failures into one line and an exit code (``blurlatent.errors``):
    2 for bad input (UsageError, a missing or unreadable path), 1 for a runtime failure, 1 with "internal
    error" for anything else (a bug); the traceback instead only with the root's --debug."""

    def get_params(self, ctx):
        return plain_metavars(super().get_params(ctx), ctx)

    def parse_args(self, ctx, args):
        comma_values(self, ctx, args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        names = flag_names(ctx)
        log_to_console(ctx, names)
        try:
            return super().invoke(ctx)
        except (typer.Exit, _ClickUsageError):  # an exit code already chosen; a parse error: OneLineGroup's
            raise
        except KeyboardInterrupt:
            console.print("[red]interrupted[/red]")
            raise typer.Exit(130) from None
        except Exception as exc:
            if ctx.meta.get(DEBUG):
                raise
            code, line = error_line(exc, names)
            console.print(line, highlight=False, soft_wrap=True)
            raise typer.Exit(code) from None


def error_line(exc: Exception, names: Mapping[str, str]) -> tuple[int, str]:
    """(exit code, the line to print, rich markup) for a command's exception."""
    if isinstance(exc, (UsageError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
        return 2, f"[red]error:[/red] {escape(one_line(exc, names))}"
    if isinstance(exc, RuntimeFailure):
        return 1, f"[red]error:[/red] {escape(one_line(exc, names))} (rerun with --debug for the traceback)"
    return 1, (f"[red]internal error:[/red] {escape(type(exc).__name__ + ': ' + one_line(exc))} "
               "(a bug in blurlatent: run with --debug and report the traceback)")
