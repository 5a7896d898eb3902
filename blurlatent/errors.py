"""The kinds of failure blurlatent tells apart, and messages that name parameters.

Exit codes (the command line's, stated once here): ``UsageError`` is bad input — a wrong path, value, file
or option — exit code 2; ``RuntimeFailure`` is valid work that failed — NaN loss, out of memory, a worker
died — exit code 1. Any other exception is a bug, a plain ``ValueError`` from our own code included: the
command line reports it as an internal error, exit code 1, never as a usage error (``UsageError`` is a
``ValueError`` so callers that catch ``ValueError`` still catch it, not the other way round). A missing
or unreadable path (``FileNotFoundError``, ``PermissionError``, …) counts as bad input, exit code 2.

Messages are one line that names the parameter or file at fault and the fix. A parameter is a field of
the message's template, ``{tile}``, or with the value a fix suggests, ``{force=True}``, or of the step a
fix sends the user to, ``{prepare:planes}``, and the error declares the parameters it names:
``UsageError(f"{{tile}} {tile} is too small: use {{tile}} 0 for whole images", "tile")``,
``UsageError(f"{path}: exists; pass {{force=True}} to overwrite it", "force")``.
``str(exc)`` says it in the library's words (``tile 8 is too small …``, ``pass force=True``);
``exc.render(names)`` spells each parameter as the caller does (the command line's ``--tile 8 …``,
``pass --force``), so rewording a message never changes which flag it names. A warning that names
parameters is logged as a ``Message`` built the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# {tile}, {optim.lr}, {z=P1 P2}: a parameter of the message (when declared), with the value a fix suggests;
# {prepare:planes}: a parameter of another step, `prepare`, that the fix sends the user to
FIELD = re.compile(r"\{([A-Za-z_][\w.]*(?::[A-Za-z_]\w*)?)(?:=([^{}]*))?\}")


def field_names(template: str) -> list[str]:
    """The parameter names of ``template``'s fields: ``"{reg} {x}"`` → ``["reg", "x"]`` (for a message whose
    template comes in pieces, e.g. ``check_choice``'s ``what``)."""
    return [match[1] for match in FIELD.finditer(template)]


class Message:
    """A one-line message whose ``{name}`` and ``{name=value}`` fields are parameters when ``names`` declares
    them (other braces stay as they are). Logged as a record's message, it reads in the library's words for
    every handler.
    """

    def __init__(self, template: str, *names: str):
        self.template = template
        self.names = names

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message with each parameter as ``names`` spells it (``{"tile": "--tile"}``; a value follows
        after a space, ``True`` goes without), a parameter ``names`` lacks in the library's words."""

        def spell(match: re.Match) -> str:
            name, value = match[1], match[2]
            if name not in self.names:
                return match[0]
            spelled = names.get(name) if names else None
            if spelled is None:
                name = name.rpartition(":")[2]  # the library's words: prepare's planes are ``planes``
                return name if value is None else f"{name}={value}"
            return spelled if value is None or value == "True" else f"{spelled} {value}"

        return FIELD.sub(spell, self.template)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"Message({', '.join(map(repr, (self.template, *self.names)))})"


class ParameterError:
    """What ``UsageError`` and ``RuntimeFailure`` share: a ``Message`` (``exc.message``) that ``str``
    gives in the library's words and ``render`` with the caller's names."""

    message: Message

    def render(self, names: Mapping[str, str] | None = None) -> str:
        return self.message.render(names)

    def __str__(self) -> str:
        return self.message.render()


class UsageError(ParameterError, ValueError):
    """Bad input from the user: a wrong path, value, file or option. Exit code 2."""

    def __init__(self, template: str, *names: str):
        super().__init__(template, *names)
        self.message = Message(template, *names)


class RuntimeFailure(ParameterError, RuntimeError):
    """A failure while doing valid work (NaN loss, out of memory, a worker died). Exit code 1."""

    def __init__(self, template: str, *names: str):
        super().__init__(template, *names)
        self.message = Message(template, *names)


def one_line(exc: BaseException, names: Mapping[str, str] | None = None) -> str:
    """``exc`` as one line: a path error as ``path: reason``, our errors with their parameters spelled as
    ``names`` spells them (else in the library's words), anything else as its text or type name."""
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)) and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    text = (exc.render(names) if isinstance(exc, ParameterError) else str(exc)).strip() or type(exc).__name__
    return " ".join(text.split())
