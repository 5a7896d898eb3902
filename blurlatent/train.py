"""Training: the paper's losses (Eq. 4, Eq. 5) on one CPU, one GPU or many (DDP), with exact resume.

Losses (L1 means; x_l, x_t, x_r the left, target and right planes of a triplet, z = E(x))::

    recon  = ½ (L1(G(z_l), x_l) + L1(G(z_r), x_r))        every run ("none" is recon alone)
    interp = L1(G(z'), x_t),   z' = α z_r + (1 − α) z_l     added by "weak" (Eq. 4)
    latent = L1(z', E(x_t))                                 added by "strong" (Eq. 5)

One step encodes every image it needs in ONE batched encoder call and decodes the reconstructions and
the interpolation in ONE decoder call (the paper's code makes three of each). In training mode
BatchNorm therefore normalizes over the whole concatenated batch rather than per call.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one line per epoch),
``last.pt`` (every epoch, and on Ctrl-C), ``best.pt`` (lowest validation loss) and ``strips/``.

Several processes: ``nproc > 1`` spawns one process per GPU (NCCL) or per CPU share (gloo); under
``torchrun`` the RANK/WORLD_SIZE/LOCAL_RANK variables are used instead. ``optim.batch`` is the batch
size *per process*: the effective batch is ``batch × world size``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .bbbc006 import PAPER_TRIPLETS
from .config import RESUMABLE_CHANGES, DataConfig, ModelConfig, OptimConfig, TrainConfig, choices, Amp, Reg, from_dict, save_yaml, to_dict
from .errors import RuntimeFailure, UsageError
from .device import assign_device, train_precision
from .model import Autoencoder

log = logging.getLogger(__name__)



# ---------------------------------------------------------------------------------------------------
# losses


def loss_terms(model, left: torch.Tensor, target: torch.Tensor, right: torch.Tensor, reg: str = "none",
               alpha: float = 0.5, all_terms: bool = False) -> dict[str, torch.Tensor]:
    """The loss of ``reg`` and its terms, as 0-d float32 tensors.

    ``model`` has ``encode``/``decode``; ``left``, ``target``, ``right``: float [B, C, H, W] in [0, 1].
    Returns ``{"loss", "recon"}`` plus ``"interp"`` (weak, strong) and ``"latent"`` (strong); with
    ``all_terms`` all three terms are computed (validation logs them for every run) while ``"loss"``
    still sums only those of ``reg``. Raises ValueError for an unknown ``reg``.
    """
    if reg not in choices(Reg):
        raise ValueError(f"reg {reg!r}: use one of {', '.join(choices(Reg))}")
    need_interp = all_terms or reg != "none"
    need_latent = all_terms or reg == "strong"
    b = left.shape[0]
    # One encoder call for every image needed; E(x_t) only when the latent term uses it.
    z = model.encode(torch.cat([left, right, target]) if need_latent else torch.cat([left, right]))
    z_l, z_r = z[:b], z[b:2 * b]
    if need_interp:
        z_i = alpha * z_r + (1.0 - alpha) * z_l  # Eq. 2 (interpolate.interpolate_latents), right = sharper side
        y = model.decode(torch.cat([z[:2 * b], z_i]))
    else:
        y = model.decode(z[:2 * b])
    y = y.float()  # losses in fp32 whatever autocast chose
    terms = {"recon": 0.5 * (F.l1_loss(y[:b], left.float()) + F.l1_loss(y[b:2 * b], right.float()))}
    if need_interp:
        terms["interp"] = F.l1_loss(y[2 * b:], target.float())
    if need_latent:
        terms["latent"] = F.l1_loss(z_i.float(), z[2 * b:].float())
    loss = terms["recon"]
    if reg != "none":
        loss = loss + terms["interp"]
    if reg == "strong":
        loss = loss + terms["latent"]
    return {"loss": loss, **terms}


class _LossModule(nn.Module):
    """Wraps the autoencoder so that one ``forward`` runs the whole step: DDP syncs gradients through forward."""

    def __init__(self, model: nn.Module, reg: str, alpha: float):
        super().__init__()
        self.model, self.reg, self.alpha = model, reg, alpha

    def forward(self, left, target, right):
        return loss_terms(self.model, left, target, right, self.reg, self.alpha)


# ---------------------------------------------------------------------------------------------------
# config resolution


def resolve_config(config: TrainConfig, check_init: bool = True) -> TrainConfig:
    """Check ``config`` and fill ``data.normalize`` from the store's manifest. Raises UsageError.

    ``check_init=False`` (resuming) skips the ``init`` file: its weights are already in ``last.pt``.
    """
    from .store import Store

    if config.reg not in choices(Reg):
        raise UsageError(f"--reg {config.reg}: use none, weak or strong")
    if config.amp not in choices(Amp):
        raise UsageError(f"amp {config.amp!r}: use auto, bf16, fp16 or off")
    o = config.optim
    for name, value in (("epochs", o.epochs), ("batch size", o.batch), ("optim.step", o.step), ("nproc", config.nproc)):
        if value < 1:
            raise UsageError(f"{name} {value}: must be at least 1")
    if not o.lr > 0:
        raise UsageError(f"learning rate {o.lr}: must be > 0")
    if not 0.0 <= config.data.alpha <= 1.0:
        raise UsageError(f"alpha {config.data.alpha}: must lie in [0, 1]")
    if any(w < 1 for w in config.model.widths) or not config.model.widths:
        raise UsageError(f"--widths {config.model.widths}: give positive layer widths, e.g. 64,128,256,512,1024")
    if not config.data.triplets:
        raise UsageError("data.triplets is empty: list (left, target, right) planes, e.g. [[0, 8, 16]]")
    for t in config.data.triplets:
        if not (t[0] < t[1] < t[2]):
            raise UsageError(f"triplet {list(t)}: planes must be ordered left < target < right")
    if config.reg == "strong" and not config.init and not config.from_scratch:
        raise UsageError("--reg strong fine-tunes a weak model: pass --init runs/WEAK/best.pt, or --from-scratch to start from random weights")
    if check_init and config.init and not Path(config.init).is_file():
        raise UsageError(f"--init {config.init}: checkpoint not found; pass a .pt written by `blurlatent train`")
    if check_init and config.init:
        _load_init(config)  # a truncated, unsafe or other-shape --init fails here, before the run folder exists
    if not config.data.store:
        raise UsageError("no store given: pass STORE/ (a folder from `blurlatent prepare`) or data.store in --config")
    store = Store(config.data.store)
    if config.data.channel not in store.channels:
        raise UsageError(f"--channel {config.data.channel}: not in {config.data.store} (channels {store.channels}); use one of them")
    for t in config.data.triplets:
        for p in t:
            store.plane_index(p)
    crop = int(store.array(config.data.channel, "train").shape[-1])
    multiple = 2 ** len(config.model.widths)
    if crop % multiple:
        raise UsageError(f"crop {crop} px is not divisible by 2**depth = {multiple}; use fewer --widths or prepare with another --crop")
    norm = store.manifest.get("normalization", store.manifest.get("normalize", "minmax"))
    if isinstance(norm, dict):
        norm = norm.get("method", "minmax")
    config.data.normalize = str(norm)
    return config


# ---------------------------------------------------------------------------------------------------
# distributed helpers


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def torchrun_env() -> _Dist | None:
    """The rank layout torchrun (or any env:// launcher) gave this process, or None when not launched so."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return _Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    return None


def _all_sum(values: list[float], dist_info: _Dist, device) -> list[float]:
    if dist_info.world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# ---------------------------------------------------------------------------------------------------
# data


class _Batches(torch.utils.data.Dataset):
    """Dataset indexed by a *list* of item indices: one memmap gather per batch, uint8 out."""

    def __init__(self, triplets):
        self.triplets = triplets

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, indices):
        return torch.from_numpy(self.triplets.batch(indices))


