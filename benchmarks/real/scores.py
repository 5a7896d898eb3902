"""What the real-content benchmark measures on one output image.

* ``quality``: PSNR and SSIM after a per-image least-squares gain/offset fit to the truth
  (``metrics.psnr_calibrated`` / ``ssim_calibrated``, the synthetic bench's calibrated figures), the truth scaled
  to [0, 1] by its own min and max, so a method's intensity scale does not count, only structure;
* ``segment_nuclei``: a FIXED classical segmentation (Gaussian smoothing σ 1 px, Otsu threshold, objects under
  30 px dropped, watershed of the distance transform from its local maxima ≥ 7 px apart), the same for every
  method and for the truth itself (the ceiling); ``match`` scores it against the set's masks: F1 at IoU > 0.5
  (a match is then unique) and the count error (n_found − n_true)/n_true;
* ``intensity_error``: per nucleus (its mask label grown by 3 px), the integrated intensity above background of
  the output against the truth's, both background-subtracted by ``intensity.background``; the median of
  |output − truth| / truth over the nuclei.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.measure import label
from skimage.morphology import remove_small_objects
from skimage.segmentation import expand_labels, relabel_sequential, watershed

from blurlatent.evaluation.metrics import psnr_calibrated, ssim_calibrated
from blurlatent.intensity import background

SEG_SMOOTH_PX = 1.0
SEG_MIN_AREA_PX = 30
SEG_MIN_DISTANCE_PX = 7
MATCH_IOU = 0.5
INTENSITY_GROW_PX = 3


def unit_range(image: np.ndarray) -> np.ndarray:
    """float64 [H, W]: ``image`` mapped by its own min and max to [0, 1] (a flat image to 0)."""
    image = np.asarray(image, np.float64)
    lo, hi = float(image.min()), float(image.max())
    return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


def quality(pred: np.ndarray, truth_unit: np.ndarray) -> tuple[float, float]:
    """(PSNR dB, SSIM) of ``pred`` (any scale) after its least-squares gain/offset fit to ``truth_unit`` ([0, 1])."""
    pred = np.asarray(pred, np.float64)
    return float(psnr_calibrated(pred, truth_unit)), float(ssim_calibrated(pred, truth_unit))


def segment_nuclei(image: np.ndarray) -> np.ndarray:
    """int32 [H, W] labels 1…n of the nuclei found in ``image`` (any scale) by the fixed classical pipeline."""
    smooth = ndi.gaussian_filter(np.asarray(image, np.float64), SEG_SMOOTH_PX)
    if not smooth.max() > smooth.min():
        return np.zeros(smooth.shape, np.int32)
    mask = remove_small_objects(smooth > threshold_otsu(smooth), max_size=SEG_MIN_AREA_PX - 1)
    if not mask.any():
        return np.zeros(smooth.shape, np.int32)
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(distance, min_distance=SEG_MIN_DISTANCE_PX, labels=label(mask), exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=mask)
    return relabel_sequential(labels)[0].astype(np.int32)


def match(found: np.ndarray, truth: np.ndarray) -> dict:
    """{"f1", "count_error", "matched", "found", "true"}: objects paired at IoU > ``MATCH_IOU`` (unique pairs),
    F1 = 2·matched/(found + true) (1 when both are empty), count error (found − true)/true (None without truth)."""
    found, truth = relabel_sequential(found)[0], relabel_sequential(truth)[0]
    n_found, n_true = int(found.max()), int(truth.max())
    joint = np.bincount(truth.ravel().astype(np.int64) * (n_found + 1) + found.ravel(),
                        minlength=(n_true + 1) * (n_found + 1)).reshape(n_true + 1, n_found + 1)
    inter = joint[1:, 1:].astype(np.float64)
    union = joint[1:].sum(1)[:, None] + joint[:, 1:].sum(0)[None, :] - inter
    matched = int(np.count_nonzero(inter > MATCH_IOU * union)) if inter.size else 0
    f1 = 2.0 * matched / (n_found + n_true) if n_found + n_true else 1.0
    count = (n_found - n_true) / n_true if n_true else None
    return {"f1": f1, "count_error": count, "matched": matched, "found": n_found, "true": n_true}


def nucleus_regions(labels: np.ndarray) -> np.ndarray:
    """The truth's labels grown by ``INTENSITY_GROW_PX`` (without merging): where each nucleus's light is summed."""
    return expand_labels(labels, INTENSITY_GROW_PX)


def nucleus_totals(image: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """float64 [n]: Σ (image − background(image)) over each region 1…n."""
    image = np.asarray(image, np.float64)
    return np.bincount(regions.ravel(), weights=(image - background(image)).ravel(),
                       minlength=int(regions.max()) + 1)[1:]


def intensity_error(pred: np.ndarray, truth_totals: np.ndarray, regions: np.ndarray) -> float | None:
    """Median over nuclei of |Σ pred − Σ truth| / Σ truth (both above background), nuclei with Σ truth > 0 only;
    None when there is none."""
    keep = truth_totals > 0
    if not keep.any():
        return None
    totals = nucleus_totals(pred, regions)
    return float(np.median(np.abs(totals[keep] - truth_totals[keep]) / truth_totals[keep]))
