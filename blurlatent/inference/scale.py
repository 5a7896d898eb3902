"""Physical units at inference: the scale a model was trained at, and inputs brought to it and back.

A model learns cells and defocus blur at one pixel size: a stack at 0.3225 µm/px shows it nuclei and blur
discs twice as wide, in pixels, as it was trained on, and it deblurs them worse than the same stack binned 2×.
So the Predictor (the one forward path of the CLI, the API, folder modes and napari) resamples a pair to the
model's pixel size, runs the model there, and resamples the result back to the input's exact shape:

* ``TrainedScale``: µm per pixel, µm between planes, and the largest defocus the model saw (µm from focus),
  from a checkpoint's config (``trained_scale``; a checkpoint older than these fields: BBBC006's scale,
  ``config.OLDER_DEFAULTS``) or a built-in model's card;
* ``rescale_factor``: how much to resample (``--rescale auto``), with the line that says so, or 1 (``off``, a
  pixel size within ``SAME_SCALE`` of the model's, or one that is unknown: then a note says how to give it);
* ``resample``: area averaging where an axis shrinks (each output pixel the mean of the input area it covers, so
  a factor of exactly 0.5 is 2×2 mean binning) and linear interpolation of pixel centres where it grows;
* ``defocus_warning``: one warning when the blurriest plane lies farther from focus than the model was trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from blurlatent.config import upgrade
from blurlatent.errors import Message
from blurlatent.intensity import to_dtype

log = logging.getLogger(__name__)

SAME_SCALE = 0.05  # inputs within 5 % of the model's pixel size are not resampled (the blur differs less than that)
FAR_SCALE = 1.5  # --rescale off: a warning when the input's pixel size is more than 1.5× off the model's
DEFOCUS_SLACK = 1.05  # a blurriest plane up to 5 % beyond the trained defocus passes without a warning


@dataclass(frozen=True)
class TrainedScale:
    """What a model was trained at; None where it does not say: ``pixel_size_um`` µm per pixel, ``z_step_um`` µm
    between planes, ``defocus_um`` the farthest a training plane lay from the in-focus plane."""

    pixel_size_um: float | None = None
    z_step_um: float | None = None
    defocus_um: float | None = None

    def words(self) -> str:
        """``0.645 µm/px, 2 µm per plane, defocus up to 32 µm``, the parts it knows ("" for none)."""
        parts = [f"{self.pixel_size_um:g} µm/px" if self.pixel_size_um else "",
                 f"{self.z_step_um:g} µm per plane" if self.z_step_um else "",
                 f"defocus up to {self.defocus_um:g} µm" if self.defocus_um else ""]
        return ", ".join(p for p in parts if p)


def trained_scale(config: dict) -> TrainedScale:
    """The scale of a checkpoint's config (plain data, of any version: ``config.upgrade``): its data's pixel size and
    z step, and the defocus its triplets spanned (the largest right − left plane distance times the z step)."""
    data = upgrade(config, "checkpoint config").get("data") or {}
    pixel, step = data.get("pixel_size_um"), data.get("z_step_um")
    spans = [t[2] - t[0] for t in data.get("triplets") or () if isinstance(t, (list, tuple)) and len(t) == 3]
    defocus = max(spans) * step if spans and step else None
    return TrainedScale(float(pixel) if pixel else None, float(step) if step else None,
                        float(defocus) if defocus else None)


def card_scale(card: dict) -> TrainedScale:
    """The scale a built-in model's card states (``pixel_size_um``, ``z_step_um``, ``defocus_um`` [near, far])."""
    defocus = card.get("defocus_um") or [None, None]
    return TrainedScale(card.get("pixel_size_um"), card.get("z_step_um"), defocus[-1])


def rescale_factor(pixel_size: float | None, trained: TrainedScale | None, mode: str) -> tuple[float, Message | None,
                                                                                             bool]:
    """(factor, the line that says so, whether it is a warning): resample an input of ``pixel_size`` µm/px by
    ``factor`` (output size = input size × factor; 1: as it is) to reach the model's pixel size. ``mode`` "auto"
    resamples unless the sizes are within ``SAME_SCALE`` or one is unknown (a note then); "off" never does, and
    warns when the input is more than ``FAR_SCALE`` off the model."""
    model = trained.pixel_size_um if trained is not None else None
    if model is None:
        note = None if pixel_size is None or mode == "off" else Message(
            "the model does not record the pixel size it was trained at, so the input was not rescaled")
        return 1.0, note, False
    if pixel_size is None:
        return 1.0, None if mode == "off" else Message(
            f"the input's pixel size is unknown (its file does not say), so it was not rescaled to the model's "
            f"{model:g} µm/px; pass {{pixel_size}} if it differs", "pixel_size"), False
    ratio = pixel_size / model
    if mode == "off":
        if max(ratio, 1 / ratio) <= FAR_SCALE:
            return 1.0, None, False
        finer = f"{1 / ratio:.3g}× finer" if ratio < 1 else f"{ratio:.3g}× coarser"
        return 1.0, Message(f"the input's pixel size {pixel_size:g} µm/px is {finer} than the model's {model:g} µm/px "
                            "and {rescale=off} leaves it so: expect a worse result; leave {rescale} at auto (it "
                            f"resamples to the model's scale and back), or bin the image to {model:g} µm/px yourself",
                            "rescale"), True
    if abs(ratio - 1) <= SAME_SCALE:
        return 1.0, None, False
    return ratio, Message(f"rescaled {pixel_size:g} → {model:g} µm/px (×{ratio:.4g}) and back"), False