class _EpochBatches:
    """Batches of one epoch: DistributedSampler order (seeded by seed + epoch, so a resumed run sees the
    same order), split into per-process batches, the first ``skip`` left out (mid-epoch resume)."""

    def __init__(self, n: int, batch: int, dist_info: _Dist, seed: int):
        from torch.utils.data import DistributedSampler

        self.sampler = DistributedSampler(range(n), num_replicas=dist_info.world, rank=dist_info.rank,
                                          shuffle=True, seed=seed, drop_last=False)
        self.batch, self.skip = batch, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.sampler.set_epoch(epoch)
        self.skip = skip

    def total(self) -> int:
        return math.ceil(len(self.sampler) / self.batch)

    def __len__(self) -> int:
        return self.total() - self.skip

    def __iter__(self):
        idx = list(self.sampler)
        for start in range(self.skip * self.batch, len(idx), self.batch):
            yield idx[start:start + self.batch]


def _loader(triplets, sampler, workers: int, pin: bool, seed: int):
    from torch.utils.data import DataLoader

    g = torch.Generator()
    g.manual_seed(seed)  # keeps DataLoader from drawing on the global RNG (exact resume)
    kw = dict(persistent_workers=True, prefetch_factor=4) if workers > 0 else {}
    return DataLoader(_Batches(triplets), batch_size=None, sampler=sampler, num_workers=workers,
                      pin_memory=pin, generator=g, **kw)


