"""Checkpoints you can trust: one file of plain data, written atomically, read with ``weights_only=True``.

A checkpoint is a dict::

    format_version   int (CHECKPOINT_FORMAT_VERSION)
    package_version  str
    torch_version    str
    config           the resolved run config as plain data; config["model"] rebuilds the network,
                     config["data"]["normalize"] says how images were scaled to [0, 1]
    model            state_dict of the unwrapped model
    optimizer, scheduler, scaler   state dicts (or None)
    epoch, step      the last completed epoch, and the steps done in the next one (Ctrl-C mid-epoch)
    rng              {"torch": ByteTensor, "numpy": list, "python": list[, "cuda"]} for an exact resume
    metrics          dict of the last epoch's figures
    best_val, best_epoch, partial (sums and seconds of a stopped epoch), runtime

Nothing else may be pickled in it: ``torch.load(weights_only=True)`` refuses arbitrary objects, and
so do we, with a clear message. The run folder around the checkpoints is ``run``'s.
"""

from __future__ import annotations

import hashlib
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .config import ModelConfig, from_dict, to_dict
from .errors import UsageError
from .files import atomic_path, json_safe
from .model import Autoencoder

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
        raise UsageError(f"{path}: checkpoint not found; pass a .pt written by `blurlatent train` "
                         "(e.g. runs/NAME/best.pt)")
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
        raise UsageError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc)[:160]}); "
                         "the file may be truncated — use another copy") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise UsageError(f"{path}: not a blurlatent checkpoint (missing {', '.join(missing)}); "
                         "pass a .pt written by `blurlatent train`")
    if ckpt["format_version"] != CHECKPOINT_FORMAT_VERSION:
        raise UsageError(f"{path}: checkpoint format {ckpt['format_version']}, this blurlatent {__version__} reads "
                         f"format {CHECKPOINT_FORMAT_VERSION}; retrain or use a matching blurlatent version")
    return ckpt


def build_model(ckpt: dict[str, Any], source: str = "checkpoint") -> Autoencoder:
    """The Autoencoder described by ``ckpt['config']['model']`` with its weights loaded, in eval mode."""
    model = Autoencoder(from_dict(ModelConfig, ckpt["config"]["model"], f"{source}: config.model"))
    load_weights(model, ckpt["model"], source)
    return model.eval()


def load_weights(model: torch.nn.Module, state: dict, source: str) -> None:
    """``load_state_dict`` with a message that says which tensors differ instead of a wall of text."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
    parts = []
    for label, names, more in (("shape differs:", mismatched, " more"), ("missing", missing, ""),
                               ("unexpected", unexpected, "")):
        if names:
            parts.append(f"{label} {names[0]}" + (f" (+{len(names) - 1}{more})" if len(names) > 1 else ""))
    if parts:
        raise UsageError(f"{source}: weights do not fit this model ({'; '.join(parts)}); "
                         "use a checkpoint of the same model config")
    model.load_state_dict(state)


def load_init(path: str | Path, model: ModelConfig) -> dict[str, Any]:
    """The checkpoint ``path`` to start a run from, refused (UsageError) when missing, unreadable, unsafe,
    or of another model config than ``model``."""
    if not Path(path).is_file():
        raise UsageError(f"init {path}: checkpoint not found; pass a .pt written by `blurlatent train`")
    ckpt = load_checkpoint(path)
    init_model = from_dict(ModelConfig, ckpt["config"].get("model") or {}, f"{path}: config.model")
    if init_model != model:
        raise UsageError(f"init {path}: its model {to_dict(init_model)} differs from this run's {to_dict(model)}; "
                         "pass matching model widths")
    return ckpt


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state_dict's names, dtypes, shapes and bytes (layout-independent): equal iff bitwise equal."""
    h = hashlib.sha256()
    for name, t in state.items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# --- RNG state as plain data (weights_only checkpoints refuse numpy objects and tuples of them) ----------


def rng_state(device: torch.device) -> dict[str, Any]:
    """torch, numpy, python (and this CUDA device's) RNG states as tensors and lists."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": json_safe(random.getstate()),  # tuples become lists: weights_only refuses tuples of them
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    """Put back the RNG states ``rng_state`` saved."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
