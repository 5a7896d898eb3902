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
    slim_checkpoint(src, dst)   a trained checkpoint → a shippable one (the reproduction script's last step)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import build_model, load_checkpoint
from .errors import RuntimeFailure, UsageError
from .files import atomic_path, sha256_file
from .inference import Predictor

MODELS_DIR = Path(__file__).with_name("models")
TOLERANCE = 1e-3  # the largest output change, on the [0, 1] scale, that a lower weight precision may cause
PRECISIONS = ("float16", "bfloat16", "float32")  # tried in this order: the first within TOLERANCE is kept


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


def builtin_models(folder: Path = MODELS_DIR) -> list[BuiltinModel]:
    """Every model whose card is in ``folder``, sorted by name; [] when none ships."""
    models = []
    for card_path in sorted(folder.glob("*.json")):
        card = json.loads(card_path.read_text())
        models.append(BuiltinModel(card["name"], card["channel"], folder / card["file"], card["sha256"], card))
    return models


def builtin_model(channel: str = "w1", folder: Path = MODELS_DIR) -> BuiltinModel:
    """The built-in model for ``channel``; UsageError naming the channels there are when none fits."""
    models = builtin_models(folder)
    for model in models:
        if model.channel == channel:
            return model
    there = ", ".join(m.channel for m in models) or "none in this installation"
    raise UsageError(f"channel {channel}: no built-in model for it (built-in: {there}); pass a checkpoint "
                     "trained on your channel with checkpoint")


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


def describe(model: BuiltinModel) -> str:
    """The one line a command prints when it falls back to the built-in model."""
    return f"using the built-in {model.name} model ({model.summary}; see `blurlatent models`)"


# --- making one ---------------------------------------------------------------------------------------


def slim_checkpoint(src: str | Path, dst: str | Path, probe: np.ndarray, alphas=(0.5,),
                    force: bool = False) -> dict[str, Any]:
    """Write ``src`` (a trained checkpoint) to ``dst`` without training state, its weights in the first of
    ``PRECISIONS`` whose deblurred ``probe`` pairs stay within ``TOLERANCE`` of float32's.

    ``probe``: float [N, 2, H, W] (blurriest, less blurry) in [0, 1], e.g. synthetic test fields. Returns
    ``{"precision", "max_abs_diff", "sha256", "bytes"}`` for the card.
    """
    ckpt = load_checkpoint(src)
    reference = Predictor(build_model(ckpt, str(src)), fuse=False)
    expected = reference.combine(probe[:, 0], probe[:, 1], list(alphas), "deblur")
    for precision in PRECISIONS:
        dtype = getattr(torch, precision)
        weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in ckpt["model"].items()}
        slim = {key: ckpt[key] for key in ("format_version", "package_version", "torch_version") if key in ckpt}
        slim.update(config=ckpt["config"], model=weights)
        model = build_model(slim, str(src))  # the weights as they will load: rounded, then float32 again
        got = Predictor(model, fuse=False).combine(probe[:, 0], probe[:, 1], list(alphas), "deblur")
        diff = float(np.abs(got - expected).max())
        if diff <= TOLERANCE:
            break
    with atomic_path(dst, force=force) as tmp:
        torch.save(slim, tmp)
    return {"precision": precision, "max_abs_diff": diff, "sha256": sha256_file(dst), "bytes": Path(dst).stat().st_size}
