"""Configs of the jobs that use a trained model: inference (``InferenceConfig``) and the demo's sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from blurlatent.config.options import (
    Arch,
    Intensity,
    OutDtype,
    Precision,
    check_choice,
)
from blurlatent.errors import UsageError


@dataclass
class InferenceConfig:
    """How images go through a model (``inference.Predictor``): the same for the CLI, the API and evaluate."""

    intensity: Intensity = "conserve"  # output scale: conserve total signal above background, or minmax
    tile: Optional[int] = None  # None: whole image up to 2048x2048 px, tiles beyond; 0: always whole
    precision: Precision = "auto"  # auto = fp32; bf16/fp16 autocast are opt-in (Eq. 3 amplifies their error)
    batch_size: int = 4  # images per encoder/decoder call
    out_dtype: Optional[OutDtype] = None  # None: the inputs' dtype
    device: str = "auto"

    def check(self) -> "InferenceConfig":
        check_choice(Intensity, self.intensity, "intensity")
        check_choice(Precision, self.precision, "precision")
        if self.out_dtype is not None:
            check_choice(OutDtype, self.out_dtype, "out_dtype")
        if self.tile is not None and self.tile < 0:
            raise UsageError(f"tile {self.tile}: give a tile size in pixels, or 0 for whole-image inference")
        if self.batch_size < 1:
            raise UsageError(f"batch_size {self.batch_size}: must be at least 1")
        return self


@dataclass(frozen=True)
class DemoSettings:
    """The demo's data and training size (``FULL`` and ``FAST`` in ``demo.py``)."""

    fields: int
    size: tuple[int, int]  # (width, height)
    crop: int
    widths: list[int]
    epochs: int
    batch: int
    arch: Arch = "paper"  # trained with its recipe (``arch_recipe``), as `train --arch` trains it
    lr: float = 1e-3
    step: int = 1000  # no learning-rate decay within a demo run
