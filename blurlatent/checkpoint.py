"""Checkpoints you can trust: one file of plain data, written atomically, read with ``weights_only=True``.

A checkpoint is a dict::

    format_version   int (CHECKPOINT_FORMAT_VERSION)
    package_version  str
    torch_version    str
    config           the resolved run config as plain data; config["model"] rebuilds the network,
                     config["data"]["normalize"] says how images were scaled to [0, 1]
    model            state_dict of the unwrapped model
    optimizer, scheduler, scaler   state dicts (or None)
    epoch            int, the last completed epoch
    rng              {"torch": ByteTensor, "numpy": list, "python": list} for an exact resume
    metrics          dict of the last epoch's figures

Nothing else may be pickled in it: ``torch.load(weights_only=True)`` refuses arbitrary objects, and
so do we, with a clear message.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .errors import UsageError
from .files import atomic_path

CHECKPOINT_FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "config", "model")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus format and version stamps) atomically: temp file, then rename."""
    payload = dict(payload)
    payload.setdefault("format_version", CHECKPOINT_FORMAT_VERSION)
    payload.setdefault("package_version", __version__)
    payload.setdefault("torch_version", str(torch.__version__))
    with atomic_path(path, force=True) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint. Raises UsageError naming the file and what is wrong."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: checkpoint not found; pass a .pt written by `blurlatent train` (e.g. runs/NAME/best.pt)")
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; pass the checkpoint file inside it (e.g. {path}/best.pt)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise UsageError(
            f"{path}: refused to load: the checkpoint carries objects other than tensors and plain data "
            f"({first[:160]}); only load checkpoints written by blurlatent"
        ) from None
    except Exception as exc:
        raise UsageError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc)[:160]}); the file may be truncated — use another copy") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        raise UsageError(f"{path}: not a blurlatent checkpoint (missing {', '.join(k for k in REQUIRED_KEYS if not isinstance(ckpt, dict) or k not in ckpt)}); pass a .pt written by `blurlatent train`")
    if ckpt["format_version"] != CHECKPOINT_FORMAT_VERSION:
        raise UsageError(f"{path}: checkpoint format {ckpt['format_version']}, this blurlatent {__version__} reads format {CHECKPOINT_FORMAT_VERSION}; retrain or use a matching blurlatent version")
    return ckpt


def build_model(ckpt: dict[str, Any], source: str = "checkpoint"):
    """The Autoencoder described by ``ckpt['config']['model']`` with its weights loaded, in eval mode."""
    from .config import ModelConfig, from_dict
    from .model import Autoencoder

    model = Autoencoder(from_dict(ModelConfig, ckpt["config"]["model"], f"{source}: config.model"))
    load_weights(model, ckpt["model"], source)
    return model.eval()


def load_weights(model: torch.nn.Module, state: dict, source: str) -> None:
    """``load_state_dict`` with a message that says which tensors differ instead of a wall of text."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if mismatched:
            parts.append(f"shape differs: {mismatched[0]}" + (f" (+{len(mismatched) - 1} more)" if len(mismatched) > 1 else ""))
        if missing:
            parts.append(f"missing {missing[0]}" + (f" (+{len(missing) - 1})" if len(missing) > 1 else ""))
        if unexpected:
            parts.append(f"unexpected {unexpected[0]}" + (f" (+{len(unexpected) - 1})" if len(unexpected) > 1 else ""))
        raise UsageError(f"{source}: weights do not fit this model ({'; '.join(parts)}); use a checkpoint of the same model config")
    model.load_state_dict(state)
