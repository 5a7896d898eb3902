"""PNG figures: image grids (transition strips, deblurring examples), plots, and the evaluation report's
figures (Figs 2, 5, 6, 7). matplotlib's Agg backend only, imported when a figure is drawn: it costs about
a second, which `blurlatent --help` and the library's numeric paths must not pay."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import UsageError
from .files import atomic_path

if TYPE_CHECKING:  # report imports this module; the report is only a type here
    from .report import Report

# Cap on latent floats kept for the PCA figure (fields × planes × code size), so whole-field runs with the
# paper's 1024-channel codes stay within a few hundred MB.
PCA_FLOAT_BUDGET = 40_000_000


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
    plt = _pyplot()
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
    return _save(fig, path)


def _pyplot():
    # matplotlib costs about a second to import: only drawing a figure pays for it.
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


def save_pca_plot(points: np.ndarray, plane_labels: Sequence[str], path: str | Path, title: str | None = None,
                  max_lines: int = 12) -> Path:
    """Latent trajectories in 2-D (Fig. 5): ``points`` float [fields, planes, 2] in blur order.

    Dots are the encoder's codes, coloured by plane; a dashed line joins each field's first and last
    plane — the straight z_far → z_in-focus path on which Eq. 2 puts every interpolated code (the
    projection is linear, so the straight segment stays straight). Lines are drawn for ``max_lines`` fields.
    """
    plt = _pyplot()
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[-1] != 2:
        raise UsageError(f"points must be [fields, planes, 2], got {points.shape}")
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    cmap = plt.get_cmap("viridis")
    n_planes = points.shape[1]
    for f in range(min(points.shape[0], max_lines)):
        ax.plot(points[f, [0, -1], 0], points[f, [0, -1], 1], "--", color="0.5", lw=0.8, zorder=1)
    for j in range(n_planes):
        ax.scatter(points[:, j, 0], points[:, j, 1], s=14, color=cmap(j / max(n_planes - 1, 1)),
                   label=f"plane {plane_labels[j]}", zorder=2)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=7, ncol=2)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


# --- the evaluation report's figures ------------------------------------------------------------------


class Examples:
    """Images of the first ``n`` test fields (global indices 0..n-1), for the transition and deblurring figures.

    ``images[key]`` lists one float32 array per kept field: ``real`` [P_seq, H, W] in blur order far →
    target, ``gaussian``/``rl``/``wiener`` [N, H, W], and per model ``<name>:recon`` [P_seq, H, W],
    ``<name>:synth`` and ``<name>:deblur`` [N, H, W]; ``names`` the kept fields.
    """

    def __init__(self, n: int):
        self.n = n
        self.names: list[str] = []
        self.images: dict[str, list[np.ndarray]] = {}

    def keep(self, key: str, start: int, images: np.ndarray, names: Sequence[str] | None = None) -> None:
        """Keep ``images[i]`` (batch of fields ``start``, ``start + 1``, …) for the fields below ``n``."""
        take = max(0, min(len(images), self.n - start))
        self.images.setdefault(key, []).extend(np.asarray(images[i], np.float32) for i in range(take))
        if names is not None:
            self.names.extend(names[:take])


class LatentSamples:
    """Flattened latents (float32 [P, D] per field, blur order) of as many fields as PCA_FLOAT_BUDGET allows."""

    def __init__(self):
        self.z: dict[str, list[np.ndarray]] = {}

    def keep(self, name: str, z_seq: np.ndarray) -> None:
        """Keep model ``name``'s codes ``z_seq`` [B, P, C, h, w] while the budget lasts (at least 2 fields)."""
        kept = self.z.setdefault(name, [])
        per_field = int(np.prod(z_seq.shape[1:]))
        room = max(2, PCA_FLOAT_BUDGET // max(per_field, 1)) - len(kept)
        for i in range(max(0, min(room, len(z_seq)))):
            kept.append(z_seq[i].reshape(z_seq.shape[1], -1).astype(np.float32))


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(projected [N, 2], mean [D], components [2, D]) of points [N, D] by SVD. PCA is linear, so the
    projection of the straight segment z_0 → z_16 is the straight segment between the projected endpoints."""
    mean = points.mean(axis=0)
    centred = points - mean
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:
        comps = np.vstack([comps, np.zeros((2 - comps.shape[0], points.shape[1]))])
    return centred @ comps.T, mean, comps


def safe_name(name: str) -> str:
    """``name`` with every character but letters, digits and ``-_.`` replaced by ``_`` (a file name)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _deblur_inputs(between: list[int]) -> list[int]:
    """Two deblurring inputs as in Fig. 7: the middle plane and the one nearest focus (α 0.5 and 0.125 in the paper)."""
    return sorted({between[len(between) // 2], between[-1]}, key=between.index)


def _model_figures(folder: Path, report: "Report", ex: Examples, name: str) -> list[str]:
    """transitions_<model>.png (Fig. 2/3) and deblur_<model>.png (Fig. 7/8) from the kept examples."""
    plan = report.config.plan
    seq, between = list(plan.sequence), list(plan.between)
    real = ex.images.get("real", [])
    recon, synth, deblur = (ex.images.get(f"{name}:{k}", []) for k in ("recon", "synth", "deblur"))
    figs = []
    rows, labels = [], []
    for i, field in enumerate(ex.names[: len(recon)]):
        rows += [list(real[i]), list(recon[i]), [recon[i][0], *synth[i], recon[i][-1]]]
        labels += [f"{field}\nreal x_n", "G(z_n)", "G(z'_n) Eq. 2"]
        if "gaussian" in ex.images:
            rows.append([real[i][0], *ex.images["gaussian"][i], real[i][-1]])
            labels.append("Gaussian baseline")
    if rows:
        path = save_grid(rows, folder / f"transitions_{safe_name(name)}.png", row_labels=labels,
                         col_labels=[f"plane {p}" for p in seq], title=f"{name}: real vs synthesized defocus (Fig. 2)")
        figs.append(path.name)
    rows, labels = [], []
    for i, field in enumerate(ex.names[: len(recon)]):
        for k in _deblur_inputs(between):
            rows.append([recon[i][0], recon[i][seq.index(k)], deblur[i][between.index(k)], recon[i][-1], real[i][-1]])
            labels.append(f"{field} k={k}")
    if rows:
        cols = [f"G(z{plan.far})", "G(z_k)", "deblurred (Eq. 3)", f"G(z{plan.target})", f"truth x{plan.target}"]
        path = save_grid(rows, folder / f"deblur_{safe_name(name)}.png", row_labels=labels, col_labels=cols,
                         title=f"{name}: deblurring (Fig. 7)")
        figs.append(path.name)
    return figs


def _pca_figure(folder: Path, report: "Report", latents: LatentSamples, name: str) -> list[str]:
    """pca_<model>.png (Fig. 5): the kept latents projected on their first two principal components."""
    plan = report.config.plan
    points = latents.z.get(name)
    if not points:
        return []
    stacked = np.stack(points)  # [F, P, D]
    proj, _, _ = pca_2d(stacked.reshape(-1, stacked.shape[-1]).astype(np.float64))
    path = save_pca_plot(proj.reshape(stacked.shape[0], stacked.shape[1], 2), [str(p) for p in plan.sequence],
                         folder / f"pca_{safe_name(name)}.png",
                         title=f"{name}: PCA of latents, dashed z{plan.far}→z{plan.target}")
    return [path.name]


def _baseline_figure(folder: Path, report: "Report", ex: Examples) -> list[str]:
    """deblur_baselines.png: Richardson–Lucy and Wiener beside their inputs and the truth."""
    if not ex.images.get("rl"):  # no baselines (empty train split) or no examples kept
        return []
    plan = report.config.plan
    seq, between = list(plan.sequence), list(plan.between)
    real = ex.images["real"]
    rows, labels = [], []
    for i, field in enumerate(ex.names[: len(ex.images["rl"])]):
        for k in _deblur_inputs(between):
            j = between.index(k)
            rows.append([real[i][0], real[i][seq.index(k)], ex.images["rl"][i][j], ex.images["wiener"][i][j],
                         real[i][-1]])
            labels.append(f"{field} k={k}")
    path = save_grid(rows, folder / "deblur_baselines.png", row_labels=labels,
                     col_labels=[f"x{plan.far}", "x_k", "Richardson–Lucy", "Wiener", f"truth x{plan.target}"],
                     title="classical deconvolution baselines")
    return [path.name]


def write_report_figures(folder: Path, report: "Report", ex: Examples, latents: LatentSamples) -> list[str]:
    """Write the evaluation report's PNGs into ``folder``; returns their file names.

    transitions_<model>.png (Fig. 2/3), deblur_<model>.png (Fig. 7/8), pca_<model>.png (Fig. 5) per model,
    deblur_baselines.png and psnr_deblur_quality_vs_k.png (Fig. 6).
    """
    figs: list[str] = []
    for col in report.columns:
        if col.kind == "model":
            figs += _model_figures(folder, report, ex, col.name) + _pca_figure(folder, report, latents, col.name)
    figs += _baseline_figure(folder, report, ex)
    between = list(report.config.plan.between)
    series = {}
    for col in report.columns_for("deblur"):
        rows = [col.deblur_per_k.get(k) for k in between]
        series[col.name] = [None if r is None else r.psnr_deblur_quality for r in rows]
    path = save_line_plot(between, series, folder / "psnr_deblur_quality_vs_k.png",
                          xlabel="k (less-blurry input plane)", ylabel="PSNR-deblur-quality (dB, mean per image)",
                          title="Deblurring vs input plane (Fig. 6)")
    return figs + [path.name]
