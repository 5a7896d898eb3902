"""What a training run is: the model, the data, the optimizer and the run (``TrainConfig``), with their range checks.

The dataclass defaults are what `blurlatent train` trains: the multiscale net (skips quarter) on every triplet toward
focus, each with its own α, with the deblur loss at weight 1 (docs/benchmarks.md, Quality: all five targets of
bench_quality).
A config or checkpoint is of a ``version``; the keys it lacks mean what they meant in that version
(``OLDER_DEFAULTS``, filled in by ``schema.upgrade`` when it is loaded)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from blurlatent.bbbc006 import FOCUS_TRIPLETS, PAPER_TRIPLETS, PIXEL_SIZE_UM, PLANE_STEP_UM
from blurlatent.config.options import (
    DEFAULT_SKIPS,
    DEFAULT_WIDTHS,
    MAX_DEBLUR_WEIGHT,
    MAX_DEPTH,
    MAX_SEED,
    MAX_WIDTH,
    PAPER_WIDTHS,
    AlphaRule,
    Amp,
    Arch,
    Log,
    Normalization,
    Reg,
    Skips,
    TripletSet,
    check_choice,
)
from blurlatent.errors import UsageError, field_names

# The version of the defaults below. 1: every config and checkpoint written before ``version`` existed (no
# ``version`` key): the paper's model, trained as the paper did; 2: `train`'s multiscale net and its training;
# 3: the data's physical scale recorded (``data.pixel_size_um``, ``data.z_step_um``, ``data.optics``).
CONFIG_VERSION = 3
# {version: the defaults it changed, as they were before it}: a config of version v that lacks one of these keys
# means the value of the first version after v that changed it (dotted keys, plain data)
OLDER_DEFAULTS: dict[int, dict[str, Any]] = {
    2: {"model.arch": "paper", "model.skips": "coarse", "data.triplets": [list(t) for t in PAPER_TRIPLETS],
        "data.alpha": 0.5, "deblur_weight": 0.0},
    # before 3 every store was BBBC006's or synth's (own stacks had no pixel size): BBBC006's scale
    3: {"data.pixel_size_um": PIXEL_SIZE_UM, "data.z_step_um": PLANE_STEP_UM},
}


def triplet_set(name: str) -> dict:
    """``train --triplets``: the data keys a named set of training triplets sets, ``data.triplets`` and
    ``data.alpha``. paper: its seven evenly spaced triplets, α 0.5; focus: the 28 ending at the in-focus plane,
    each with its own α (Eq. 2 at every level between z00 and focus, Eq. 3 toward focus from every pair)."""
    check_choice(TripletSet, name, "{triplets}")
    triplets, alpha = (PAPER_TRIPLETS, 0.5) if name == "paper" else (FOCUS_TRIPLETS, "planes")
    return {"data.triplets": [list(t) for t in triplets], "data.alpha": alpha}


@dataclass
class ModelConfig:
    # None: the arch's default (DEFAULT_WIDTHS), filled in on construction, so a config always holds its widths
    widths: list[int] | None = None
    in_channels: int = 1
    negative_slope: float = 0.01  # torch's LeakyReLU default, as in the paper's code
    arch: Arch = "multiscale"  # paper: the paper's autoencoder
    # multiscale only: which latent scales the decoder takes; None: the arch's default (DEFAULT_SKIPS), filled in
    skips: Skips | None = None

    def __post_init__(self):
        if self.widths is None:
            self.widths = list(DEFAULT_WIDTHS.get(self.arch, PAPER_WIDTHS))
        if self.skips is None:
            self.skips = DEFAULT_SKIPS.get(self.arch, "coarse")

    def same_network(self, other: ModelConfig) -> bool:
        """True when ``other`` builds the same network: equal, but for ``skips`` of the paper's model (one latent)."""
        if self.arch == other.arch == "paper":
            return (self.widths, self.in_channels, self.negative_slope) == \
                (other.widths, other.in_channels, other.negative_slope)
        return self == other

    @property
    def depth(self) -> int:
        return len(self.widths or ())  # filled on construction

    def check(self) -> ModelConfig:
        check_choice(Arch, self.arch, "{model.arch}")
        check_choice(Skips, self.skips, "model skips")
        if not self.widths or any(not 1 <= w <= MAX_WIDTH for w in self.widths):
            raise UsageError(f"{{model.widths}} {self.widths}: give layer widths from 1 to {MAX_WIDTH}, "
                             "e.g. 64,128,256,512,1024", "model.widths")
        if self.arch == "multiscale" and not 2 <= len(self.widths or []) <= MAX_DEPTH:
            raise UsageError(f"{{model.widths}} {self.widths}: the multiscale arch needs 2 to {MAX_DEPTH} scales "
                             "(full resolution, then one per stride-2 stage), e.g. 12,24,64,128,256", "model.widths")
        if self.arch == "multiscale" and self.skips == "quarter" and len(self.widths or []) < 3:
            raise UsageError(f"{{model.widths}} {self.widths}: skips quarter needs at least 3 scales (its finest "
                             "latent is ¼ resolution); give 3 or more widths, e.g. 12,24,64,128,256, or model.skips "
                             "coarse", "model.widths")
        if self.depth > MAX_DEPTH:
            raise UsageError(f"{{model.widths}} {self.widths}: {self.depth} layers, at most {MAX_DEPTH} "
                             "(inputs must be divisible by 2**depth)", "model.widths")
        if self.in_channels != 1:
            raise UsageError(f"model in_channels {self.in_channels}: blurlatent's images are one grayscale channel; "
                             "use 1")
        if not 0.0 <= self.negative_slope <= 1.0:  # False for NaN too
            raise UsageError(f"model negative_slope {self.negative_slope}: the LeakyReLU slope must lie in [0, 1] "
                             "(the paper's 0.01)")
        return self


