"""What the CLI tests assert about a command's output."""

from __future__ import annotations


def one_line_error(result, *needles):
    """The run failed as bad input (exit 2) with one line starting "error:" that holds every needle."""
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in " ".join(result.output.split()), result.output
