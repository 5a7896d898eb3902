"""What the napari widgets compute, without napari or Qt: requests in, image layers out.

A widget reads its form into a request (plain arrays, numbers and paths), and its thread worker runs
``guarded(job, ticker)``: the job loads ``inference.Predictor`` from the checkpoint — the forward path of
``blurlatent deblur`` and ``blurlatent blur`` — and returns a napari layer-data tuple. The ``Ticker`` is the
Predictor's per-tile ``progress`` callback: it reports tiles to the widget and raises ``Cancelled`` at
the next tile once the user cancelled. Errors come back as the library's one-line message, as on the
command line; nothing is added to the viewer then.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from blurlatent.config import InferenceConfig, Intensity, OutDtype, choices
from blurlatent.errors import RuntimeFailure, UsageError, one_line
from blurlatent.files.stacks import Stack
from blurlatent.inference.alphas import AUTO, DeblurLevels, alpha_source, blur_alphas
from blurlatent.inference.builtin import resolve_checkpoint
from blurlatent.inference.predictor import Predictor

log = logging.getLogger(__name__)

# The exceptions the command line reports as a usage error or a runtime failure (blurlatent.errors), with the
# same one line (``one_line``: parameters in the library's words, as the widgets name them).
EXPECTED = (UsageError, RuntimeFailure, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
# Display range of a new layer: these percentiles of its pixels, so a few hot pixels do not dim the rest.
CONTRAST_PERCENTILES = (0.1, 99.9)


class Cancelled(Exception):
    """The user pressed Cancel; raised by the Ticker at the next tile."""


class Ticker:
    """The per-tile ``progress(done, total)`` callback: ``report`` each tile, stop once ``stop()`` is true."""

    def __init__(self, report: Callable[[int, int], None] = lambda done, total: None,
                 stop: Callable[[], bool] = lambda: False):
        self.report = report
        self.stop = stop

    def check(self) -> None:
        if self.stop():
            raise Cancelled("cancelled")

    def __call__(self, done: int, total: int) -> None:
        self.report(done, total)
        self.check()


@dataclass
class Outcome:
    """What a worker hands back: a layer-data tuple, or the one-line error, or a cancel; and the library's
    warnings on the way (clipped pixels, a large Eq. 3 gain), which the CLI would print."""

    layer: tuple | None = None
    error: str | None = None
    cancelled: bool = False
    warnings: list[str] = field(default_factory=list)


class WarningsOfThisThread(logging.Handler):
    """Collects the ``blurlatent`` loggers' warnings emitted by the thread that created it."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(" ".join(record.getMessage().split()))


def failure(exc: Exception) -> Outcome:
    """An exception as an Outcome: bad input and runtime failures as the CLI's one-line message, anything
    else as an internal error (call inside ``except``: its traceback goes to the log), a cancel as such."""
    if isinstance(exc, Cancelled):
        return Outcome(cancelled=True)
    if isinstance(exc, EXPECTED):
        return Outcome(error=one_line(exc))
    log.exception("blurlatent napari job failed")
    return Outcome(error=f"internal error: {type(exc).__name__}: {one_line(exc)} (a bug in blurlatent: "
                         "please report it with the traceback from the log)")


def guarded(job: Callable[[Ticker], tuple], ticker: Ticker) -> Outcome:
    """``job(ticker)`` as an Outcome, with the warnings it logged; never raises."""
    collect = WarningsOfThisThread()
    logger = logging.getLogger("blurlatent")
    logger.addHandler(collect)
    try:
        outcome = Outcome(layer=job(ticker))
    except Exception as exc:
        outcome = failure(exc)
    finally:
        logger.removeHandler(collect)
    outcome.warnings = collect.messages
    return outcome


# --- reading the form ------------------------------------------------------------------------------


@dataclass
class Placement:
    """Where the input layer sits in the world (its last two axes): the output goes on top of it."""

    scale: tuple[float, float] = (1.0, 1.0)
    translate: tuple[float, float] = (0.0, 0.0)
    colormap: str = "gray"
    pixel_size_um: float | None = None  # the input's, where known: the model runs at its own and back (--rescale)