@dataclass
class DataConfig:
    store: str = ""
    channel: str = "w1"
    # (left, target, right) focal planes; the target's latent is interpolated from left and right. Default: the
    # 28 ending at the in-focus plane (every blur level, every pair toward focus; ``triplet_set("focus")``)
    triplets: list[tuple[int, int, int]] = field(default_factory=lambda: [(a, b, c) for a, b, c in FOCUS_TRIPLETS])
    # weight of the right plane's latent: z' = α z_r + (1 − α) z_l (Eq. 2); "planes": each triplet's own,
    # (target − left) / (right − left) (latent.triplet_weight), what unevenly spaced triplets need
    alpha: float | AlphaRule = "planes"
    normalize: Normalization = "minmax"  # copied from the store's manifest; inference scales images the same way
    # The images' scale, copied from the store's manifest (``Store.scale``; None: unknown): inference resamples
    # inputs to ``pixel_size_um`` (µm per pixel), and α and the trained defocus range are in µm (``z_step_um``)
    pixel_size_um: float | None = None
    z_step_um: float | None = None
    optics: dict[str, float] | None = None  # synth's stores: its NA, emission wavelength, … (``synth.optics.Optics``)

    def check(self) -> DataConfig:
        if isinstance(self.alpha, str):
            check_choice(AlphaRule, self.alpha, "alpha")
        elif not 0.0 <= self.alpha <= 1.0:  # False for NaN too
            raise UsageError(f"alpha {self.alpha}: must be a number in [0, 1]")
        if not self.triplets:
            raise UsageError("data.triplets is empty: list (left, target, right) planes, e.g. [[0, 8, 16]]")
        for t in self.triplets:
            if not (0 <= t[0] < t[1] < t[2]):
                raise UsageError(f"triplet {list(t)}: planes must be ordered 0 <= left < target < right")
        for name in ("pixel_size_um", "z_step_um"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise UsageError(f"data.{name} {value}: give the store's scale in µm (> 0), or leave it out")
        return self


@dataclass
class OptimConfig:
    lr: float = 1e-4
    step: int = 15  # StepLR: multiply the learning rate by gamma every `step` epochs
    gamma: float = 0.5
    epochs: int = 40
    batch: int = 40  # triplets per step *per process*

    def check(self) -> OptimConfig:
        for what, value in (("{optim.epochs}", self.epochs), ("{optim.batch}", self.batch), ("optim.step", self.step)):
            if value < 1:
                raise UsageError(f"{what} {value}: must be at least 1", *field_names(what))
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"{{optim.lr}} {self.lr}: must be a finite number > 0, e.g. 1e-4", "optim.lr")
        if not 0.0 < self.gamma <= 1.0:  # False for NaN too
            raise UsageError(f"optim.gamma {self.gamma}: the learning-rate decay factor must lie in (0, 1] "
                             "(the paper's 0.5; 1 keeps it constant)")
        return self


