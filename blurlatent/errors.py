"""The kinds of failure blurlatent tells apart.

Library code raises ``UsageError`` (bad input: a wrong path, value, file or option; exit code 2) or
``RuntimeFailure`` (valid work failed: NaN loss, out of memory, a worker died; exit code 1). Messages
name the parameter or file at fault and the fix, on one line, in the library's own terms (``tile 8 is
too small …``); the command line swaps in its flag names. Any other exception is a bug: the command
line reports it as an internal error (exit code 1), never as a usage error.
"""


class UsageError(ValueError):
    """Bad input from the user: a wrong path, value, file or option. Exit code 2."""


class RuntimeFailure(RuntimeError):
    """A failure while doing valid work (NaN loss, out of memory, a worker died). Exit code 1."""