def layer_plane(stack, index: int, name: str) -> np.ndarray:
    """Plane ``index`` of a [Z, H, W] stack (any array with ``ndim``, ``shape`` and indexing: only that
    plane is read); UsageError for another shape or an index outside it."""
    if stack.ndim != 3:
        raise UsageError(f"stack: the layer has shape {tuple(stack.shape)}, expected a z-stack [Z, H, W] or "
                         "channels of one [C, Z, H, W]")
    if not 0 <= index < stack.shape[0]:
        raise UsageError(f"{name} {index} is outside the stack's planes 0..{stack.shape[0] - 1}")
    return np.asarray(stack[index])


def channel_axis(axis_labels) -> int:
    """The channel axis of a 4-D layer: the one labelled ``c`` or ``channel``, else the first ([C, Z, H, W], as
    napari's reader opens an OME-TIFF; it opens an ImageJ hyperstack as [Z, C, H, W], unlabelled: the blurlatent
    reader opens it as one layer per channel instead)."""
    labels = [str(label).strip().lower() for label in axis_labels]
    return next((i for i, label in enumerate(labels) if label in ("c", "channel")), 0)


def layer_channel(data, axis: int, channel: int):
    """Channel ``channel`` of a 4-D layer's ``data`` along ``axis``, as a [Z, H, W] view (numpy, dask, zarr: nothing
    is read); a 3-D ``data`` as it is. UsageError for a channel the layer does not have."""
    if data.ndim != 4:
        return data
    count = data.shape[axis]
    if not 0 <= channel < count:
        raise UsageError(f"channel {channel} is not a channel of the stack layer: it has {count}, 0..{count - 1}")
    return data[(slice(None),) * axis + (channel,)]


def parse_alphas(text: str) -> list[float]:
    """``"0.25, 0.5 0.75"`` → [0.25, 0.5, 0.75]; UsageError naming a value that is not a number."""
    values = []
    for word in re.split(r"[,;\s]+", text.strip()):
        if not word:
            continue
        try:
            values.append(float(word))
        except ValueError:
            raise UsageError(f"alpha {word!r} is not a number; give values like 0.25, 0.5, 0.75") from None
    return values


def parse_tile(text: str) -> int | None:
    """The tile field: empty or ``auto`` → None (whole image up to 2048 px), else a size in pixels."""
    text = text.strip().lower()
    if text in ("", "auto"):
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"tile {text!r}: give a tile size in pixels, 0 for whole-image inference, or auto") from None


SAME_AS_INPUT: Final = "as input"
OUT_DTYPES = (SAME_AS_INPUT, *choices(OutDtype))


def inference_config(tile: str, device: str, out_dtype: OutDtype | Literal["as input"] = SAME_AS_INPUT,
                     intensity: Intensity = InferenceConfig.intensity) -> InferenceConfig:
    """The advanced options as the CLI's InferenceConfig (its defaults otherwise), checked."""
    return InferenceConfig(tile=parse_tile(tile), device=device.strip() or InferenceConfig.device, intensity=intensity,
                           out_dtype=None if out_dtype == SAME_AS_INPUT else out_dtype).check()


def checkpoint_path(value) -> Path:
    """The checkpoint field as a path: a file, or a built-in model's name ("w1"); empty: the built-in default model
    (``builtin``: its checksum checked; UsageError when this installation has none)."""
    text = str(value or "").strip()
    return resolve_checkpoint(None if text in ("", ".") else Path(text).expanduser())[0]


# --- the jobs --------------------------------------------------------------------------------------