@dataclass
class TrainConfig:
    version: int = CONFIG_VERSION  # the defaults it was written against (``OLDER_DEFAULTS``); loading upgrades it
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    reg: Reg = "none"  # none (baseline), weak (Eq. 4) or strong (Eq. 5)
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    # auto: bf16 on CUDA (fp16 + GradScaler where bf16 is missing), bf16 on CPUs with native bf16, else off
    amp: Amp = "auto"
    channels_last: bool | None = None  # None: on for CUDA and CPU (faster there: docs/benchmarks.md), off on MPS
    workers: int | None = None  # loader processes; None: 0 on CPU (compute needs the cores), 4 per GPU
    nproc: int = 1  # processes (one per GPU, or CPU shares with gloo); set by --gpus / --nproc
    sync_bn: bool = False  # SyncBatchNorm across GPUs (CUDA only)
    init: str | None = None  # start from this checkpoint's weights (strong fine-tunes a weak run)
    from_scratch: bool = False  # allow reg=strong without init
    strip_every: int = 5  # PNG strip every N epochs (and at the last); 0 turns strips off
    log: Log = "none"  # tensorboard: also write TensorBoard events (the blurlatent[tensorboard] extra)
    check_every: int | None = None  # steps between NaN/Ctrl-C checks; None: 1 on CPU, 20 on GPU (each check syncs)
    # weight of the deblur loss (losses.py): L1(G(Eq. 3(z_left, z_target)), x_right); 0 = off; adds to any reg
    deblur_weight: float = 1.0

    def check_ranges(self) -> TrainConfig:
        """Every value on its own: choices and numeric ranges (what a YAML file alone can get wrong)."""
        if self.version != CONFIG_VERSION:
            raise UsageError(f"version {self.version}: a config built in Python has version {CONFIG_VERSION}'s "
                             "defaults; load an older config with from_dict or load_yaml (they fill in its version's)")
        check_choice(Reg, self.reg, "{reg}")
        check_choice(Amp, self.amp, "{amp}")
        check_choice(Log, self.log, "{log}")
        self.model.check()
        self.data.check()
        self.optim.check()
        if not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"{{seed}} {self.seed}: must be an integer from 0 to {MAX_SEED}", "seed")
        if self.nproc < 1:
            raise UsageError(f"{{nproc}} {self.nproc}: must be at least 1", "nproc")
        if self.workers is not None and self.workers < 0:
            raise UsageError(f"{{workers}} {self.workers}: give 0 (load in the training process) or more loader "
                             "processes", "workers")
        if self.strip_every < 0:
            raise UsageError(f"strip_every {self.strip_every}: give epochs between strips, or 0 for none")
        if self.check_every is not None and self.check_every < 1:
            raise UsageError(f"check_every {self.check_every}: must be at least 1 step (or unset for the default)")
        if not 0.0 <= self.deblur_weight <= MAX_DEBLUR_WEIGHT:  # False for NaN too
            raise UsageError(f"{{deblur_weight}} {self.deblur_weight}: give a loss weight from 0 (off) to "
                             f"{MAX_DEBLUR_WEIGHT:g}, e.g. 1", "deblur_weight")
        return self

    def check(self) -> TrainConfig:
        """Range and choice checks that need no files (the store and --init are checked by ``train``), and those
        between values, once flags have changed a config file's (``check_ranges`` alone reads one value at a time)."""
        self.check_ranges()
        if self.deblur_weight > 0 and self.data.alpha == 0.0:
            raise UsageError(f"{{deblur_weight}} {self.deblur_weight:g} needs data.alpha > 0: with alpha 0 the "
                             "target equals the left plane and Eq. 3 cannot reach the right one; give "
                             "{deblur_weight=0} or another data.alpha", "deblur_weight")
        if self.reg == "strong" and not self.init and not self.from_scratch:
            raise UsageError("{reg} strong fine-tunes a weak model: give {init} (a weak run's best.pt), or "
                             "{from_scratch} to start from random weights", "reg", "init", "from_scratch")
        return self
