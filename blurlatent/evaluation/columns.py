"""One report column per model or baseline: the table's rows, a column's typed results, and how they are gathered.

``ROWS`` are the main table's rows (key, label, group, better direction, definition). A ``ColumnResult``
holds one column's numbers: its summary (one value per ROWS key), per-plane and per-k rows and per-field
scores. ``evaluate`` feeds a ``ColumnScorer`` batch by batch (images as float arrays in [0, 1]) and
``ColumnScorer.result`` makes the ColumnResult. ``best_columns`` marks the best column of each row;
``fid_values`` turns the gathered Inception features into FIDs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from blurlatent.errors import Message
from blurlatent.evaluation import metrics as M
from blurlatent.evaluation.plan import PlanePlan

# --- the rows of the main table ---------------------------------------------------------------------


@dataclass
class Row:
    key: str
    label: str
    group: str
    higher_is_better: bool
    definition: str
    scale: float = 1.0  # shown multiplied by this (FFL ×10⁴, as Table 1)


_SYN = "Blur synthesis (paper: vs reconstruction)"
_SYN_REAL = "Blur synthesis vs the real plane x_n"
_DEB = "Deblurring (paper: vs reconstruction)"
_DEB_TRUE = "Deblurring vs the true in-focus x_16"
ROWS = [
    Row("ffl_blur", "FFL (10⁻⁴)", _SYN, False,
        "Focal frequency loss (official package, defaults) between G(z'_n) and G(z_n), mean over images, "
        "shown ×10⁴", 1e4),
    Row("fid_blur", "FID", _SYN, False,
        "Fréchet Inception distance between the sets {G(z'_n)} and {G(z_n)} (pytorch-fid InceptionV3 pool features, "
        "grayscale ×3); with fewer images than its 2048 features FID is biased upward, so compare FIDs only over the "
        "same test set"),
    Row("psnr_blur_pooled", "PSNR-blur (pooled, paper)", _SYN, True,
        "PSNR(G(z'_n), G(z_n)), one figure pooled over all images, range from the targets (the paper's code)"),
    Row("psnr_blur_mean", "PSNR-blur (mean per image)", _SYN, True,
        "PSNR(G(z'_n), G(z_n)) per image (range 1), mean"),
    Row("psnr_blur_quality_pooled", "PSNR-blur-quality (pooled, paper)", _SYN_REAL, True,
        "PSNR(synthesized, x_n) pooled over all images (the paper's PSNR_blur-quality)"),
    Row("psnr_blur_quality_mean", "PSNR-blur-quality (mean per image)", _SYN_REAL, True,
        "PSNR(synthesized, x_n) per image (range 1), mean"),
    Row("ssim_blur_quality", "SSIM-blur-quality", _SYN_REAL, True,
        "SSIM(synthesized, x_n), scikit-image defaults, mean"),
    Row("psnr_blur_quality_cal", "PSNR-blur-quality, calibrated", _SYN_REAL, True,
        "PSNR after the least-squares fit a·synthesized + b ≈ x_n per image: structure only, "
        "gain/offset errors removed"),
    Row("ssim_blur_quality_cal", "SSIM-blur-quality, calibrated", _SYN_REAL, True,
        "SSIM after the same per-image fit a·synthesized + b ≈ x_n"),
    Row("ffl_blur_real", "FFL vs real (10⁻⁴)", _SYN_REAL, False,
        "Focal frequency loss between the synthesized image and x_n, shown ×10⁴", 1e4),
    Row("fid_blur_real", "FID vs real", _SYN_REAL, False,
        "FID between {synthesized} and {x_n}"),
    Row("psnr_deblur_pooled", "PSNR-deblur (pooled, paper)", _DEB, True,
        "PSNR(G(ẑ_16), G(z_16)), ẑ_16 from Eq. 3 on (z_0, z_k), pooled over all images and k"),
    Row("psnr_deblur_mean", "PSNR-deblur (mean per image)", _DEB, True,
        "PSNR(G(ẑ_16), G(z_16)) per image (range 1), mean over images and k"),
    Row("psnr_deblur_quality_pooled", "PSNR-deblur-quality (pooled, paper)", _DEB_TRUE, True,
        "PSNR(deblurred, x_16) pooled over all images and k (the paper's PSNR_deblur-quality)"),
    Row("psnr_deblur_quality_mean", "PSNR-deblur-quality (mean per image)", _DEB_TRUE, True,
        "PSNR(deblurred, x_16) per image (range 1), mean over images and k: the honest end-to-end figure"),
    Row("ssim_deblur_quality", "SSIM-deblur-quality", _DEB_TRUE, True,
        "SSIM(deblurred, x_16), mean"),
    Row("psnr_deblur_quality_cal", "PSNR-deblur-quality, calibrated", _DEB_TRUE, True,
        "PSNR after the per-image least-squares fit a·deblurred + b ≈ x_16"),
    Row("ssim_deblur_quality_cal", "SSIM-deblur-quality, calibrated", _DEB_TRUE, True,
        "SSIM after the same fit"),
    Row("psnr_recon_sharp", "PSNR reconstruction G(z_16) vs x_16", "Reconstruction", True,
        "PSNR(G(E(x_16)), x_16) per image, mean: the ceiling for anything decoded by G"),
    Row("lds", "LDS (Eq. 6)", "Latent geometry (Table 2)", True,
        "mean over fields and the N between-planes of cos_sim(flatten z'_n, flatten z_n); 1 = on the straight line"),
    Row("apd", "APD (Eq. 7)", "Latent geometry (Table 2)", False,
        "mean over fields and the N+1 consecutive pairs (z_0..z_16, endpoints included) of "
        "|d(z_n,z_n+1) − d(z'_n,z'_n+1)|, d = mean squared difference"),
]
ROW_BY_KEY = {r.key: r for r in ROWS}


# --- a column's results -------------------------------------------------------------------------------


def _present(obj) -> dict[str, Any]:
    """A dataclass's fields in order, without those that do not apply (None)."""
    return {f.name: getattr(obj, f.name) for f in fields(obj) if getattr(obj, f.name) is not None}


