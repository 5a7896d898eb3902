"""The public API's arguments checked before any work: α lists, image pairs, keyword options; one-line
UsageErrors naming the argument (``predictor``'s ``blur``/``deblur``/``load_model`` use them)."""

from __future__ import annotations

import numbers

import numpy as np

from blurlatent.config import InferenceConfig
from blurlatent.errors import UsageError
from blurlatent.files.images import check_grayscale


def alpha_list(alpha) -> list[float]:
    """``alpha``, a number or a 1-D sequence (or array) of numbers, as a list of floats; UsageError naming alpha for
    anything else (a 2-D array, a string, None among the values)."""
    try:
        values = np.asarray(alpha)
    except (TypeError, ValueError):  # ragged nesting
        values = None
    if values is None or values.ndim > 1 or values.dtype.kind not in "iuf":
        raise UsageError(f"{{alpha}}: got {described(alpha)}; give a number or a 1-D list of numbers, e.g. 0.5 or "
                         "[0.25, 0.5]", "alpha")
    return np.atleast_1d(values).astype(float).tolist()


def check_pair(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    """UsageError unless ``a`` and ``b`` are finite grayscale planes of one shape (singleton axes allowed)."""
    for arr, name in zip((a, b), names, strict=True):
        if not isinstance(arr, np.ndarray):
            raise UsageError(f"{name}: expected a numpy array, got {type(arr).__name__}")
        if np.squeeze(arr).ndim != 2:
            raise UsageError(f"{name}: image has shape {tuple(arr.shape)}, expected one grayscale plane [H, W]")
        check_grayscale(arr, name)
    if np.squeeze(a).shape != np.squeeze(b).shape:
        raise UsageError(f"{names[0]} is {np.squeeze(a).shape} but {names[1]} is {np.squeeze(b).shape}: "
                         "pass two images of one field and size")


def described(value) -> str:
    """A wrong argument as a one-line message shows it: its type and the start of its repr."""
    return f"{type(value).__name__} {' '.join(repr(value).split())[:60]}"


def api_options(intensity, tile, precision, batch_size, out_dtype, pixel_size=None,
                rescale=InferenceConfig.rescale) -> dict:
    """``blur``'s and ``deblur``'s keyword options as ``Predictor.with_options`` takes them; UsageError naming the
    one of a wrong type (their values are ``InferenceConfig.check``'s)."""
    whole, text = ((numbers.Integral, type(None)), "a whole number"), ((str,), "a string")
    size = ((numbers.Real, type(None)), "the images' µm per pixel, a number")
    for name, value, (kinds, what) in (("tile", tile, whole), ("batch_size", batch_size, whole),
                                       ("intensity", intensity, text), ("precision", precision, text),
                                       ("pixel_size", pixel_size, size), ("rescale", rescale, text)):
        if isinstance(value, bool) or not isinstance(value, kinds) or (name == "batch_size" and value is None):
            raise UsageError(f"{name}: got {described(value)}; pass {what}")
    try:
        dtype = None if out_dtype is None else np.dtype(out_dtype).name
    except TypeError:
        raise UsageError(f"out_dtype: got {described(out_dtype)}; pass uint8, uint16 or float32") from None
    return {"intensity": intensity, "tile": tile, "precision": precision, "batch_size": batch_size, "out_dtype": dtype,
            "pixel_size": pixel_size, "rescale": rescale}