def _to_device(u8: torch.Tensor, device, channels_last: bool):
    """uint8 [B, 3, H, W] → float (left, target, right), each [B, 1, H, W] in [0, 1] on ``device``."""
    x = u8.to(device, non_blocking=True).float().div_(255.0)
    parts = [x[:, i:i + 1] for i in range(3)]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return [p.contiguous(memory_format=fmt) for p in parts]


# ---------------------------------------------------------------------------------------------------
# RNG state as plain data (weights_only checkpoints refuse numpy objects and tuples of them)


def _rng_state(device) -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": _plain_tuple(random.getstate()),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _plain_tuple(value):
    return [_plain_tuple(v) for v in value] if isinstance(value, (tuple, list)) else value


def _restore_rng(state: dict[str, Any], device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


# ---------------------------------------------------------------------------------------------------
# the run folder


def _prepare_out(out: Path, resume: bool, force: bool) -> Path | None:
    """Check and create the run folder; returns the topmost folder this call created (None: it existed)."""
    from .files import check_output_location

    if resume:
        if not (out / "last.pt").is_file():
            raise UsageError(f"--resume {out}: no last.pt there; " + ("the run stopped before its first checkpoint: rerun its `blurlatent train` command with --force" if (out / "config.yaml").is_file() else "pass a run folder written by `blurlatent train`"))
        return None
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file; choose a folder name")
    check_output_location(out)
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise UsageError(f"--out {out}: run folder exists; pass --resume {out} to continue it or --force to replace it")
        # Remove only what a run writes: --force on a mistyped path must not wipe unrelated files.
        for name in ("last.pt", "best.pt", "metrics.jsonl", "config.yaml"):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "strips", ignore_errors=True)
    created = None
    if not out.exists():
        created = out.absolute()
        while not created.parent.exists():
            created = created.parent
    out.mkdir(parents=True, exist_ok=True)
    return created


def _discard_unstarted(out: Path, created: Path | None) -> None:
    """A run that fails before its first checkpoint leaves nothing to resume: remove what it wrote, and the
    folders it created, so the corrected rerun needs no --force. Runs with a ``last.pt`` are kept."""
    if (out / "last.pt").exists():
        return
    for name in ("config.yaml", "metrics.jsonl", "best.pt"):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "strips", ignore_errors=True)
    folder = out.absolute()
    while created is not None:
        try:
            folder.rmdir()
        except OSError:  # not empty: something else was put there meanwhile, leave it
            break
        if folder == created:
            break
        folder = folder.parent


def _load_init(config: TrainConfig) -> dict:
    """The ``--init`` checkpoint, refused (UsageError) when unreadable, unsafe, or of another model config."""
    from .checkpoint import load_checkpoint

    ckpt = load_checkpoint(config.init)
    init_model = from_dict(ModelConfig, ckpt["config"].get("model") or {}, f"{config.init}: config.model")
    if init_model != config.model:
        raise UsageError(f"--init {config.init}: its model {to_dict(init_model)} differs from this run's {to_dict(config.model)}; pass matching --widths")
    return ckpt