@dataclass
class BlurScores:
    """Blur synthesis of one plane n for one field. ``psnr_blur``/``ffl_blur`` compare with the
    reconstruction G(z_n): None for baselines, which have none."""

    psnr_blur_quality: float
    ssim_blur_quality: float
    psnr_blur_quality_cal: float
    ssim_blur_quality_cal: float
    ffl_blur_real: float
    psnr_blur: float | None = None
    ffl_blur: float | None = None


@dataclass
class DeblurScores:
    """Deblurring from (far, k) for one field; ``psnr_deblur`` (vs G(z_16)) is None for baselines."""

    psnr_deblur_quality: float
    ssim_deblur_quality: float
    psnr_deblur_quality_cal: float
    ssim_deblur_quality_cal: float
    psnr_deblur: float | None = None


@dataclass
class FieldScores:
    """One test field of one column: blur scores per plane n, deblur scores per k, latent geometry
    and the reconstruction PSNR (models only)."""

    blur: dict[int, BlurScores] = field(default_factory=dict)
    deblur: dict[int, DeblurScores] = field(default_factory=dict)
    lds: float | None = None
    apd: float | None = None
    psnr_recon_sharp: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.blur:
            out["blur"] = {n: _present(s) for n, s in self.blur.items()}
        if self.deblur:
            out["deblur"] = {k: _present(s) for k, s in self.deblur.items()}
        latent = {key: getattr(self, key) for key in ("lds", "apd", "psnr_recon_sharp")}
        return out | {key: value for key, value in latent.items() if value is not None}


@dataclass
class BlurPlaneRow:
    """Plane n of the per-plane table: means over fields (None where the column has no such figure)
    and the pooled PSNR-blur-quality of that plane."""

    psnr_blur: float | None
    psnr_blur_quality: float | None
    ssim_blur_quality: float | None
    psnr_blur_quality_cal: float | None
    ssim_blur_quality_cal: float | None
    ffl_blur: float | None
    ffl_blur_real: float | None
    psnr_blur_quality_pooled: float | None = None


@dataclass
class DeblurKRow:
    """Input plane k of the per-k table (Fig. 6): means over fields, the pooled PSNR-deblur-quality, α."""

    psnr_deblur: float | None
    psnr_deblur_quality: float | None
    ssim_deblur_quality: float | None
    psnr_deblur_quality_cal: float | None
    ssim_deblur_quality_cal: float | None
    psnr_deblur_quality_pooled: float | None = None
    alpha: float | None = None


@dataclass
class ColumnResult:
    """Everything one model or baseline scored. ``summary``: ROWS key → value (None: does not apply)."""

    name: str
    kind: str  # "model" or "baseline"
    tasks: tuple[str, ...]  # of "blur", "deblur", "latent"
    summary: dict[str, float | None]
    blur_per_plane: dict[int, BlurPlaneRow]
    deblur_per_k: dict[int, DeblurKRow]
    per_field: dict[str, FieldScores]



# --- gathering them ------------------------------------------------------------------------------------

# Per-image figures behind the per-plane/per-k tables and the "mean per image" rows, in table order.
BLUR_KEYS = ("psnr_blur", "psnr_blur_quality", "ssim_blur_quality", "psnr_blur_quality_cal", "ssim_blur_quality_cal",
             "ffl_blur", "ffl_blur_real")
