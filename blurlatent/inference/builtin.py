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
    resolve_checkpoint(path, name)  the checkpoint a command uses: the user's, else the built-in one

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


def resolve_checkpoint(checkpoint: str | Path | None, model: str | None = None) -> tuple[Path, str | None]:
    """The checkpoint a command runs: ``checkpoint`` when given (``model`` must then be None), else the
    built-in ``model`` (default ``DEFAULT_MODEL``) after its checksum matched, with the line to tell the user."""
    if checkpoint is not None:
        if model is not None:
            raise UsageError(f"both {{model}} ({model}) and {{checkpoint}} ({checkpoint}) given; give one of them",
                             "model", "checkpoint")
        return Path(checkpoint), None
    builtin = builtin_model(model or DEFAULT_MODEL)
    return builtin_path(builtin), describe_builtin(builtin)
