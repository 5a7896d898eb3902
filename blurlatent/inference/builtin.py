"""The models that ship inside the package: ``blurlatent/models/NAME.pt`` with its card ``NAME.json``.

A built-in model is a checkpoint without training state (format, config, weights — nothing to resume),
its weights stored in the smallest precision whose outputs stay within ``TOLERANCE`` of the float32
model's (``slim_checkpoint`` measures that before anything is written). The card says what the model was
trained on, how it scored on ``benchmarks/bench_quality.py``'s synthetic test sets made with other optics,
its limits, and the sha256 of the weights, which is checked every time the model is loaded: a damaged or
edited file is refused, never used.

    builtin_models()            every shipped model, from its card
    builtin_model("w1")         the default model of a channel
    builtin_path(model)         the weights file, after its checksum matched
    named_builtin(value)        the built-in model a checkpoint argument names ("w1"), or None for a path
    checkpoint_file(value)      the file a checkpoint argument means (train --init, export)
    resolve_checkpoint(path, name)  the checkpoint a command uses: the user's, else the built-in one
    model_identity(checkpoint)  (name, sha256) outputs record: a built-in name, else the file's name

Making one (``slim_checkpoint``) is ``shipping``'s: this module imports no torch, so inference can use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blurlatent.errors import RuntimeFailure, UsageError
from blurlatent.files.atomic import sha256_file

MODELS_DIR = Path(__file__).parents[1] / "models"
DEFAULT_MODEL = "w1"  # nuclei: the paper's main channel


@dataclass(frozen=True)
class BuiltinModel:
    """One shipped model: ``name`` (e.g. "w1"), the ``channel`` it was trained for, its weights ``path``,
    their ``sha256``, and the whole ``card`` (a dict, as written in ``NAME.json``)."""

    name: str
    channel: str
    path: Path
    sha256: str
    card: dict[str, Any]

    @property
    def summary(self) -> str:
        return self.card.get("summary", "")


def builtin_models(folder: Path | None = None) -> list[BuiltinModel]:
    """Every model whose card is in ``folder`` (default ``MODELS_DIR``), sorted by name; [] when none ships."""
    folder = Path(folder) if folder is not None else MODELS_DIR
    models = []
    for card_path in sorted(folder.glob("*.json")):
        card = json.loads(card_path.read_text())
        models.append(BuiltinModel(card["name"], card["channel"], folder / card["file"], card["sha256"], card))
    return models


def builtin_model(channel: str = DEFAULT_MODEL, folder: Path | None = None) -> BuiltinModel:
    """The built-in model for ``channel``; UsageError naming the channels there are when none fits."""
    models = builtin_models(folder)
    for model in models:
        if model.channel == channel:
            return model
    there = ", ".join(m.channel for m in models) or "none in this installation"
    raise UsageError(f"no built-in model named {channel} (built-in: {there}); choose one of those, or pass "
                     "{checkpoint} trained on your data", "checkpoint")


def builtin_path(model: BuiltinModel) -> Path:
    """``model.path`` once its sha256 matches the card; RuntimeFailure (reinstall) otherwise."""
    if not model.path.is_file():
        raise RuntimeFailure(f"the built-in {model.name} model's weights {model.path} are missing; reinstall "
                             "blurlatent (pip install --force-reinstall blurlatent)")
    digest = sha256_file(model.path)
    if digest != model.sha256:
        raise RuntimeFailure(f"the built-in {model.name} model's weights {model.path} are damaged (sha256 "
                             f"{digest[:12]}…, its card says {model.sha256[:12]}…); reinstall blurlatent")
    return model.path


def describe_builtin(model: BuiltinModel) -> str:
    """The one line a command prints when it falls back to the built-in model."""
    return f"using the built-in {model.name} model ({model.summary}; see `blurlatent models`)"


def model_identity(checkpoint: str | Path) -> tuple[str, str]:
    """(name, sha256) an output records for the model it was made with: a built-in model's name and the checksum
    its card holds (``builtin_path`` compared the file with it), else the checkpoint's file name — never its
    path — and the file's sha256."""
    path = Path(checkpoint)
    for model in builtin_models():
        if model.path.resolve() == path.resolve():
            return model.name, model.sha256
    return path.name, sha256_file(path)


def named_builtin(value: str | Path, param: str = "checkpoint", folder: Path | None = None) -> BuiltinModel | None:
    """The built-in model ``value`` names ("w1": a name ``blurlatent models`` lists), else None (a path). Every
    command that takes a checkpoint asks this, so a built-in model is a name everywhere. UsageError when the bare
    name is also a file in the working folder (which one was meant cannot be told)."""
    text = str(value)
    model = next((m for m in builtin_models(folder) if m.name == text), None)
    if model is not None and Path(text).is_file():
        raise UsageError(f"{{{param}}} {text}: names a built-in model and a file in this folder; pass the file as "
                         f"{Path(text).absolute()}, or run from another folder for the built-in model", param)
    return model


def checkpoint_file(value: str | Path, param: str = "checkpoint") -> Path:
    """The checkpoint file ``value`` means: a built-in model's weights (checksum checked) or the path itself."""
    model = named_builtin(value, param)
    return builtin_path(model) if model is not None else Path(value)


def resolve_checkpoint(checkpoint: str | Path | None, model: str | None = None) -> tuple[Path, str | None]:
    """The checkpoint a command runs: ``checkpoint`` when given (a path, or a built-in model's name; ``model``
    must then be None), else the built-in ``model`` (default ``DEFAULT_MODEL``; "" is refused, not the default)
    after its checksum matched, with the line to tell the user when it is a built-in one."""
    if checkpoint is not None:
        if model is not None:
            raise UsageError(f"both {{model}} ({model}) and {{checkpoint}} ({checkpoint}) given; give one of them",
                             "model", "checkpoint")
        builtin = named_builtin(checkpoint)
        if builtin is None:
            return Path(checkpoint), None
    elif model is not None and not model.strip():
        raise UsageError(f"{{model}} {model!r} is empty; give a built-in model's name ({DEFAULT_MODEL}; `blurlatent "
                         "models` lists them), or leave {model} out for the default", "model")
    else:
        builtin = builtin_model(DEFAULT_MODEL if model is None else model)
    return builtin_path(builtin), describe_builtin(builtin)