DEBLUR_KEYS = ("psnr_deblur", "psnr_deblur_quality", "ssim_deblur_quality", "psnr_deblur_quality_cal",
               "ssim_deblur_quality_cal")
# PSNRs whose summary row is the mean of per-image values ("_mean") beside a pooled one ("_pooled").
POOLED_KEYS = ("psnr_blur", "psnr_blur_quality", "psnr_deblur", "psnr_deblur_quality")


def blur_metrics(synth, real, recon=None) -> dict[str, np.ndarray]:
    """Per-image blur-synthesis figures (float64 [N] each) for [N, H, W] stacks; ``recon`` (G(z_n)) None
    for baselines, which then get no ``psnr_blur``/``ffl_blur``."""
    out = {
        "psnr_blur_quality": M.psnr_per_image(synth, real),
        "ssim_blur_quality": M.ssim_per_image(synth, real),
        "psnr_blur_quality_cal": M.psnr_calibrated(synth, real),
        "ssim_blur_quality_cal": M.ssim_calibrated(synth, real),
        "ffl_blur_real": M.ffl_per_image(synth, real),
    }
    if recon is not None:
        out["psnr_blur"] = M.psnr_per_image(synth, recon)
        out["ffl_blur"] = M.ffl_per_image(synth, recon)
    return out


def deblur_metrics(deblurred, truth, recon_sharp=None) -> dict[str, np.ndarray]:
    """Per-image deblurring figures (float64 [N] each) for [N, H, W] stacks; ``recon_sharp`` (G(z_16))
    None for baselines."""
    out = {
        "psnr_deblur_quality": M.psnr_per_image(deblurred, truth),
        "ssim_deblur_quality": M.ssim_per_image(deblurred, truth),
        "psnr_deblur_quality_cal": M.psnr_calibrated(deblurred, truth),
        "ssim_deblur_quality_cal": M.ssim_calibrated(deblurred, truth),
    }
    if recon_sharp is not None:
        out["psnr_deblur"] = M.psnr_per_image(deblurred, recon_sharp)
    return out


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