def _check_resume_config(saved: dict, config: TrainConfig, path: Path) -> None:
    given = to_dict(config)

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    a, b = dict(flat(saved)), dict(flat(given))
    for key in sorted(set(a) | set(b)):
        if key in RESUMABLE_CHANGES:
            continue
        if a.get(key) != b.get(key):
            raise UsageError(f"--resume {path}: {key} was {a.get(key)!r} in that run, now {b.get(key)!r}; "
                             f"resume with the run's settings (only {', '.join(RESUMABLE_CHANGES)} may change) or start a new run with --init")


def _trim_metrics(path: Path, epochs_done: int, last: dict | None = None) -> None:
    """Make ``metrics.jsonl`` end at the checkpoint's epoch: drop lines of later epochs (redone on resume)
    and restore the checkpoint's own line (``last``) when a kill came between the checkpoint and the line."""
    lines = path.read_text().splitlines() if path.is_file() else []
    keep = [line for line in lines if line.strip() and json.loads(line)["epoch"] <= epochs_done]
    if last and last.get("epoch") == epochs_done and not any(json.loads(line)["epoch"] == epochs_done for line in keep):
        keep.append(json.dumps(last))
    path.write_text("".join(line + "\n" for line in keep))


# ---------------------------------------------------------------------------------------------------
# public entry point


@dataclass
class TrainResult:
    out: Path
    epochs: int
    best_epoch: int
    best_val: float
    metrics: dict
    replicas: list[str] = field(default_factory=list)  # state_digest of every rank's final weights


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state_dict's names, dtypes, shapes and bytes (layout-independent): equal iff bitwise equal."""
    import hashlib

    h = hashlib.sha256()
    for name, t in state.items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def train(config: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True, force: bool = False,
          on_step: Callable[[int, int], None] | None = None) -> TrainResult | None:
    """Train an autoencoder on ``config.data.store`` into run folder ``out``.

    ``resume``: continue ``out/last.pt`` exactly (same batches, optimizer, scheduler, RNG); ``config``
    must match the run's except for ``RESUMABLE_CHANGES``. ``force``: replace an existing run folder.
    ``on_step(epoch, step)`` (1-based) is called after every optimizer step of a single-process run.
    With ``config.nproc > 1`` this spawns that many processes; under torchrun each process calls it.
    Returns the TrainResult on rank 0 (None on other ranks).

    Raises UsageError (bad config, store, device, folder), RuntimeFailure (NaN/inf loss: names the
    epoch and step; the last good ``last.pt`` is kept) and KeyboardInterrupt after saving a resumable
    ``last.pt`` on Ctrl-C.
    """
    out = Path(out)
    config = resolve_config(config, check_init=not resume)
    env = torchrun_env()
    if env is not None:
        if config.nproc > 1 and config.nproc != env.world:
            log.warning("under torchrun the world size is %d; ignoring nproc=%d", env.world, config.nproc)
        return _run(config, out, resume, progress, force, env, None, on_step)
    if config.nproc == 1:
        return _run(config, out, resume, progress, force, _Dist(), None, on_step)
    if str(config.device).lower().startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--gpus {config.nproc}: no CUDA GPU is visible here; run on a GPU machine, or use --device cpu --nproc {config.nproc} for CPU processes")
    device = assign_device(config.device)
    if device.type == "cuda":
        have = torch.cuda.device_count()
        if config.nproc > have:
            raise UsageError(f"--gpus {config.nproc}: only {have} CUDA GPU(s) visible here; use --gpus {have} or fewer")
    elif device.type != "cpu":
        raise UsageError(f"--device {config.device}: several processes need cuda or cpu, not {device.type}")
    if config.sync_bn and device.type != "cuda":
        raise UsageError("--sync-bn needs CUDA GPUs; leave it off on CPU")
    created = _prepare_out(out, resume, force)  # once, before the ranks start
    try:
        return _spawn(config, out, resume, progress, device)
    except BaseException:
        if not resume:
            _discard_unstarted(out, created)
        raise


