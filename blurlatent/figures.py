"""PNG figures: image grids (transition strips, deblurring examples) and plots. matplotlib's Agg backend only."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .files import atomic_path


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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.tight_layout()
    with atomic_path(path, force=True) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def save_line_plot(
    x: Sequence[float],
    series: dict[str, Sequence[float | None]],
    path: str | Path,
    xlabel: str = "",
    ylabel: str = "",
    title: str | None = None,
) -> Path:
    """One line per series (None values are skipped) over the shared ``x``, as one PNG, atomically (Fig. 6)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    markers = "os^Dv<>pP*X"
    for i, (name, ys) in enumerate(series.items()):
        pts = [(a, b) for a, b in zip(x, ys) if b is not None and np.isfinite(b)]
        if pts:
            xs, vs = zip(*pts)
            ax.plot(xs, vs, marker=markers[i % len(markers)], label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks(list(x))
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def save_pca_plot(points: np.ndarray, plane_labels: Sequence[str], path: str | Path, title: str | None = None, max_lines: int = 12) -> Path:
    """Latent trajectories in 2-D (Fig. 5): ``points`` float [fields, planes, 2] in blur order.

    Dots are the encoder's codes, coloured by plane; a dashed line joins each field's first and last
    plane — the straight z_far → z_in-focus path on which Eq. 2 puts every interpolated code (the
    projection is linear, so the straight segment stays straight). Lines are drawn for ``max_lines`` fields.
    """
    plt = _pyplot()
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be [fields, planes, 2], got {points.shape}")
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    cmap = plt.get_cmap("viridis")
    n_planes = points.shape[1]
    for f in range(min(points.shape[0], max_lines)):
        ax.plot(points[f, [0, -1], 0], points[f, [0, -1], 1], "--", color="0.5", lw=0.8, zorder=1)
    for j in range(n_planes):
        ax.scatter(points[:, j, 0], points[:, j, 1], s=14, color=cmap(j / max(n_planes - 1, 1)), label=f"plane {plane_labels[j]}", zorder=2)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=7, ncol=2)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)