class ColumnScorer:
    """Everything one model (or baseline) scores, gathered batch by batch: per-field scores, pooled
    PSNRs (whole set and per plane) and FID features (``features["synth"]``, ``features["recon"]``)."""

    def __init__(self, name: str, kind: str, tasks: tuple[str, ...]):
        self.name, self.kind, self.tasks = name, kind, tasks
        self.per_field: dict[str, FieldScores] = {}
        self.pooled: dict[tuple[str, int | None], M.PooledPSNR] = {}  # (key, plane or None for all)
        self.features: dict[str, list[np.ndarray]] = {}

    def field(self, name: str) -> FieldScores:
        return self.per_field.setdefault(name, FieldScores())

    def _pool(self, key: str, plane: int | None, pred, target) -> None:
        self.pooled.setdefault((key, plane), M.PooledPSNR()).update(pred, target)

    def add_blur(self, names: Sequence[str], plan: PlanePlan, synth, real, recon=None) -> None:
        """synth/real/recon: [B, N, H, W] for plan.between; ``names`` the B fields."""
        for j, plane in enumerate(plan.between):
            values = blur_metrics(synth[:, j], real[:, j], None if recon is None else recon[:, j])
            for i, name in enumerate(names):
                self.field(name).blur[plane] = BlurScores(**{k: float(v[i]) for k, v in values.items()})
            self._pool("psnr_blur_quality", None, synth[:, j], real[:, j])
            self._pool("psnr_blur_quality", plane, synth[:, j], real[:, j])
            if recon is not None:
                self._pool("psnr_blur", None, synth[:, j], recon[:, j])

    def add_deblur(self, names: Sequence[str], plan: PlanePlan, deblurred, truth, recon_sharp=None) -> None:
        """deblurred: [B, N, H, W] for k in plan.between; truth/recon_sharp: [B, H, W]."""
        for j, k in enumerate(plan.between):
            values = deblur_metrics(deblurred[:, j], truth, recon_sharp)
            for i, name in enumerate(names):
                self.field(name).deblur[k] = DeblurScores(**{key: float(v[i]) for key, v in values.items()})
            self._pool("psnr_deblur_quality", None, deblurred[:, j], truth)
            self._pool("psnr_deblur_quality", k, deblurred[:, j], truth)
            if recon_sharp is not None:
                self._pool("psnr_deblur", None, deblurred[:, j], recon_sharp)

    def add_latent(self, names: Sequence[str], lds, apd, psnr_recon_sharp) -> None:
        """Per-field LDS, APD and reconstruction PSNR (float [B] each)."""
        for i, name in enumerate(names):
            scores = self.field(name)
            scores.lds, scores.apd, scores.psnr_recon_sharp = float(lds[i]), float(apd[i]), float(psnr_recon_sharp[i])

    def add_features(self, key: str, feats: np.ndarray) -> None:
        self.features.setdefault(key, []).append(feats)

    def _values(self, section: str, key: str, at: int | None = None) -> list[float]:
        """``key`` of every field and plane (only plane ``at`` if given) of ``section`` ("blur"/"deblur")."""
        return [getattr(s, key) for f in self.per_field.values() for p, s in getattr(f, section).items()
                if getattr(s, key) is not None and (at is None or p == at)]

    def _pooled(self, key: str, plane: int | None = None) -> float | None:
        acc = self.pooled.get((key, plane))
        return acc.compute() if acc else None

    def summary(self, fid: dict[str, float | None]) -> dict[str, float | None]:
        """ROWS key → the column's figure (None where it does not apply); ``fid`` holds the FID rows."""
        out: dict[str, float | None] = {}
        for section, keys in (("blur", BLUR_KEYS), ("deblur", DEBLUR_KEYS)):
            for key in keys:
                out[key + ("_mean" if key in POOLED_KEYS else "")] = _mean(self._values(section, key))
        for key in POOLED_KEYS:
            out[key + "_pooled"] = self._pooled(key)
        for key in ("psnr_recon_sharp", "lds", "apd"):
            out[key] = _mean([getattr(f, key) for f in self.per_field.values()])
        out.update(fid)
        return {r.key: out.get(r.key) for r in ROWS}

    def blur_rows(self, plan: PlanePlan) -> dict[int, BlurPlaneRow]:
        """Per plane n: means over fields and the plane's pooled PSNR-blur-quality (planes this column scored)."""
        rows = {}
        for n in plan.between:
            means = {k: _mean(self._values("blur", k, n)) for k in BLUR_KEYS}
            if any(v is not None for v in means.values()):
                rows[n] = BlurPlaneRow(**means, psnr_blur_quality_pooled=self._pooled("psnr_blur_quality", n))
        return rows

    def deblur_rows(self, plan: PlanePlan) -> dict[int, DeblurKRow]:
        """Per input plane k: means over fields, the pooled PSNR-deblur-quality and Eq. 3's α."""
        rows = {}
        for k in plan.between:
            means = {key: _mean(self._values("deblur", key, k)) for key in DEBLUR_KEYS}
            if any(v is not None for v in means.values()):
                rows[k] = DeblurKRow(**means, psnr_deblur_quality_pooled=self._pooled("psnr_deblur_quality", k),
                                     alpha=plan.deblur_alpha(k))
        return rows

    def result(self, plan: PlanePlan, fid: dict[str, float | None]) -> ColumnResult:
        """The finished column for the report."""
        return ColumnResult(name=self.name, kind=self.kind, tasks=self.tasks, summary=self.summary(fid),
                            blur_per_plane=self.blur_rows(plan), deblur_per_k=self.deblur_rows(plan),
                            per_field=self.per_field)


def best_columns(columns: Sequence[ColumnResult]) -> dict[str, list[str]]:
    """ROWS key → the names of the columns holding the best finite value of that row (ties all marked)."""
    best: dict[str, list[str]] = {}
    for row in ROWS:
        vals = {c.name: v for c in columns if (v := c.summary.get(row.key)) is not None and np.isfinite(v)}
        if not vals:
            continue
        target = max(vals.values()) if row.higher_is_better else min(vals.values())
        best[row.key] = [name for name, v in vals.items() if np.isclose(v, target, rtol=0, atol=1e-12)]
    return best


def fid_values(scorers: Sequence[ColumnScorer], real_features: list[np.ndarray],
               note: Message | str | None) -> dict[str, dict[str, float | None]]:
    """Column name → FID rows: fid_blur (synth vs reconstructions, models) and fid_blur_real (synth vs x_n).

    Empty when FID is unavailable (``note`` says why) or no features were gathered.
    """
    out: dict[str, dict[str, float | None]] = {}
    if note is not None or not real_features:
        return out
    real = np.concatenate(real_features)
    for col in scorers:
        if "synth" not in col.features:
            continue
        synth = np.concatenate(col.features["synth"])
        if len(synth) < 2:
            continue
        values: dict[str, float | None] = {"fid_blur_real": M.fid_from_features(synth, real)}
        if "recon" in col.features:
            values["fid_blur"] = M.fid_from_features(synth, np.concatenate(col.features["recon"]))
        out[col.name] = values
    return out