def _spawn(config: TrainConfig, out: Path, resume: bool, progress: bool, device) -> TrainResult | None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    results = ctx.SimpleQueue()
    level = logging.getLogger("blurlatent").getEffectiveLevel()
    procs = mp.start_processes(_spawn_entry, args=(config.nproc, port, to_dict(config), str(out), resume, progress, errors, results, level),
                               nprocs=config.nproc, join=False, start_method="spawn")
    # Ctrl-C reaches every rank; the ranks agree on a step, rank 0 saves, all exit. The parent just waits.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if threading.current_thread() is threading.main_thread() else None
    try:
        while True:
            try:
                if procs.join():
                    break
            except mp.ProcessExitedException:
                break
            except mp.ProcessRaisedException as exc:  # should not happen: ranks report through the queue
                raise RuntimeFailure(f"a training process failed: {str(exc).strip().splitlines()[-1]}") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    reported = []
    while not errors.empty():
        reported.append(errors.get())
    if reported:
        interrupted = [r for r in reported if r[0] == "KeyboardInterrupt"]
        kind, message = interrupted[0] if len(interrupted) == len(reported) else next(r for r in reported if r[0] != "KeyboardInterrupt")
        if kind == "KeyboardInterrupt":
            raise KeyboardInterrupt(message)
        raise {"UsageError": UsageError, "ValueError": UsageError, "FileNotFoundError": UsageError}.get(kind, RuntimeFailure)(message)
    if any(p.exitcode for p in procs.processes):
        codes = [p.exitcode for p in procs.processes]
        raise RuntimeFailure(f"a training process died (exit codes {codes}); rerun with --nproc 1 or --debug to see why")
    return results.get() if not results.empty() else None


def _spawn_entry(rank, world, port, config_dict, out, resume, progress, errors, results, level):
    logging.basicConfig(level=level, format="%(message)s")
    try:
        config = from_dict(TrainConfig, config_dict)
        info = _Dist(rank, world, rank)
        result = _run(config, Path(out), resume, progress, False, info, f"tcp://127.0.0.1:{port}", None, prepared=True)
        if rank == 0 and result is not None:
            results.put(result)
    except KeyboardInterrupt as exc:
        errors.put(("KeyboardInterrupt", str(exc)))
    except BaseException as exc:  # report, then a non-zero exit so the parent stops the other ranks
        errors.put((type(exc).__name__, f"rank {rank}: {exc}"))
        raise SystemExit(1)


# ---------------------------------------------------------------------------------------------------
# the loop


def _choose_precision(config: TrainConfig, device) -> tuple[torch.dtype | None, bool]:
    return train_precision(config.amp, config.channels_last, device)