def display_range(data: np.ndarray) -> tuple[float, float]:
    """Contrast limits for ``data``: its 0.1–99.9th percentiles (min/max when they coincide)."""
    lo, hi = (float(v) for v in np.percentile(data, CONTRAST_PERCENTILES))
    if hi <= lo:
        lo, hi = float(data.min()), float(data.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


@dataclass
class DeblurRequest:
    """Two planes of one field and how to deblur them (the arguments of ``blurlatent deblur``): α given, or from
    ``planes`` of two layers toward ``target`` (a number), or from planes ``z`` of ``stack`` toward ``target``, a
    plane of the stack or ``"auto"``, the focus found in it (``inference.alphas``)."""

    blurriest: np.ndarray
    less_blurry: np.ndarray
    checkpoint: Path
    alpha: float | None = None  # Eq. 3's α, or None to take it from planes
    planes: tuple[float, float] | None = None  # focal planes of blurriest and less_blurry (two layers)
    target: float | str | None = AUTO
    config: InferenceConfig = field(default_factory=InferenceConfig)
    placement: Placement = field(default_factory=Placement)
    source: str = ""  # the input layers' names, for the metadata
    z: tuple[int, int] | None = None  # the two planes' indices in ``stack``
    stack: Any = None  # the [Z, H, W] stack layer's data (read whole only to find its focus)

    def levels(self) -> DeblurLevels:
        """α and where it came from; UsageError (the CLI's message) for contradictions, a target outside the stack
        or a focus found at its first or last plane."""
        source = alpha_source(self.alpha, self.planes, self.target, z=self.z)
        if source.empty:
            raise UsageError("alpha or planes: give one")
        stack = Stack(np.asarray(self.stack), "ZYX") if source.needs_stack else None
        return source.levels(stack, "the stack layer")

    def alpha_value(self) -> float:
        return self.levels().alphas[0]

    def __call__(self, ticker: Ticker) -> tuple:
        levels = self.levels()
        alpha = levels.alphas[0]
        predictor = Predictor.from_checkpoint(self.checkpoint, self.config)
        ticker.check()
        data = predictor.deblur(self.blurriest, self.less_blurry, alpha, progress=ticker,
                                pixel_size=self.placement.pixel_size_um)
        # what the CLI prints about this job (the focus found, α and its planes) and the output's self-check
        # (``inference.selfcheck``, the Predictor's), shown in the widget's "last run" line
        check = predictor.checks[0][0] if predictor.checks else None
        summary = [*(levels.lines() or [f"alpha = {alpha:.4g} (given)"]), *([check.message()] if check else [])]
        meta = {"alpha": alpha, "planes": levels.planes, "target": levels.target, "target_found_by": levels.found_by,
                "checkpoint": str(self.checkpoint), "inputs": self.source, "summary": summary,
                "self_check": None if check is None else check.score}
        return data, {"name": "deblurred", "scale": self.placement.scale, "translate": self.placement.translate,
                      "colormap": self.placement.colormap, "contrast_limits": display_range(data),
                      "metadata": meta}, "image"


@dataclass
class BlurRequest:
    """A sharp and a blurry plane of one field and the α levels between them (``blurlatent blur``)."""

    sharp: np.ndarray
    blurry: np.ndarray
    checkpoint: Path
    alphas: list[float] | None = None  # the levels, or None for ``steps`` evenly spaced ones
    steps: int | None = None
    config: InferenceConfig = field(default_factory=InferenceConfig)
    placement: Placement = field(default_factory=Placement)
    source: str = ""

    def __call__(self, ticker: Ticker) -> tuple:
        alphas = blur_alphas(self.alphas, None if self.alphas else self.steps)
        predictor = Predictor.from_checkpoint(self.checkpoint, self.config)
        ticker.check()
        data = predictor.blur(self.sharp, self.blurry, alphas, progress=ticker,  # [K, H, W]
                              pixel_size=self.placement.pixel_size_um)
        label = ", ".join(f"{a:.3g}" for a in alphas)
        meta = {"alpha": alphas, "checkpoint": str(self.checkpoint), "inputs": self.source}
        return data, {"name": f"blurred α={label}", "scale": (1.0, *self.placement.scale),
                      "translate": (0.0, *self.placement.translate), "colormap": self.placement.colormap,
                      "contrast_limits": display_range(data), "axis_labels": ("alpha", "y", "x"),
                      "metadata": meta}, "image"
