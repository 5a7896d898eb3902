"""Every config of blurlatent, in one place: model, data, optimizer, training, inference, demo.

Options are ``Literal`` types (``choices(Reg)`` lists them for ``--help`` and messages); ``from_dict``
builds a config from YAML or a checkpoint, refusing unknown keys, wrong types and values outside the
choices, naming the key. Range checks that need no files live in each class's ``check()``.
Importing this module does not import torch.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, TypeVar

import yaml

from .bbbc006 import PAPER_TRIPLETS
from .errors import UsageError
from .files import atomic_write_bytes, json_safe

T = TypeVar("T")

Reg = Literal["none", "weak", "strong"]
Amp = Literal["auto", "bf16", "fp16", "off"]
Normalization = Literal["minmax", "stack", "percentile"]
Intensity = Literal["conserve", "minmax"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
OutDtype = Literal["uint8", "uint16", "float32"]

PAPER_WIDTHS = (64, 128, 256, 512, 1024)
# Keys of a run's config that may change on --resume without changing what the run means.
RESUMABLE_CHANGES = ("optim.epochs", "device", "nproc", "workers", "strip_every", "amp", "channels_last")


def choices(option) -> tuple[str, ...]:
    """The values of a Literal option type: ``choices(Reg) == ("none", "weak", "strong")``."""
    return typing.get_args(option)


def check_choice(option, value, what: str) -> str:
    """``value`` if it is one of ``choices(option)``, else UsageError naming ``what`` and the choices."""
    if value not in choices(option):
        raise UsageError(f"{what} {value}: use one of {', '.join(map(str, choices(option)))}")
    return value


@dataclass
class ModelConfig:
    widths: list[int] = field(default_factory=lambda: list(PAPER_WIDTHS))
    in_channels: int = 1
    negative_slope: float = 0.01  # torch's LeakyReLU default, as in the paper's code

    @property
    def depth(self) -> int:
        return len(self.widths)

    def check(self) -> "ModelConfig":
        if not self.widths or any(w < 1 for w in self.widths):
            raise UsageError(f"model widths {self.widths}: give positive layer widths, e.g. 64,128,256,512,1024")
        if self.in_channels < 1:
            raise UsageError(f"model in_channels {self.in_channels}: must be at least 1")
        return self


@dataclass
class DataConfig:
    store: str = ""
    channel: str = "w1"
    # (left, target, right) focal planes; the target's latent is interpolated from left and right.
    triplets: list[tuple[int, int, int]] = field(default_factory=lambda: [tuple(t) for t in PAPER_TRIPLETS])
    alpha: float = 0.5  # weight of the right plane's latent: z' = α z_r + (1 − α) z_l (Eq. 2)
    normalize: Normalization = "minmax"  # copied from the store's manifest; inference scales images the same way

    def check(self) -> "DataConfig":
        if not 0.0 <= self.alpha <= 1.0:
            raise UsageError(f"alpha {self.alpha}: must lie in [0, 1]")
        if not self.triplets:
            raise UsageError("data.triplets is empty: list (left, target, right) planes, e.g. [[0, 8, 16]]")
        for t in self.triplets:
            if not (t[0] < t[1] < t[2]):
                raise UsageError(f"triplet {list(t)}: planes must be ordered left < target < right")
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
        if not self.lr > 0:
            raise UsageError(f"learning rate {self.lr}: must be > 0")
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
    check_every: Optional[int] = None  # steps between NaN/Ctrl-C checks; None: 1 on CPU, 20 on GPU (each check syncs)

    def check(self) -> "TrainConfig":
        """Range and choice checks that need no files (the store and --init are checked by ``train``)."""
        check_choice(Reg, self.reg, "reg")
        check_choice(Amp, self.amp, "amp")
        self.model.check()
        self.data.check()
        self.optim.check()
        if self.nproc < 1:
            raise UsageError(f"nproc {self.nproc}: must be at least 1")
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


def load_yaml(cls: type[T], path: str | Path) -> T:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: config file not found; pass an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from None
    return from_dict(cls, data, str(path))


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
        node[leaf] = json_safe(value)
    return from_dict(type(cfg), data, source="")