def _run(config: TrainConfig, out: Path, resume: bool, progress: bool, force: bool, info: _Dist,
         init_method: str | None, on_step, prepared: bool = False) -> TrainResult | None:
    import torch.distributed as dist

    from .checkpoint import load_checkpoint, load_weights, save_checkpoint
    from .store import Store

    # ---- devices and process group
    device = assign_device(config.device)
    if info.world > 1:
        if device.type == "cuda":
            if info.local_rank >= torch.cuda.device_count():
                raise UsageError(f"local rank {info.local_rank}: only {torch.cuda.device_count()} CUDA GPU(s) on this node; start fewer processes per node")
            device = torch.device("cuda", info.local_rank)
            torch.cuda.set_device(device)
        elif device.type != "cpu":
            raise UsageError(f"--device {config.device}: several processes need cuda or cpu")
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=init_method or "env://", rank=info.rank, world_size=info.world)
        if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.world))
    elif device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if config.sync_bn and device.type != "cuda":
        raise UsageError("--sync-bn needs CUDA GPUs; leave it off on CPU")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    amp_dtype, channels_last = _choose_precision(config, device)
    check_every = config.check_every or (1 if device.type == "cpu" else 20)

    owned, created = False, None
    try:
        if info.main and not prepared:
            created = _prepare_out(out, resume, force)
            owned = not resume
        if info.world > 1:
            dist.barrier()

        # ---- data
        store = Store(config.data.store)
        train_ds = store.triplets(config.data.triplets, config.data.channel, "train")
        val_ds = store.triplets(config.data.triplets, config.data.channel, "val")
        if len(train_ds) == 0:
            raise UsageError(f"{config.data.store}: no {config.data.channel} train crops; prepare more fields")
        workers = config.workers if config.workers is not None else (0 if device.type == "cpu" else min(4, max(0, (os.cpu_count() or 1) // info.world - 1)))
        pin = device.type == "cuda"
        batches = _EpochBatches(len(train_ds), config.optim.batch, info, config.seed)
        loader = _loader(train_ds, batches, workers, pin, config.seed)
        val_index = list(range(info.rank, len(val_ds), info.world))
        val_batches = [val_index[i:i + config.optim.batch] for i in range(0, len(val_index), config.optim.batch)]
        val_loader = _loader(val_ds, val_batches, 0, pin, config.seed) if val_batches else []

        # ---- model, optimizer
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        random.seed(config.seed)
        model = Autoencoder(config.model)
        if config.init and not resume:
            load_weights(model, _load_init(config)["model"], str(config.init))
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        if config.sync_bn and info.world > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.optim.step, gamma=config.optim.gamma)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16)

        start_epoch, start_step, best_val, best_epoch, partial = 0, 0, math.inf, 0, None
        if resume:
            ckpt = load_checkpoint(out / "last.pt", map_location=device)
            _check_resume_config(ckpt["config"], config, out)
            load_weights(model, ckpt["model"], str(out / "last.pt"))
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            if ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            start_epoch, start_step = int(ckpt["epoch"]), int(ckpt.get("step", 0))
            best_val, best_epoch = float(ckpt.get("best_val", math.inf)), int(ckpt.get("best_epoch", 0))
            partial = ckpt.get("partial")
            _restore_rng(ckpt["rng"], device)
            if info.main:
                _trim_metrics(out / "metrics.jsonl", start_epoch, ckpt.get("metrics") if start_step == 0 else None)
            log.info("resuming %s at epoch %d step %d", out, start_epoch + 1, start_step)
        if info.main:
            save_yaml(config, out / "config.yaml")

        step_module = _LossModule(model, config.reg, config.data.alpha)
        if info.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            step_module = DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None)

        runtime = {"device": str(device), "world_size": info.world, "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
                   "channels_last": channels_last, "workers": workers, "batch_per_process": config.optim.batch}
        if info.main:
            log.info("training on %s", runtime)

        def payload(epoch: int, step: int, metrics: dict, partial_state=None) -> dict:
            return {
                "config": to_dict(config),
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "epoch": epoch,
                "step": step,
                "rng": _rng_state(device),
                "metrics": metrics,
                "best_val": best_val,
                "best_epoch": best_epoch,
                "partial": partial_state,
                "runtime": runtime,
            }

        # ---- Ctrl-C: finish the current step, agree on it across ranks, save, stop
        stop = {"flag": False}
        old_handler = None
        if threading.current_thread() is threading.main_thread():
            def _on_sigint(signum, frame):
                if stop["flag"]:  # second Ctrl-C: stop hard
                    raise KeyboardInterrupt
                stop["flag"] = True

            old_handler = signal.signal(signal.SIGINT, _on_sigint)

        bar = _Progress(progress and info.main)
        metrics: dict = {}
        names = ["loss", "recon"] + (["interp"] if config.reg != "none" else []) + (["latent"] if config.reg == "strong" else [])
        try:
            for epoch in range(start_epoch, config.optim.epochs):
                skip = start_step if epoch == start_epoch else 0
                batches.set_epoch(epoch, skip)
                model.train()
                sums = torch.zeros(len(names) + 1, dtype=torch.float64, device=device)  # per-term sums, then the triplet count
                seconds = 0.0
                if partial and epoch == start_epoch and skip:
                    sums += torch.tensor(partial["sums"], dtype=torch.float64, device=device)
                    seconds = float(partial["seconds"])
                bad_step = math.inf
                bad = torch.full((), math.inf, device=device)
                bar.start_epoch(epoch + 1, config.optim.epochs, batches.total(), skip)
                t0 = time.perf_counter()
                step = skip
                for u8 in loader:
                    left, target, right = _to_device(u8, device, channels_last)
                    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                        terms = step_module(left, target, right)
                    loss = terms["loss"]
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    step += 1
                    n = left.shape[0]
                    with torch.no_grad():
                        vals = torch.stack([terms[k].detach().double() for k in names])
                        sums[:-1] += vals * n
                        sums[-1] += n
                        # record the first non-finite step without a host sync
                        bad = torch.where(torch.isfinite(vals).all(), bad, torch.clamp(bad, max=float(step)))
                    if on_step is not None:
                        on_step(epoch + 1, step)
                    if step % check_every == 0 or step == batches.total():
                        flags = torch.stack([bad.double(), torch.tensor(float(stop["flag"]), dtype=torch.float64, device=device)])
                        if info.world > 1:
                            dist.all_reduce(flags[:1], op=dist.ReduceOp.MIN)
                            mx = flags[1:].clone()
                            dist.all_reduce(mx, op=dist.ReduceOp.MAX)
                            flags = torch.cat([flags[:1], mx])
                        bad_step, stopping = float(flags[0]), bool(flags[1] > 0)
                        if math.isfinite(bad_step):
                            last = out / "last.pt"
                            kept = f"the last good checkpoint {last} (after epoch {epoch}) is kept" if last.exists() else "no checkpoint was written yet"
                            raise RuntimeFailure(f"non-finite loss at epoch {epoch + 1}, step {int(bad_step)}; {kept}; lower --lr or check the store for bad crops")
                        s = sums.tolist()
                        bar.update(step, s[0] / max(s[-1], 1), s[-1] * info.world / (seconds + time.perf_counter() - t0))
                        if stopping:
                            seconds += time.perf_counter() - t0
                            if info.main:
                                save_checkpoint(out / "last.pt", payload(epoch, step, metrics, {"sums": sums.tolist(), "seconds": seconds}))
                            if info.world > 1:
                                dist.barrier()  # no rank exits while rank 0 is still writing
                            message = f"interrupted at epoch {epoch + 1}, step {step}; {out / 'last.pt'} saved; continue with: blurlatent train --resume {out}"
                            if info.main:
                                log.info(message)  # the CLI prints the exception's message
                            raise KeyboardInterrupt(message)
                seconds += time.perf_counter() - t0
                if info.world > 1:
                    # DDP broadcasts BatchNorm running stats from rank 0 before each forward, so after the
                    # last step each rank holds its own; align them so validation and the replicas agree.
                    for buf in model.buffers():
                        dist.broadcast(buf, 0)
                s = _all_sum(sums.tolist(), info, device)
                count = max(s[-1], 1.0)
                train_terms = {f"train_{k}": v / count for k, v in zip(names, s[:-1])}

                val = _validate(model, val_loader, device, channels_last, amp_dtype, config, info)
                lr = optimizer.param_groups[0]["lr"]
                scheduler.step()
                val_loss = val.get("val_loss", train_terms["train_loss"])
                is_best = val_loss < best_val
                if is_best:
                    best_val, best_epoch = val_loss, epoch + 1
                metrics = {"epoch": epoch + 1, "lr": lr, **train_terms, **val, "seconds": round(seconds, 3),
                           "triplets_per_s": round(s[-1] / max(seconds, 1e-9), 2), "best": is_best}
                if info.main:
                    # Checkpoint first: a kill between the two leaves a resumable run whose missing metrics
                    # line the resume restores from the checkpoint (the reverse order left none to resume).
                    save_checkpoint(out / "last.pt", payload(epoch + 1, 0, metrics))
                    if is_best:
                        save_checkpoint(out / "best.pt", payload(epoch + 1, 0, metrics))
                    with open(out / "metrics.jsonl", "a") as fh:
                        fh.write(json.dumps(metrics) + "\n")
                    if config.strip_every and ((epoch + 1) % config.strip_every == 0 or epoch + 1 == config.optim.epochs):
                        _save_strip(model, store, config, out / "strips" / f"epoch_{epoch + 1:03d}.png", device, channels_last, amp_dtype)
                    bar.end_epoch(metrics)
                if info.world > 1:
                    dist.barrier()
        finally:
            bar.close()
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
        replicas = [state_digest(model.state_dict())]
        if info.world > 1:
            # DDP keeps replicas identical by construction; check it, cheaply, rather than trust it.
            replicas = [None] * info.world
            dist.all_gather_object(replicas, state_digest(model.state_dict()))
            # Tearing gloo down while a peer still talks to it aborts that peer ("terminate called without
            # an active exception", ~1 in 4 CPU runs): meet once more before destroy_process_group. Only
            # on success: after an error a barrier could wait on a rank that is gone.
            dist.barrier()
            if info.main and len(set(replicas)) != 1:
                raise RuntimeFailure(f"DDP replicas ended with different weights (digests {replicas}); rerun with --sync-bn off or report a bug")
        if not info.main:
            return None
        return TrainResult(out, config.optim.epochs, best_epoch, best_val, metrics, replicas)
    except BaseException:
        if owned:
            _discard_unstarted(out, created)
        raise
    finally:
        if info.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


