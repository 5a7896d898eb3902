"""Checkpoints you can trust: one file of plain data, written atomically, read with ``weights_only=True``.

A checkpoint is a dict::

    format_version   int (CHECKPOINT_FORMAT_VERSION)
    package_version  str
    torch_version    str
    config           the resolved run config as plain data (``version``: what keys it lacks mean; none:
                     version 1, ``config.OLDER_DEFAULTS``); config["model"] rebuilds the network
                     (``config.model_config``: its ``arch``, paper or multiscale; absent in version 1: paper),
                     config["data"]["normalize"] says how images were scaled to [0, 1]
    model            state_dict of the unwrapped model
    optimizer, scheduler, scaler   state dicts (or None)
    epoch, step      the last completed epoch, and the steps done in the next one (Ctrl-C mid-epoch)
    rng              {"torch": ByteTensor, "numpy": list, "python": list[, "cuda"]} for an exact resume
    metrics          dict of the last epoch's figures
    best_val, best_epoch, partial (sums and seconds of a stopped epoch), runtime

Nothing else may be pickled in it: ``torch.load(weights_only=True)`` refuses arbitrary objects, and
so do we, with a clear message. Every loader (``Predictor.from_checkpoint``, evaluate, train's init and
resume) goes through ``load_checkpoint``, which also checks the contents (``check_checkpoint``): the keys,
a sane ``config.model``, its memory estimated from the config before anything is built, and weights that
fit it, are floating point, finite, with non-negative BatchNorm variances. The run folder around the
checkpoints is ``run``'s.
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blurlatent import __version__
from blurlatent.config import ModelConfig, model_config, to_dict
from blurlatent.errors import UsageError
from blurlatent.files.atomic import atomic_path, json_safe, refuse_special_file
from blurlatent.nets.autoencoder import AnyAutoencoder, build_autoencoder

CHECKPOINT_FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "config", "model")
RESUME_KEYS = ("optimizer", "scheduler", "epoch", "rng")  # what --resume needs beyond REQUIRED_KEYS


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus format and version stamps) atomically: temp file, then rename."""
    payload = dict(payload)
    payload.setdefault("format_version", CHECKPOINT_FORMAT_VERSION)
    payload.setdefault("package_version", __version__)
    payload.setdefault("torch_version", str(torch.__version__))
    save_torch_file(payload, path, force=True)


def save_torch_file(obj: Any, path: str | Path, force: bool) -> None:
    """``torch.save`` atomically, through an open file: given a path, torch names the zip's folder after the file
    it writes (our temp file, which holds the process id and host name); given a file object it writes the
    neutral ``archive/``. Nothing of the machine that saved it goes into a checkpoint."""
    with atomic_path(path, force=force) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint (``check_checkpoint``): every loader (inference, evaluate, train's init
    and resume) comes through here. Raises UsageError naming the file and what is wrong."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: checkpoint not found; pass a .pt written by `blurlatent train` "
                         "(e.g. runs/NAME/best.pt)")
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; pass the checkpoint file inside it (e.g. {path}/best.pt)")
    refuse_special_file(path, "pass a .pt written by `blurlatent train`")  # a FIFO would block torch.load forever
    free = free_memory(torch.device("cpu"))
    if free is not None and path.stat().st_size > free:
        raise UsageError(f"{path}: checkpoint of {_gb(path.stat().st_size)} does not fit the {_gb(free)} of free "
                         "memory; load it on a larger machine")
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
    check_checkpoint(ckpt, str(path))
    return ckpt


