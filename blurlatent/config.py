"""Every config of blurlatent, in one place: model, data, optimizer, training, inference, demo.

Options are ``Literal`` types (``choices(Reg)`` lists them for ``--help`` and messages); ``from_dict``
builds a config from YAML or a checkpoint, refusing unknown keys, wrong types and values outside the
choices, naming the key. Range checks that need no files live in each class's ``check()`` (every
numeric field: finite, in range). ``load_yaml`` refuses duplicate keys and aliases (``StrictLoader``) and
checks ranges, naming the file. Importing this module does not import torch.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, TypeVar, Union

import yaml

from .bbbc006 import FOCUS_TRIPLETS, PAPER_TRIPLETS
from .errors import UsageError
from .files import atomic_write_bytes, json_safe, refuse_special_file

T = TypeVar("T")

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

PAPER_WIDTHS = (64, 128, 256, 512, 1024)
# The multiscale net's default: full resolution and four stride-2 stages, narrow where the pixels are many and
# wide where they are few (40.2 GFLOP per 696×520 deblur against the paper model's 50.1; README, Quality)
MULTISCALE_WIDTHS = (12, 24, 64, 128, 256)
DEFAULT_WIDTHS = {"paper": PAPER_WIDTHS, "multiscale": MULTISCALE_WIDTHS}
# `train`'s arch when nothing names one (README, Quality: all five targets of bench_quality); a config or
# checkpoint that names no arch keeps meaning the paper's model (``ModelConfig.arch``)
TRAIN_DEFAULT_ARCH = "multiscale"
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


def triplet_set(name: str) -> dict:
    """``train --triplets``: the data keys a named set of training triplets sets, ``data.triplets`` and
    ``data.alpha``. paper: its seven evenly spaced triplets, α 0.5; focus: the 28 ending at the in-focus plane,
    each with its own α (Eq. 2 at every level between z00 and focus, Eq. 3 toward focus from every pair)."""
    check_choice(TripletSet, name, "triplets")
    triplets, alpha = (PAPER_TRIPLETS, 0.5) if name == "paper" else (FOCUS_TRIPLETS, "planes")
    return {"data.triplets": [list(t) for t in triplets], "data.alpha": alpha}


def arch_recipe(arch: str) -> list[dict]:
    """The settings ``arch`` trains with unless the user gives them, in groups that are taken whole or not at all.
    paper: none (its own defaults: the seven triplets at α 0.5, no deblur loss); multiscale: the recipe
    ``bench_quality`` measured — every triplet toward focus with its own α, the deblur loss at weight 1, and no
    latent finer than ¼ resolution in the decoder (``skips: quarter``).
    `train` and ``bench_quality`` apply it to new runs; a ``TrainConfig`` built in Python keeps the dataclass
    defaults, which is what a config or checkpoint without these keys has always meant."""
    check_choice(Arch, arch, "model arch")
    return [] if arch == "paper" else [triplet_set("focus"), {"deblur_weight": 1.0}, {"model.skips": "quarter"}]


def recipe_settings(arch: str) -> dict:
    """Every setting of ``arch_recipe(arch)`` as one dict of dotted keys: the recipe taken whole, as the demo,
    the benchmarks and the example scripts take it (`train` takes each group only where the user gave none)."""
    return {key: value for group in arch_recipe(arch) for key, value in group.items()}


def check_choice(option, value, what: str) -> str:
    """``value`` if it is one of ``choices(option)``, else UsageError naming ``what`` and the choices."""
    if value not in choices(option):
        raise UsageError(f"{what} {value}: use one of {', '.join(map(str, choices(option)))}")
    return value


@dataclass
class ModelConfig:
    # None: the arch's default (DEFAULT_WIDTHS), filled in on construction, so a config always holds its widths
    widths: Optional[list[int]] = None
    in_channels: int = 1
    negative_slope: float = 0.01  # torch's LeakyReLU default, as in the paper's code
    arch: Arch = "paper"  # a checkpoint without it is the paper's model
    skips: Skips = "coarse"  # multiscale only: which latent scales the decoder takes

    def __post_init__(self):
        if self.widths is None:
            self.widths = list(DEFAULT_WIDTHS.get(self.arch, PAPER_WIDTHS))

    @property
    def depth(self) -> int:
        return len(self.widths)

    def check(self) -> "ModelConfig":
        check_choice(Arch, self.arch, "model arch")
        check_choice(Skips, self.skips, "model skips")
        if not self.widths or any(not 1 <= w <= MAX_WIDTH for w in self.widths):
            raise UsageError(f"model widths {self.widths}: give layer widths from 1 to {MAX_WIDTH}, "
                             "e.g. 64,128,256,512,1024")
        if self.arch == "multiscale" and not 2 <= len(self.widths or []) <= MAX_DEPTH:
            raise UsageError(f"model widths {self.widths}: the multiscale arch needs 2 to {MAX_DEPTH} scales (full "
                             "resolution, then one per stride-2 stage), e.g. 12,24,64,128,256")
        if self.arch == "multiscale" and self.skips == "quarter" and len(self.widths or []) < 3:
            raise UsageError(f"model widths {self.widths}: skips quarter needs at least 3 scales (its finest latent is "
                             "¼ resolution); give 3 or more widths, e.g. 12,24,64,128,256, or model.skips coarse")
        if self.depth > MAX_DEPTH:
            raise UsageError(f"model widths {self.widths}: {self.depth} layers, at most {MAX_DEPTH} "
                             "(inputs must be divisible by 2**depth)")
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
    # (left, target, right) focal planes; the target's latent is interpolated from left and right.
    triplets: list[tuple[int, int, int]] = field(default_factory=lambda: [tuple(t) for t in PAPER_TRIPLETS])
    # weight of the right plane's latent: z' = α z_r + (1 − α) z_l (Eq. 2); "planes": each triplet's own,
    # (target − left) / (right − left) (latent.triplet_weight), what unevenly spaced triplets need
    alpha: Union[float, AlphaRule] = 0.5
    normalize: Normalization = "minmax"  # copied from the store's manifest; inference scales images the same way

    def check(self) -> "DataConfig":
        if isinstance(self.alpha, str):
            check_choice(AlphaRule, self.alpha, "alpha")
        elif not 0.0 <= self.alpha <= 1.0:  # False for NaN too
            raise UsageError(f"alpha {self.alpha}: must be a number in [0, 1]")
        if not self.triplets:
            raise UsageError("data.triplets is empty: list (left, target, right) planes, e.g. [[0, 8, 16]]")
        for t in self.triplets:
            if not (0 <= t[0] < t[1] < t[2]):
                raise UsageError(f"triplet {list(t)}: planes must be ordered 0 <= left < target < right")
        return self


@dataclass
class OptimConfig:
    lr: float = 1e-4
    step: int = 15  # StepLR: multiply the learning rate by gamma every `step` epochs
    gamma: float = 0.5
    epochs: int = 40
    batch: int = 40  # triplets per step *per process*

    def check(self) -> "OptimConfig":
        for name, value in (("epochs", self.epochs), ("batch size", self.batch), ("optim.step", self.step)):
            if value < 1:
                raise UsageError(f"{name} {value}: must be at least 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"learning rate {self.lr}: must be a finite number > 0, e.g. 1e-4")
        if not 0.0 < self.gamma <= 1.0:  # False for NaN too
            raise UsageError(f"optim.gamma {self.gamma}: the learning-rate decay factor must lie in (0, 1] "
                             "(the paper's 0.5; 1 keeps it constant)")
        return self


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    reg: Reg = "none"  # none (baseline), weak (Eq. 4) or strong (Eq. 5)
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    # auto: bf16 on CUDA (fp16 + GradScaler where bf16 is missing), bf16 on CPUs with native bf16, else off
    amp: Amp = "auto"
    channels_last: Optional[bool] = None  # None: on for CUDA and CPU (measured 1.5x on CPU at batch 40), off on MPS
    workers: Optional[int] = None  # loader processes; None: 0 on CPU (compute needs the cores), 4 per GPU
    nproc: int = 1  # processes (one per GPU, or CPU shares with gloo); set by --gpus / --nproc
    sync_bn: bool = False  # SyncBatchNorm across GPUs (CUDA only)
    init: Optional[str] = None  # start from this checkpoint's weights (strong fine-tunes a weak run)
    from_scratch: bool = False  # allow reg=strong without init
    strip_every: int = 5  # PNG strip every N epochs (and at the last); 0 turns strips off
    log: Log = "none"  # tensorboard: also write TensorBoard events (the blurlatent[tensorboard] extra)
    check_every: Optional[int] = None  # steps between NaN/Ctrl-C checks; None: 1 on CPU, 20 on GPU (each check syncs)
    # weight of the deblur loss (losses.py): L1(G(Eq. 3(z_left, z_target)), x_right); 0 = off; adds to any reg
    deblur_weight: float = 0.0

    def check_ranges(self) -> "TrainConfig":
        """Every value on its own: choices and numeric ranges (what a YAML file alone can get wrong)."""
        check_choice(Reg, self.reg, "reg")
        check_choice(Amp, self.amp, "amp")
        check_choice(Log, self.log, "log")
        self.model.check()
        self.data.check()
        self.optim.check()
        if not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"seed {self.seed}: must be an integer from 0 to {MAX_SEED}")
        if self.nproc < 1:
            raise UsageError(f"nproc {self.nproc}: must be at least 1")
        if self.workers is not None and self.workers < 0:
            raise UsageError(f"workers {self.workers}: give 0 (load in the training process) or more loader processes")
        if self.strip_every < 0:
            raise UsageError(f"strip_every {self.strip_every}: give epochs between strips, or 0 for none")
        if self.check_every is not None and self.check_every < 1:
            raise UsageError(f"check_every {self.check_every}: must be at least 1 step (or unset for the default)")
        if not 0.0 <= self.deblur_weight <= MAX_DEBLUR_WEIGHT:  # False for NaN too
            raise UsageError(f"deblur_weight {self.deblur_weight}: give a loss weight from 0 (off) to "
                             f"{MAX_DEBLUR_WEIGHT:g}, e.g. 1")
        if self.deblur_weight > 0 and self.data.alpha == 0.0:
            raise UsageError("deblur_weight needs alpha > 0: with alpha 0 the target equals the left plane and Eq. 3 "
                             "cannot reach the right one")
        return self

    def check(self) -> "TrainConfig":
        """Range and choice checks that need no files (the store and --init are checked by ``train``)."""
        self.check_ranges()
        if self.reg == "strong" and not self.init and not self.from_scratch:
            raise UsageError("reg strong fine-tunes a weak model: give init (a weak run's best.pt), or from_scratch to "
                             "start from random weights")
        return self


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




def to_dict(cfg) -> dict:
    """Plain data (dicts, lists, str, int, float, bool, None): safe for YAML and ``weights_only`` checkpoints."""
    return json_safe(dataclasses.asdict(cfg))


def from_dict(cls: type[T], data: dict, source: str = "config", prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclasses.

    Raises UsageError naming the key when a key is unknown or a value has the wrong type.
    """
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise UsageError(
                f"{source}: unknown key {key!r} for {cls.__name__}; known keys: {', '.join(sorted(fields))}"
            )
        kwargs[key] = _coerce(hints[key], value, source, prefix + key)
    return cls(**kwargs)