@torch.no_grad()
def _validate(model, loader, device, channels_last, amp_dtype, config: TrainConfig, info: _Dist) -> dict:
    """Mean validation loss (the run's objective) and all three terms, over every val triplet (eval mode)."""
    model.eval()
    sums = [0.0, 0.0, 0.0, 0.0, 0.0]  # loss, recon, interp, latent, count
    for u8 in loader:
        left, target, right = _to_device(u8, device, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            t = loss_terms(model, left, target, right, config.reg, config.data.alpha, all_terms=True)
        n = left.shape[0]
        for i, k in enumerate(("loss", "recon", "interp", "latent")):
            sums[i] += float(t[k]) * n
        sums[4] += n
    model.train()
    sums = _all_sum(sums, info, device)
    if sums[4] == 0:
        return {}
    return {f"val_{k}": sums[i] / sums[4] for i, k in enumerate(("loss", "recon", "interp", "latent"))}


@torch.no_grad()
def _save_strip(model, store, config: TrainConfig, path: Path, device, channels_last, amp_dtype) -> None:
    """Paper Fig. 2: real planes lo..hi above, G(α z_hi + (1 − α) z_lo) below, α = (p − lo)/(hi − lo)."""
    from .figures import save_grid

    split = "val" if len(store.array(config.data.channel, "val")) else "train"
    crops = store.array(config.data.channel, split)
    lo = min(t[0] for t in config.data.triplets)
    hi = max(t[2] for t in config.data.triplets)
    planes = [p for p in store.planes if lo <= p <= hi]
    real = np.asarray(crops[0, [store.plane_index(p) for p in planes]], dtype=np.float32) / 255.0  # [P, H, W]
    x = torch.from_numpy(real[[0, -1]]).unsqueeze(1).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    model.eval()
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        z = model.encode(x)
        alphas = [(p - lo) / (hi - lo) for p in planes]
        zs = torch.stack([a * z[1] + (1 - a) * z[0] for a in alphas])
        decoded = model.decode(zs).float()[:, 0].cpu().numpy()
    model.train()
    save_grid([list(real), list(decoded)], path, row_labels=["real", "interpolated"],
              col_labels=[f"z{p}" for p in planes], title=f"{config.reg}, {path.stem.replace('_', ' ')}")


class _Progress:
    """A rich progress bar on stderr with the running loss and triplets/s; a no-op when disabled."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.1f} triplets/s"),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=False)
            self.bar.start()
            self.task = None

    def start_epoch(self, epoch, epochs, total, done):
        if self.bar:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(f"epoch {epoch}/{epochs}", total=total, completed=done, loss=float("nan"), rate=0.0)

    def update(self, step, loss, rate):
        if self.bar:
            self.bar.update(self.task, completed=step, loss=loss, rate=rate)

    def end_epoch(self, m):
        if self.bar:
            val = f"val {m['val_loss']:.4f}" if "val_loss" in m else "no val split"
            self.bar.console.print(f"epoch {m['epoch']}: train {m['train_loss']:.4f}, {val}{' (best)' if m['best'] else ''}, "
                                   f"{m['triplets_per_s']:.1f} triplets/s", highlight=False)

    def close(self):
        if self.bar:
            self.bar.stop()
