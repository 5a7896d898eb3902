"""The two kinds of failure the command line tells apart.

Library code raises these (or plain ``ValueError``/``FileNotFoundError``, which the CLI treats as
usage errors); only ``cli.py`` turns them into a one-line message and an exit code.
"""


class UsageError(ValueError):
    """Bad input from the user: a wrong path, value, file or option. Exit code 2.

    The message names the thing at fault and the fix, on one line.
    """


class RuntimeFailure(RuntimeError):
    """A failure while doing valid work (NaN loss, out of memory, a worker died). Exit code 1."""