def _coerce(hint, value, source: str, key: str):
    where = f"{source}: {key}" if source else key
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, source, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, source, key)
            except UsageError as exc:
                errors.append(str(exc))
        raise UsageError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise UsageError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(a, v, source, key) for a, v in zip(args, value))
        inner = args[0] if args else Any
        items = [_coerce(inner, v, source, key) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{where}: expected true or false, got {value!r}")
        return value
    if typing.get_origin(hint) is Literal:
        if value not in typing.get_args(hint):
            raise UsageError(f"{where} {value}: use one of {', '.join(map(str, typing.get_args(hint)))}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise UsageError(f"{where}: expected a string, got {value!r}")
        return value
    return value


class YamlRefused(yaml.YAMLError):
    """Valid YAML that blurlatent refuses: a duplicate key or an alias."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys (PyYAML keeps the last one and silently drops a whole
    block) and aliases (``*name``: a few lines of nested aliases expand to billions of values)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YamlRefused(f"line {event.start_mark.line + 1}: YAML alias *{event.anchor} refused "
                              "(aliases can expand without bound); write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, typing.Hashable):
                continue  # SafeLoader refuses it with its own message
            if key in seen:
                raise YamlRefused(f"line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                                  "(the earlier one would be dropped); keep one")
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path):
    """The plain data in YAML file ``path`` (StrictLoader). Raises UsageError naming the file."""
    path = Path(path)
    refuse_special_file(path, "pass a YAML config file")  # a FIFO would block the read forever
    if not path.is_file():
        raise UsageError(f"{path}: config file not found; pass an existing YAML file")
    try:
        return yaml.load(path.read_text(), Loader=StrictLoader)
    except YamlRefused as exc:
        raise UsageError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{path}: not valid YAML ({first}); fix the syntax") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{path}: not a YAML text file ({type(exc).__name__}); pass a YAML config") from None


def load_yaml(cls: type[T], path: str | Path) -> T:
    """Config ``cls`` from YAML file ``path``: keys, types, choices and ranges checked (``check_ranges``, else
    ``check``), errors naming the file."""
    return checked_config(cls, read_yaml(path) or {}, path)


def checked_config(cls: type[T], data, path: str | Path) -> T:
    """Config ``cls`` from the plain data ``read_yaml(path)`` returned, checked as ``load_yaml`` checks it (for a
    caller that also needs the data itself)."""
    cfg = from_dict(cls, data, str(path))
    check = getattr(cfg, "check_ranges", None) or getattr(cfg, "check", None)
    if check is not None:
        try:
            check()
        except UsageError as exc:
            raise UsageError(f"{path}: {exc}") from None
    return cfg


def save_yaml(cfg, path: str | Path) -> None:
    atomic_write_bytes(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False).encode())


def override(cfg: T, updates: dict[str, Any]) -> T:
    """Return a copy of ``cfg`` with dotted-key updates (``{"optim.lr": 1e-3}``); None values are skipped."""
    data = to_dict(cfg)
    for dotted, value in updates.items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise UsageError(f"unknown config key {dotted!r}")
        # a float stays itself: json_safe would make --lr inf a None ("expected a number, got None")
        node[leaf] = value if isinstance(value, float) else json_safe(value)
    return from_dict(type(cfg), data, source="")
