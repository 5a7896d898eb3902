"""The evaluation report's figures (Figs 2, 5, 6, 7), drawn with ``files.pictures`` (matplotlib, imported only
when a figure is drawn)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from blurlatent.errors import UsageError
from blurlatent.evaluation.plan import Examples, LatentSamples
from blurlatent.evaluation.report import Report
from blurlatent.files.pictures import pyplot, save_figure, save_grid, save_line_plot


def save_pca_plot(points: np.ndarray, plane_labels: Sequence[str], path: str | Path, title: str | None = None,
                  max_lines: int = 12) -> Path:
    """Latent trajectories in 2-D (Fig. 5): ``points`` float [fields, planes, 2] in blur order.

    Dots are the encoder's codes, coloured by plane; a dashed line joins each field's first and last
    plane — the straight z_far → z_in-focus path on which Eq. 2 puts every interpolated code (the
    projection is linear, so the straight segment stays straight). Lines are drawn for ``max_lines`` fields.
    """
    plt = pyplot()
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
    return save_figure(fig, path)


# --- the evaluation report's figures ------------------------------------------------------------------






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


def _model_figures(folder: Path, report: Report, ex: Examples, name: str) -> list[str]:
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


def _pca_figure(folder: Path, report: Report, latents: LatentSamples, name: str) -> list[str]:
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


def _baseline_figure(folder: Path, report: Report, ex: Examples) -> list[str]:
    """deblur_baselines.png: Richardson–Lucy, Wiener and the two-plane Wiener beside their inputs and the truth."""
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
                         ex.images["wiener2"][i][j], real[i][-1]])
            labels.append(f"{field} k={k}")
    path = save_grid(rows, folder / "deblur_baselines.png", row_labels=labels,
                     col_labels=[f"x{plan.far}", "x_k", "Richardson–Lucy", "Wiener", "two-plane Wiener",
                                 f"truth x{plan.target}"],
                     title="classical deconvolution baselines")
    return [path.name]


def write_report_figures(folder: Path, report: Report, ex: Examples, latents: LatentSamples) -> list[str]:
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
