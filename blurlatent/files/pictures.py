"""PNG pictures: image grids (transition strips, deblurring examples) and line plots, written atomically.
matplotlib's Agg backend only, imported when a figure is drawn: its import is slow, and `blurlatent --help` and
the library's numeric paths must not pay for it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from blurlatent.files.atomic import atomic_path


def save_grid(
    rows: Sequence[Sequence[np.ndarray]],
    path: str | Path,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    cell_inches: float = 1.6,
) -> Path:
    """Save a grid of grayscale images (each row a list of 2-D arrays, any dtype) as one PNG, atomically.

    Each image is shown on its own min–max scale so that blur, not brightness, is what the eye compares.
    """
    plt = pyplot()
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    size = (cell_inches * n_cols, cell_inches * n_rows + (0.4 if title else 0))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=size, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(row) and row[c] is not None:
                ax.imshow(np.asarray(row[c], dtype=np.float32), cmap="gray", interpolation="nearest")
            if c == 0 and row_labels:
                ax.set_ylabel(row_labels[r], fontsize=8)
            if r == 0 and col_labels and c < len(col_labels):
                ax.set_title(col_labels[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def pyplot():
    # matplotlib costs about a second to import: only drawing a figure pays for it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.tight_layout()
    with atomic_path(path, force=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def save_line_plot(
    x: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    path: str | Path,
    xlabel: str = "",
    ylabel: str = "",
    title: str | None = None,
) -> Path:
    """One line per series (None values are skipped) over the shared ``x``, as one PNG, atomically (Fig. 6).
    Each series holds one value per ``x`` (ValueError otherwise)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    markers = "os^Dv<>pP*X"
    for i, (name, ys) in enumerate(series.items()):
        pts = [(a, b) for a, b in zip(x, ys, strict=True) if b is not None and np.isfinite(b)]
        if pts:
            xs, vs = zip(*pts, strict=True)
            ax.plot(xs, vs, marker=markers[i % len(markers)], label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks(list(x))
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, path)
