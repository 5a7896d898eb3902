"""The option types (``Literal``) every config and the CLI share, their choices, and the bounds a config keeps.

Importing this module does not import torch."""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Literal, TypeVar

from blurlatent.errors import UsageError, field_names

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")  # a config class (a dataclass)

Reg = Literal["none", "weak", "strong"]
# paper: the paper's autoencoder (model.py); multiscale: a latent at every resolution (multiscale.py)
Arch = Literal["paper", "multiscale"]
# Which scales of a multiscale latent reach the decoder: all but full resolution, every one, every one through a
# learned per-scale gate, or none finer than ¼ resolution (fine-scale latents mix almost like pixels: multiscale.py)
Skips = Literal["coarse", "all", "gated", "quarter"]
Amp = Literal["auto", "bf16", "fp16", "off"]
Normalization = Literal["minmax", "stack", "percentile"]
Intensity = Literal["conserve", "minmax"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
OutDtype = Literal["uint8", "uint16", "float32"]
Log = Literal["none", "tensorboard"]
AlphaRule = Literal["planes"]  # data.alpha: each triplet's α from its focal planes
# train --triplets: the paper's seven (α 0.5 each) or every triplet ending at the in-focus plane (α from planes)
TripletSet = Literal["paper", "focus"]
TestCrops = Literal["center", "ten"]  # prepare: one center crop per test field, or ten as in train
# deblur/blur --rescale: resample inputs to the model's pixel size and back (auto), or leave them (off)
Rescale = Literal["auto", "off"]
# deblur/blur: where the intensity statistics run: numpy on the host, torch on the model's device (the images stay
# there from upload to output), or auto: the device when the model is not on the CPU (``inference.device_pairs``)
Stats = Literal["auto", "host", "device"]
# synth --optics: the calibrated microscope and scene for every field, or each field's own drawn from documented
# ranges (``synth.random_optics``, ``synth.random_scene``) for training
SynthOptics = Literal["fixed", "random"]

PAPER_WIDTHS = (64, 128, 256, 512, 1024)
# The multiscale net's default: full resolution and four stride-2 stages, narrow where the pixels are many and
# wide where they are few (40.2 GFLOP per 696×520 deblur against the paper model's 50.1; docs/benchmarks.md, Quality)
MULTISCALE_WIDTHS = (12, 24, 64, 128, 256)
DEFAULT_WIDTHS = {"paper": PAPER_WIDTHS, "multiscale": MULTISCALE_WIDTHS}
# The multiscale net's default skips: no latent finer than ¼ resolution, which measured best in blur synthesis and
# deblurring alike (docs/benchmarks.md, Quality); the paper's model has one latent, and records "coarse" as it
# always did
DEFAULT_SKIPS: dict[str, Skips] = {"paper": "coarse", "multiscale": "quarter"}
MAX_DEBLUR_WEIGHT = 100.0
# Sane bounds a config or checkpoint must keep (the paper: widths up to 1024, depth 5); past them a config
# is a typo or a crafted file, and building the model would exhaust memory before any other check.
MAX_WIDTH = 65536
MAX_DEPTH = 16
MAX_SEED = 2**32 - 1  # numpy's seed range
# Keys of a run's config that may change on --resume without changing what the run means.
RESUMABLE_CHANGES = ("optim.epochs", "device", "nproc", "workers", "strip_every", "amp", "channels_last", "log")


def choices(option) -> tuple[str, ...]:
    """The values of a Literal option type: ``choices(Reg) == ("none", "weak", "strong")``."""
    return typing.get_args(option)


def check_choice(option, value, what: str) -> str:
    """``value`` if it is one of ``choices(option)``, else UsageError naming ``what`` and the choices; ``what``
    is the thing's name, a parameter as a message field (``"{reg}"``, see ``errors``) or plain words."""
    if value not in choices(option):
        raise UsageError(f"{what} {value}: use one of {', '.join(map(str, choices(option)))}", *field_names(what))
    return value
