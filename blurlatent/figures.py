"""PNG figures: image grids (transition strips, deblurring examples) and plots. matplotlib's Agg backend only."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .io import atomic_path


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell_inches * n_cols, cell_inches * n_rows + (0.4 if title else 0)), squeeze=False)
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
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, force=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
