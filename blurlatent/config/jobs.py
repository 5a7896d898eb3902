"""The defaults of the jobs around training, each written once: synth (``SynthConfig``), prepare
(``PrepareConfig``), evaluate (``EvalConfig``), inference (``InferenceConfig``) and the demo's sizes. The library
functions take these as keyword options and the command line reads its option defaults from here."""

from __future__ import annotations

import math
from dataclasses import dataclass

from blurlatent.bbbc006 import CHANNELS, N_PLANES
from blurlatent.config.options import (
    Arch,
    Intensity,
    Normalization,
    OutDtype,
    Precision,
    Rescale,
    Stats,
    SynthOptics,
    TestCrops,
    TripletSet,
    check_choice,
)
from blurlatent.errors import UsageError


@dataclass(frozen=True)
class SynthConfig:
    """What ``synth.generator.synthesize`` writes unless told otherwise (its optics: ``synth.optics.Optics``)."""

    fields: int = 10
    channels: tuple[str, ...] = CHANNELS
    planes: tuple[int, ...] = tuple(range(N_PLANES))
    size: tuple[int, int] = (696, 520)  # (width, height), as the real set
    seed: int = 0
    workers: int = 2  # processes rendering fields
    optics: SynthOptics = "fixed"  # fixed: the calibrated microscope; random: each field's own (training)


@dataclass(frozen=True)
class PrepareConfig:
    """How ``prepare.builder.prepare`` builds a store unless told otherwise (its channels and planes depend on the
    source's layout: ``discover.bbbc_options``, ``own_stacks.stack_options``)."""

    crop: int = 128  # px
    split: tuple[float, float, float] = (70, 10, 20)  # (train, val, test) ratios
    normalize: Normalization = "minmax"  # 16 → 8 bit per image, as the paper
    test_crops: TestCrops = "center"
    workers: int = 2  # decoding processes
    measure: str = "normvar"  # own stacks, focus auto: the focus measure (``focus.MEASURES``)


@dataclass(frozen=True)
class EvalConfig:
    """How ``evaluation.loop.evaluate`` scores models unless told otherwise."""

    channel: str = "w1"
    device: str = "auto"  # auto, cpu, cuda, cuda:N or mps
    batch_size: int = 8  # test fields per forward pass
    examples: int = 2  # test fields kept for the figures


@dataclass
class InferenceConfig:
    """How images go through a model (``inference.Predictor``): the same for the CLI, the API and evaluate."""

    intensity: Intensity = "conserve"  # output scale: conserve total signal above background, or minmax
    tile: int | None = None  # None: whole image up to 2048x2048 px, tiles beyond; 0: always whole
    precision: Precision = "auto"  # auto = fp32; bf16/fp16 autocast are opt-in (Eq. 3 amplifies their error)
    batch_size: int = 4  # images per encoder/decoder call
    out_dtype: OutDtype | None = None  # None: the inputs' dtype
    device: str = "auto"
    rescale: Rescale = "auto"  # auto: resample inputs to the model's pixel size and back (``inference.scale``)
    pixel_size: float | None = None  # the inputs' µm per pixel, over what their files say (None: the files')
    stats: Stats = "auto"  # intensity statistics: auto (on the model's device unless CPU), host or device

    def check(self) -> InferenceConfig:
        check_choice(Intensity, self.intensity, "{intensity}")
        check_choice(Precision, self.precision, "{precision}")
        if self.out_dtype is not None:
            check_choice(OutDtype, self.out_dtype, "{out_dtype}")
        if self.tile is not None and self.tile < 0:
            raise UsageError(f"{{tile}} {self.tile}: give a tile size in pixels, or 0 for whole-image inference",
                             "tile")
        if self.batch_size < 1:
            raise UsageError(f"{{batch_size}} {self.batch_size}: must be at least 1", "batch_size")
        check_choice(Rescale, self.rescale, "{rescale}")
        check_choice(Stats, self.stats, "{stats}")
        size = self.pixel_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, (int, float))
                                 or not math.isfinite(size) or size <= 0):
            raise UsageError(f"{{pixel_size}} {size}: give the inputs' pixel size in µm, a number > 0 (e.g. 0.325)",
                             "pixel_size")
        return self


@dataclass(frozen=True)
class PlateConfig:
    """How ``inference.plates`` spreads a plate's fields over processes unless told otherwise."""

    workers: int = 1  # local worker processes; 1: every field in this process
    threads: int = 1  # torch threads per worker: a core each, and the same bits whatever the worker count
    connect_timeout: float = 5.0  # seconds to reach a --scheduler before giving up


# The model the demo trains: the paper's (blurlatent.demo's docstring says why it is not `train`'s default)
DEMO_ARCH: Arch = "paper"


@dataclass(frozen=True)
class DemoSettings:
    """The demo's data and training size (``FULL`` and ``FAST`` in ``demo.py``)."""

    fields: int
    size: tuple[int, int]  # (width, height)
    crop: int
    widths: list[int]
    epochs: int
    batch: int
    arch: Arch
    lr: float = 1e-3
    step: int = 1000  # no learning-rate decay within a demo run
    # None: `train`'s (``TrainConfig``); the paper demo trains as the paper did (its seven triplets, no deblur loss)
    triplets: TripletSet | None = None
    deblur_weight: float | None = None