def scaled_shape(shape: Sequence[int], factor: float) -> tuple[int, int]:
    """The [H, W] of an image of ``shape`` resampled by ``factor`` (at least 2 px each way)."""
    return max(2, round(shape[-2] * factor)), max(2, round(shape[-1] * factor))


def run_rescaled(run: Callable[[list[np.ndarray], list[np.ndarray]], np.ndarray], firsts: Sequence[np.ndarray],
                 seconds: Sequence[np.ndarray], factor: float, dtypes: Sequence) -> np.ndarray:
    """``run`` (pairs → float [N, K, h, w]) on the pairs resampled by ``factor``, its outputs resampled back to the
    pairs' shape and cast to ``dtypes`` (one per pair): what the model makes of the pairs at its own pixel size."""
    hw, small = firsts[0].shape, scaled_shape(firsts[0].shape, factor)
    out = run([resample(a, small) for a in firsts], [resample(b, small) for b in seconds])
    return np.stack([to_dtype(resample(levels, hw), np.dtype(d)) for levels, d in zip(out, dtypes, strict=True)])


def resample(images: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """float32 [..., H, W] → [..., h, w] (``shape``): each axis shrunk by area averaging (exact box integrals, so
    2×2 mean binning when it halves an even size) or grown by linear interpolation of pixel centres (edges held)."""
    out = np.asarray(images, dtype=np.float32)
    for axis, size in zip((-2, -1), shape, strict=True):
        n = out.shape[axis]
        if size != n:
            moved = np.moveaxis(out, axis, -1)
            moved = area_mean(moved, size) if size < n else linear(moved, size)
            out = np.moveaxis(moved, -1, axis)
    return np.ascontiguousarray(out, dtype=np.float32)


def area_mean(a: np.ndarray, size: int) -> np.ndarray:
    """The last axis of ``a`` (n values) shrunk to ``size``: each output the mean of the span of n / size inputs it
    covers, from the running sum (the integral of the piecewise-constant signal) at the spans' edges."""
    n = a.shape[-1]
    edges = np.arange(size + 1) * (n / size)
    cum = np.concatenate([np.zeros((*a.shape[:-1], 1)), np.cumsum(a, axis=-1, dtype=np.float64)], axis=-1)
    k = np.minimum(np.floor(edges).astype(np.int64), n - 1)
    integral = cum[..., k] + (edges - k) * a[..., k]
    return (np.diff(integral, axis=-1) * (size / n)).astype(np.float32)


def linear(a: np.ndarray, size: int) -> np.ndarray:
    """The last axis of ``a`` (n ≥ 2 values) grown to ``size`` by linear interpolation, pixel centres aligned."""
    n = a.shape[-1]
    x = np.clip((np.arange(size) + 0.5) * (n / size) - 0.5, 0, n - 1)
    k = np.minimum(np.floor(x).astype(np.int64), n - 2)
    frac = (x - k).astype(np.float32)
    return a[..., k] * (1 - frac) + a[..., k + 1] * frac


def defocus_warning(defocus_um: float | None, trained: TrainedScale | None, name: str = "input") -> Message | None:
    """The warning when the blurriest plane lies ``defocus_um`` from focus, beyond the defocus the model was trained
    on (by more than ``DEFOCUS_SLACK``); None when within it or when either is unknown."""
    far = trained.defocus_um if trained is not None else None
    if defocus_um is None or far is None or defocus_um <= far * DEFOCUS_SLACK:
        return None
    return Message(f"{name}: the blurriest plane lies {defocus_um:.3g} µm from focus, beyond the {far:g} µm the model "
                   "was trained on: expect artefacts; choose a blurriest plane nearer focus ({z}), or a model "
                   "trained on wider defocus", "z")