def check_checkpoint(ckpt: Any, source: str) -> ModelConfig:
    """The checkpoint's model config, after checking everything a loader relies on: the keys, the format,
    ``config.model`` (types and sane ranges: ``ModelConfig.check``), and weights that fit that model
    (compared on the meta device, before any memory is spent), are floating point where the model's are,
    finite, with non-negative BatchNorm variances. Raises UsageError naming ``source`` and the fault."""
    missing = [k for k in REQUIRED_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise UsageError(f"{source}: not a blurlatent checkpoint (missing {', '.join(missing)}); "
                         "pass a .pt written by `blurlatent train`")
    if ckpt["format_version"] != CHECKPOINT_FORMAT_VERSION:
        raise UsageError(f"{source}: checkpoint format {ckpt['format_version']}, this blurlatent {__version__} reads "
                         f"format {CHECKPOINT_FORMAT_VERSION}; retrain or use a matching blurlatent version")
    config = ckpt["config"]
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        what = "config" if not isinstance(config, dict) else "config.model"
        raise UsageError(f"{source}: damaged checkpoint: {what} is missing or not a mapping (the model's widths "
                         "must be there); pass a .pt written by `blurlatent train`")
    if not isinstance(config.get("data", {}), dict):
        raise UsageError(f"{source}: damaged checkpoint: config.data is not a mapping; pass a .pt written by "
                         "`blurlatent train`")
    model = model_config(config, f"{source}: config.model")
    try:
        model.check()
    except UsageError as exc:
        raise UsageError(f"{source}: config: {exc}") from None
    own = meta_state(model)  # names, shapes and dtypes of what its config claims, without memory
    check_fits(model, source, torch.device("cpu"), own=own)  # before anything is built
    check_weights(ckpt["model"], model, source, own=own)
    return model


def check_weights(state: Any, model: ModelConfig, source: str, own: dict | None = None) -> None:
    """UsageError unless ``state`` is a state dict of tensors that fits ``model`` (names, shapes, float
    dtypes) with finite values and non-negative BatchNorm running variances. ``own``: ``meta_state(model)``."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{source}: damaged checkpoint: its model entry is not a state dict of tensors; "
                         "pass a .pt written by `blurlatent train`")
    own = own if own is not None else meta_state(model)
    problem = weight_mismatch(own, state)
    if problem:
        raise UsageError(f"{source}: weights do not fit its own config.model {to_dict(model)} ({problem}); the file "
                         "is damaged or was edited: use a checkpoint of the same model config as its weights")
    for name, tensor in state.items():
        if own[name].is_floating_point() and not tensor.is_floating_point():
            raise UsageError(f"{source}: weight {name} is {str(tensor.dtype).replace('torch.', '')}, not floating "
                             "point; the file is damaged or was edited — use another copy")
        if tensor.is_floating_point():
            _check_values(name, tensor, source)


def _check_values(name: str, tensor: torch.Tensor, source: str) -> None:
    # A float32 sum is finite iff every value is (barring an overflow of huge finite values: then look closer).
    if not math.isfinite(float(tensor.sum())) and not bool(torch.isfinite(tensor).all()):
        kind = "NaN" if bool(torch.isnan(tensor).any()) else "infinite"
        raise UsageError(f"{source}: weight {name} holds {kind} values; the model is broken (a diverged run "
                         "or a damaged file) — use an earlier checkpoint")
    if name.endswith("running_var") and tensor.numel() and float(tensor.min()) < 0:
        raise UsageError(f"{source}: weight {name} holds negative BatchNorm variances ({float(tensor.min()):.3g}); "
                         "the file is damaged or was edited — use another copy")


def meta_state(model: ModelConfig) -> dict[str, torch.Tensor]:
    """The state dict of ``build_autoencoder(model)`` on the meta device: names, shapes, dtypes, no memory."""
    with torch.device("meta"):
        return build_autoencoder(model).state_dict()


def model_bytes(model: ModelConfig, own: dict | None = None) -> int:
    """Bytes of one copy of the model's weights and buffers, from its config alone (``own``: its meta_state)."""
    return sum(t.numel() * t.element_size() for t in (own if own is not None else meta_state(model)).values())


def check_fits(model: ModelConfig, source: str | None, device: torch.device, copies: int = 1,
               own: dict | None = None) -> None:
    """UsageError when ``copies`` of the model's weights (``model_bytes``) exceed the free memory of
    ``device`` (CPU: available RAM within any cgroup limit; CUDA: free GPU memory) — before building it.
    ``source``: the checkpoint file whose config it is, or None for a config the user gave."""
    need = copies * model_bytes(model, own)
    free = free_memory(device)
    if free is None or need <= free:
        return
    if source:
        raise UsageError(f"{source}: its config.model widths {model.widths} need ~{_gb(need)} of weights, more "
                         f"than the {_gb(free)} free on {device}; load it on a machine with more memory")
    what = f"weights, gradients and optimizer state need ~{_gb(need)} ({copies}x {_gb(need // copies)})" \
        if copies > 1 else f"the weights need ~{_gb(need)}"
    raise UsageError(f"{{model.widths}} {model.widths}: {what}, more than the {_gb(free)} free on {device}; use "
                     "smaller {model.widths}", "model.widths")


def free_memory(device: torch.device) -> int | None:
    """Free bytes on ``device`` (None when unknown): CUDA's free memory, or the host's MemAvailable capped
    by a cgroup v2 memory limit."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if free is None and hasattr(os, "sysconf"):
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        limit = ""
    if limit.isdigit():
        free = min(free, int(limit)) if free is not None else int(limit)
    return free


def _gb(n: int) -> str:
    return f"{n / 2**20:.3g} MB" if n < 2**29 else f"{n / 2**30:.3g} GB" if n < 2**39 else f"{n / 2**30:.0f} GB"


def build_model(ckpt: dict[str, Any], source: str = "checkpoint") -> AnyAutoencoder:
    """The autoencoder described by ``ckpt['config']['model']`` (its ``arch``; none recorded: the paper's), of a
    checkpoint ``load_checkpoint`` checked (memory included), with its weights, in eval mode. Built on the meta
    device and given the checkpoint's tensors (as float32), so no time goes into a random initialization that
    the weights replace."""
    config = model_config(ckpt["config"], f"{source}: config.model")
    with torch.device("meta"):
        model = build_autoencoder(config)
    own = model.state_dict()  # load_checkpoint's check_weights has matched names and shapes against it
    # fresh standard-stride copies, as load_state_dict into built parameters makes (train saves channels_last
    # strides, which would pick other conv kernels and change the output in the last bit)
    state = {k: torch.empty(v.shape, dtype=own[k].dtype, device=v.device).copy_(v) for k, v in ckpt["model"].items()}
    model.load_state_dict(state, assign=True)
    return model.eval()


def weight_mismatch(own: dict[str, torch.Tensor], state: dict) -> str | None:
    """What differs between a model's state dict ``own`` and ``state`` (names and shapes), or None."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
    parts = []
    for label, names, more in (("shape differs:", mismatched, " more"), ("missing", missing, ""),
                               ("unexpected", unexpected, "")):
        if names:
            parts.append(f"{label} {names[0]}" + (f" (+{len(names) - 1}{more})" if len(names) > 1 else ""))
    return "; ".join(parts) or None


def load_weights(model: torch.nn.Module, state: dict, source: str) -> None:
    """``load_state_dict`` with a message that says which tensors differ instead of a wall of text."""
    problem = weight_mismatch(model.state_dict(), state)
    if problem:
        raise UsageError(f"{source}: weights do not fit this model ({problem}); "
                         "use a checkpoint of the same model config")
    model.load_state_dict(state)


def check_resumable(ckpt: dict[str, Any], source: str) -> None:
    """UsageError naming ``source`` unless ``ckpt`` (a checked checkpoint) carries what an exact resume
    needs (``RESUME_KEYS``) with finite optimizer state."""
    missing = [k for k in RESUME_KEYS if ckpt.get(k) is None]
    if missing:
        raise UsageError(f"{source}: not resumable (no {', '.join(missing)}: not a run's last.pt); start a new run "
                         "with {init} instead", "init")
    if any(t.is_floating_point() and not bool(torch.isfinite(t).all()) for t in tensors_in(ckpt["optimizer"])):
        raise UsageError(f"{source}: the optimizer state holds NaN or infinite values (a diverged run); "
                         "resume from an earlier copy or start a new run with {init}", "init")


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor in ``value``: a tensor, or dicts, lists and tuples of them, nested (a checkpoint payload)."""
    stack = [value]
    while stack:  # a loop, not recursion: a hand-made file may nest deeper than Python's recursion limit
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            yield item
        elif isinstance(item, (dict, list, tuple)):
            stack.extend(item.values() if isinstance(item, dict) else item)


def restore_run(ckpt: dict[str, Any], model, optimizer, scheduler, scaler, device: torch.device,
                source: str) -> tuple[int, int, float, int, dict | None]:
    """Put a run's weights, optimizer, scheduler, scaler and RNG state back from ``ckpt`` (its last.pt);
    returns (epoch, step, best_val, best_epoch, partial). UsageError naming ``source`` when the file lacks
    them or holds non-finite optimizer state (``check_resumable``), or its state does not fit."""
    check_resumable(ckpt, source)
    load_weights(model, ckpt["model"], source)
    try:  # the state dicts of another optimizer or a hand-edited file: torch raises its own errors
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        restore_rng(ckpt["rng"], device)
        return (int(ckpt["epoch"]), int(ckpt.get("step", 0)), float(ckpt.get("best_val", math.inf)),
                int(ckpt.get("best_epoch", 0)), ckpt.get("partial"))
    except (AttributeError, KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise UsageError(f"{source}: damaged resume state ({type(exc).__name__}: {str(exc)[:120]}); resume from "
                         "an earlier copy or start a new run with {init}", "init") from None


def load_init(path: str | Path, model: ModelConfig, into: torch.nn.Module | None = None) -> dict[str, Any]:
    """The checkpoint ``path`` to start a run from, refused (UsageError) when missing, unreadable, unsafe,
    broken (``check_checkpoint``) or of another model config than ``model``; its weights loaded ``into``
    that module when given."""
    if not Path(path).is_file():
        raise UsageError(f"{{init}} {path}: checkpoint not found; pass a .pt written by `blurlatent train`", "init")
    ckpt = load_checkpoint(path)
    init_model = model_config(ckpt["config"], f"{path}: config.model")
    if init_model.arch != model.arch:  # its widths cannot match: another network altogether
        raise UsageError(f"{{init}} {path}: a {init_model.arch} model, another architecture than this run's "
                         f"{{model.arch}} {model.arch}; fine-tune it with {{model.arch={init_model.arch}}} (or leave "
                         f"{{model.arch}} out: {{init}} brings its own), or train {model.arch} without {{init}}",
                         "init", "model.arch")
    if not init_model.same_network(model):
        raise UsageError(f"{{init}} {path}: its model {to_dict(init_model)} differs from this run's "
                         f"{to_dict(model)}; pass matching {{model.widths}}", "init", "model.widths")
    if into is not None:
        load_weights(into, ckpt["model"], str(path))
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
    assert isinstance(np_state, tuple)  # the legacy global generator (MT19937) gives a tuple; only others a dict
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
