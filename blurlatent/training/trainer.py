"""Training: the paper's losses (``losses``) on one CPU, one GPU or many (``distributed``), with exact resume.

``train(config, out)`` checks the config (``resolve_config``), starts the processes and runs, in each::

    setup      device and process group, store and loader (``data``), model, optimizer; on resume the
               checkpoint's weights, optimizer, scheduler, scaler and RNG state (``checkpoint``)
    epoch      one pass over this rank's batches; every ``check_every`` steps the ranks agree on a
               non-finite loss (stop, keep the last good checkpoint) and on Ctrl-C (save, stop)
    validate   the mean loss and all three terms over the val split (eval mode)
    save       last.pt (every epoch), best.pt (lowest validation loss), the metrics line, a strip

The run folder (``run``) holds ``config.yaml`` (the resolved config), ``metrics.jsonl``/``.csv`` (one row per
epoch, ``logs``), ``last.pt`` (every epoch, and on Ctrl-C), ``best.pt`` and ``strips/`` (paper Fig. 2, drawn by
``inference.Predictor``, the one forward path); ``run.resume_config`` gives the config that continues it.

Several processes: ``nproc > 1`` spawns one process per GPU (NCCL) or per CPU share (gloo); under
``torchrun`` the RANK/WORLD_SIZE/LOCAL_RANK variables are used instead. ``optim.batch`` is the batch
size *per process*: the effective batch is ``batch × world size``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from blurlatent.config import TrainConfig, from_dict, save_yaml, to_dict
from blurlatent.errors import RuntimeFailure, UsageError
from blurlatent.files.atomic import disk_space, terminate_as_interrupt
from blurlatent.inference.builtin import checkpoint_file
from blurlatent.intensity import check_normalization
from blurlatent.nets.autoencoder import build_autoencoder
from blurlatent.nets.checkpoint import check_fits, load_checkpoint, load_init, restore_run, rng_state, state_digest
from blurlatent.nets.device import assign_device, train_precision
from blurlatent.prepare.store import Store
from blurlatent.progress import EpochProgress
from blurlatent.training import distributed
from blurlatent.training.distributed import DistInfo
from blurlatent.training.loader import (
    EpochBatches,
    check_triplet_planes,
    default_workers,
    make_loader,
    to_device,
    triplet_dataset,
    val_batches,
)
from blurlatent.training.logs import EpochLog, check_log, save_strip, trim_logs
from blurlatent.training.losses import LossModule, loss_terms, term_names
from blurlatent.training.run_folder import check_resume_config, run_folder, save_epoch

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What ``train`` returns on rank 0: the run folder, epochs, the best epoch and its validation loss, the
    last epoch's metrics line."""

    out: Path
    epochs: int
    best_epoch: int
    best_val: float
    metrics: dict
    replicas: list[str] = field(default_factory=list)  # state_digest of every rank's final weights


# --- the config ------------------------------------------------------------------------------------------


def resolve_config(config: TrainConfig, check_init: bool = True) -> TrainConfig:
    """Check ``config`` against its store and fill ``data.normalize`` and the scale (``Store.scale``) from the store's
    manifest.

    ``check_init=False`` (resuming) skips the ``init`` file: its weights are already in ``last.pt``.
    Raises UsageError naming the parameter at fault.
    """
    config.check()
    check_log(config.log)  # a missing tensorboard package, before the folder
    check_fits(config.model, None, torch.device("cpu"))  # absurd widths, before the folder: the model is built here
    if check_init and config.init:
        load_init(checkpoint_file(config.init, "init"), config.model)  # missing, broken, other-shape: fails here
    if not config.data.store:
        raise UsageError("no store given: set {data.store} to a folder from `blurlatent prepare`", "data.store")
    config.data.store = str(Path(config.data.store).absolute())  # saved absolute: resume works from anywhere
    store = Store(config.data.store)
    if config.data.channel not in store.channels:
        raise UsageError(f"{{data.channel}} {config.data.channel}: not in {config.data.store} (channels "
                         f"{store.channels}); use one of them", "data.channel")
    check_triplet_planes(store, config.data.triplets)  # a store of fewer planes: the triplets the docs give
    store.verify([config.data.channel])  # a damaged or changed array, before anything trusts it
    crop = int(store.array(config.data.channel, "train").shape[-1])
    multiple = 2 ** config.model.depth
    if crop % multiple:
        raise UsageError(f"{{model.widths}} {config.model.widths}: crop {crop} px is not divisible by 2**depth = "
                         f"{multiple}; use fewer {{model.widths}} or prepare with another {{prepare:crop}}",
                         "model.widths", "prepare:crop")
    config.data.normalize = check_normalization(store.normalize)
    for key, value in store.scale.items():  # the store's scale; where it does not know, the config's (if given)
        setattr(config.data, key, value if value is not None else getattr(config.data, key))
    return config


# --- the public entry point --------------------------------------------------------------------------------


def train(config: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True, force: bool = False,
          on_step: Callable[[int, int], None] | None = None) -> TrainResult | None:
    """Train an autoencoder on ``config.data.store`` into run folder ``out``.

    ``resume``: continue ``out/last.pt`` exactly (same batches, optimizer, scheduler, RNG); ``config``
    must match the run's except for ``RESUMABLE_CHANGES`` (``resume_config`` builds it). ``force``:
    replace an existing run folder (never a folder ``train`` did not write). ``on_step(epoch, step)``
    (1-based) is called after every optimizer step of a single-process run. With ``config.nproc > 1``
    this spawns that many processes; under torchrun each process calls it. Returns the TrainResult on
    rank 0 (None on other ranks).

    Raises UsageError (bad config, store, device, folder), RuntimeFailure (NaN/inf loss: names the
    epoch and step; the last good ``last.pt`` is kept) and KeyboardInterrupt after saving a resumable
    ``last.pt`` on Ctrl-C.
    """
    out = Path(out)
    config = resolve_config(config, check_init=not resume)
    env = distributed.torchrun_env()
    if env is not None:
        if config.nproc > 1 and config.nproc != env.world:
            log.warning("under torchrun the world size is %d; ignoring nproc=%d", env.world, config.nproc)
        return _run(config, out, resume, progress, force, env, None, on_step)
    if config.nproc == 1:
        return _run(config, out, resume, progress, force, DistInfo(), None, on_step)
    distributed.check_processes(config.nproc, config.device, config.sync_bn)
    with run_folder(out, resume, force, config.init):  # once, before the ranks start; locked until they end
        return distributed.spawn(_rank_main, config.nproc, (to_dict(config), str(out), resume, progress))


def _rank_main(rank: int, world: int, init_method: str, config_dict: dict, out: str, resume: bool,
               progress: bool) -> TrainResult | None:
    """One spawned process (``distributed.spawn``): the run folder was prepared by the parent."""
    config = from_dict(TrainConfig, config_dict)
    info = DistInfo(rank, world, rank)
    return _run(config, Path(out), resume, progress, False, info, init_method, None, prepared=True)


def _run(config: TrainConfig, out: Path, resume: bool, progress: bool, force: bool, info: DistInfo,
         init_method: str | None, on_step, prepared: bool = False) -> TrainResult | None:
    """One process's whole run; removes what it wrote when it fails before its first checkpoint."""
    # SIGTERM stops it like Ctrl-C; a full disk anywhere in the run is one line naming the run folder
    with contextlib.ExitStack() as folder, terminate_as_interrupt(), disk_space(out):
        try:
            device = _setup_device(config, info, init_method)
            amp_dtype, channels_last = train_precision(config.amp, config.channels_last, device)
            if info.main and not prepared:  # opened and locked once the device is known to work
                folder.enter_context(run_folder(out, resume, force, config.init))
            distributed.barrier(info)
            trainer = _Trainer(config, out, info, device, amp_dtype, channels_last, resume)
            return trainer.fit(progress, on_step)
        finally:
            distributed.close_process(info)


def _setup_device(config: TrainConfig, info: DistInfo, init_method: str | None) -> torch.device:
    device = distributed.init_process(assign_device(config.device), info, init_method)
    if config.sync_bn and device.type != "cuda":
        raise UsageError("{sync_bn} needs CUDA GPUs; leave it off on CPU", "sync_bn")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


# --- one process's training -----------------------------------------------------------------------------------


class _Trainer:
    """The state of one process's run: built (setup and resume) in ``__init__``, driven by ``fit``."""

    def __init__(self, config: TrainConfig, out: Path, info: DistInfo, device: torch.device,
                 amp_dtype: torch.dtype | None, channels_last: bool, resume: bool):
        self.config, self.out, self.info, self.device = config, out, info, device
        self.amp_dtype, self.channels_last = amp_dtype, channels_last
        self.check_every = config.check_every or (1 if device.type == "cpu" else 20)
        self.names = term_names(config.reg, config.deblur_weight)
        self._setup_data()
        self._setup_model(resume)
        self.start_epoch, self.start_step, self.best_val, self.best_epoch = 0, 0, math.inf, 0
        self.partial: dict | None = None  # the figures of an epoch interrupted mid-way (resume)
        self.metrics: dict = {}
        self.resumed = resume
        if resume:
            self._restore()
        if info.main:
            save_yaml(config, out / "config.yaml")
        # the run's one α (None for uneven triplets); every step passes its batch's α (``_alpha``)
        self.step_module: nn.Module = LossModule(self.model, config.reg, self.fixed_alpha, config.deblur_weight)
        if info.world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.step_module = DistributedDataParallel(self.step_module, device_ids=ids)
        amp = str(amp_dtype).replace("torch.", "") if amp_dtype else "off"
        self.runtime = {"device": str(device), "world_size": info.world, "amp": amp, "channels_last": channels_last,
                        "workers": self.workers, "batch_per_process": config.optim.batch}
        if info.main:
            log.info("training on %s", self.runtime)

    def _setup_data(self) -> None:
        c, info = self.config, self.info
        self.store = Store(c.data.store)
        train_ds = triplet_dataset(self.store, c.data.triplets, c.data.channel, "train", c.data.alpha)
        val_ds = triplet_dataset(self.store, c.data.triplets, c.data.channel, "val", c.data.alpha)
        if len(train_ds) == 0:
            raise UsageError(f"{c.data.store}: no {c.data.channel} train crops; prepare more fields")
        # One α for every triplet (the paper's): that number reaches the loss, as it always did; else each sample's.
        self.fixed_alpha = train_ds.fixed_alpha
        self.workers = default_workers(c.workers, self.device, info.world)
        pin = self.device.type == "cuda"
        self.batches = EpochBatches(len(train_ds), c.optim.batch, c.seed, info.rank, info.world)
        self.loader = make_loader(train_ds, self.batches, self.workers, pin, c.seed)
        val = val_batches(len(val_ds), c.optim.batch, info.rank, info.world)
        self.val_loader: Iterable[tuple[torch.Tensor, torch.Tensor]] = []
        if val:
            self.val_loader = make_loader(val_ds, val, 0, pin, c.seed)

    def _setup_model(self, resume: bool) -> None:
        c = self.config
        torch.manual_seed(c.seed)
        np.random.seed(c.seed)
        random.seed(c.seed)
        check_fits(c.model, None, self.device, copies=4)  # weights, gradients and Adam's two moments
        model = build_autoencoder(c.model)
        if c.init and not resume:
            load_init(checkpoint_file(c.init, "init"), c.model, into=model)
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if c.sync_bn and self.info.world > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=c.optim.lr)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=c.optim.step, gamma=c.optim.gamma)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)

    def _restore(self) -> None:
        """Weights, optimizer, scheduler, scaler, position and RNG state from ``out/last.pt``."""
        last = self.out / "last.pt"
        ckpt = load_checkpoint(last, map_location=self.device)
        check_resume_config(ckpt["config"], self.config, self.out)
        (self.start_epoch, self.start_step, self.best_val, self.best_epoch, self.partial) = restore_run(
            ckpt, self.model, self.optimizer, self.scheduler, self.scaler, self.device, str(last))
        if self.info.main:
            last_line = ckpt.get("metrics") if self.start_step == 0 else None
            trim_logs(self.out, self.start_epoch, last_line)  # metrics.jsonl and .csv end at the checkpoint
        log.info("resuming %s at epoch %d step %d", self.out, self.start_epoch + 1, self.start_step)

    def _autocast(self):
        dtype = self.amp_dtype or torch.float32
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.amp_dtype is not None)

    def fit(self, progress: bool, on_step) -> TrainResult | None:
        """Every remaining epoch, then the replica check; rank 0's result."""
        resumed_at = self.start_epoch if self.resumed else None  # no bar (not a TTY): one line per epoch instead
        with distributed.stop_flag() as stop, EpochLog(self.out, self.config, self.info.main, not progress,
                                                       resumed_at) as self.log:
            bar = EpochProgress(progress and self.info.main)
            try:
                for epoch in range(self.start_epoch, self.config.optim.epochs):
                    skip = self.start_step if epoch == self.start_epoch else 0
                    sums, seconds = self._train_epoch(epoch, skip, bar, stop, on_step)
                    self._end_epoch(epoch, sums, seconds, bar)
            finally:
                bar.close()
        return self._finish()

    def _alpha(self, alphas: torch.Tensor):
        """Eq. 2's α for a batch: the run's one number, or the batch's per-sample [B] on the device."""
        return self.fixed_alpha if self.fixed_alpha is not None else alphas.to(self.device)

    def _step(self, u8: torch.Tensor, alphas: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        """One optimizer step on a uint8 batch and its triplets' α; its loss terms and triplet count."""
        left, target, right = to_device(u8, self.device, self.channels_last)
        with self._autocast():
            terms = self.step_module(left, target, right, self._alpha(alphas))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms["loss"]).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return terms, left.shape[0]

    def _train_epoch(self, epoch: int, skip: int, bar, stop: dict, on_step) -> tuple[torch.Tensor, float]:
        """One pass over this rank's batches from batch ``skip``: (per-term sums then the triplet count, seconds)."""
        self.batches.set_epoch(epoch, skip)
        self.model.train()
        sums = torch.zeros(len(self.names) + 1, dtype=torch.float64, device=self.device)
        seconds = 0.0
        if self.partial and epoch == self.start_epoch and skip:  # Ctrl-C mid-epoch: the figures so far
            sums += torch.tensor(self.partial["sums"], dtype=torch.float64, device=self.device)
            seconds = float(self.partial["seconds"])
        bad = torch.full((), math.inf, device=self.device)
        total = self.batches.total()
        bar.start_epoch(epoch + 1, self.config.optim.epochs, total, skip)
        t0 = time.perf_counter()
        step = skip
        for u8, alphas in self.loader:
            terms, n = self._step(u8, alphas)
            step += 1
            with torch.no_grad():
                vals = torch.stack([terms[k].detach().double() for k in self.names])
                sums[:-1] += vals * n
                sums[-1] += n
                # record the first non-finite step without a host sync
                bad = torch.where(torch.isfinite(vals).all(), bad, torch.clamp(bad, max=float(step)))
            if on_step is not None:
                on_step(epoch + 1, step)
            if step % self.check_every == 0 or step == total:
                self._check(epoch, step, sums, bad, seconds + time.perf_counter() - t0, bar, stop)
        return sums, seconds + time.perf_counter() - t0

    def _check(self, epoch: int, step: int, sums: torch.Tensor, bad: torch.Tensor, seconds: float, bar,
               stop: dict) -> None:
        """The ranks agree on a non-finite loss (RuntimeFailure) and on Ctrl-C (save, KeyboardInterrupt)."""
        bad_step, stopping = distributed.first_bad_and_stop(bad, stop["stop"], self.info)
        if math.isfinite(bad_step):
            raise RuntimeFailure(self._nan_cause(epoch, int(bad_step)), "optim.lr", "amp")
        s = sums.tolist()
        bar.update(step, s[0] / max(s[-1], 1), s[-1] * self.info.world / seconds)
        if not stopping:
            return
        if self.info.main:
            partial = {"sums": sums.tolist(), "seconds": seconds}
            save_epoch(self.out, self._payload(epoch, step, self.metrics, partial))
        distributed.barrier(self.info)  # no rank exits while rank 0 is still writing
        message = (f"interrupted at epoch {epoch + 1}, step {step}; {self.out / 'last.pt'} saved; "
                   f"continue with: blurlatent train --resume {self.out}")
        if self.info.main:
            log.info(message)  # the CLI prints the exception's message
        raise KeyboardInterrupt(message)

    def _nan_cause(self, epoch: int, step: int) -> str:
        """Why the loss went non-finite: the batches are uint8 crops, finite by construction (``Store.array``
        refuses other arrays), so the starting weights give non-finite outputs (the run's first step, before
        any update: not the learning rate), or training diverged. A message template naming ``optim.lr`` and
        ``amp`` (``errors.Message``)."""
        c, last = self.config, self.out / "last.pt"
        kept = f"the last good checkpoint {last} (after epoch {epoch}) is kept" if last.exists() else \
            "no checkpoint was written yet"
        done = (epoch - self.start_epoch) * self.batches.total() + step - 1 - self.start_step
        where = f"non-finite loss at epoch {epoch + 1}, step {step}"
        if done > 0:
            return f"{where}, after {done} finite step(s): training diverged; {kept}; lower {{optim.lr}}"
        start = f"the resumed weights of {last}" if self.resumed else f"the init weights of {c.init}" if c.init else \
            f"the fresh weights of model widths {c.model.widths}"
        fix = "fp16 autocast overflows: use {amp} bf16 or off" if self.amp_dtype is torch.float16 else \
            "use another checkpoint" if self.resumed or c.init else "report a bug with this config"
        return (f"{where}: the run's first step, before any weight update, on finite uint8 crops (not the learning "
                f"rate): {start} give non-finite outputs; {kept}; {fix}")

    def _end_epoch(self, epoch: int, sums: torch.Tensor, seconds: float, bar) -> None:
        """Validate, step the schedule, and on rank 0 save checkpoints, the metrics line and the strip."""
        distributed.sync_buffers(self.model, self.info)
        s = distributed.all_sum(sums.tolist(), self.info, self.device)
        count = max(s[-1], 1.0)
        train_terms = {f"train_{k}": v / count for k, v in zip(self.names, s[:-1], strict=True)}
        val = self._validate()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        val_loss = val.get("val_loss", train_terms["train_loss"])
        is_best = val_loss < self.best_val
        if is_best:
            self.best_val, self.best_epoch = val_loss, epoch + 1
        self.metrics = {"epoch": epoch + 1, "lr": lr, **train_terms, **val, "seconds": round(seconds, 3),
                        "triplets_per_s": round(s[-1] / max(seconds, 1e-9), 2), "best": is_best}
        if self.info.main:
            self._save(epoch + 1, is_best)
            bar.end_epoch(self.metrics)
        distributed.barrier(self.info)

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        """Mean validation loss (the run's objective) and all three terms, over every val triplet (eval mode)."""
        keys = ("loss", "recon", "interp", "latent") + (("deblur",) if self.config.deblur_weight > 0 else ())
        self.model.eval()
        sums = [0.0] * (len(keys) + 1)  # the terms, then the triplet count
        for u8, alphas in self.val_loader:
            left, target, right = to_device(u8, self.device, self.channels_last)
            with self._autocast():
                t = loss_terms(self.model, left, target, right, self.config.reg, self._alpha(alphas), all_terms=True,
                               deblur_weight=self.config.deblur_weight)
            n = left.shape[0]
            for i, k in enumerate(keys):
                sums[i] += float(t[k]) * n
            sums[-1] += n
        self.model.train()
        sums = distributed.all_sum(sums, self.info, self.device)
        if sums[-1] == 0:
            return {}
        return {f"val_{k}": sums[i] / sums[-1] for i, k in enumerate(keys)}

    def _payload(self, epoch: int, step: int, metrics: dict, partial: dict | None = None) -> dict:
        """The checkpoint after ``epoch`` epochs and ``step`` steps of the next (see ``checkpoint``)."""
        return {
            "config": to_dict(self.config),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "epoch": epoch,
            "step": step,
            "rng": rng_state(self.device),
            "metrics": metrics,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "partial": partial,
            "store": {"path": str(self.store.path), "fingerprint": self.store.manifest.get("fingerprint")},
            "runtime": self.runtime,
        }

    def _save(self, epochs_done: int, is_best: bool) -> None:
        save_epoch(self.out, self._payload(epochs_done, 0, self.metrics), is_best)  # checkpoint first, then the logs
        self.log.write(self.metrics)
        every = self.config.strip_every
        if every and (epochs_done % every == 0 or epochs_done == self.config.optim.epochs):
            save_strip(self.model, self.store, self.config, self.out / "strips" / f"epoch_{epochs_done:03d}.png")

    def _finish(self) -> TrainResult | None:
        replicas = distributed.gather(state_digest(self.model.state_dict()), self.info)
        if self.info.world > 1:
            # Tearing gloo down while a peer still talks to it aborts that peer ("terminate called without
            # an active exception", ~1 in 4 CPU runs): meet once more before destroy_process_group. Only
            # on success: after an error a barrier could wait on a rank that is gone.
            distributed.barrier(self.info)
            # DDP keeps replicas identical by construction; check it, cheaply, rather than trust it.
            if self.info.main and len(set(replicas)) != 1:
                raise RuntimeFailure(f"DDP replicas ended with different weights (digests {replicas}); "
                                     "rerun with sync_bn=False or report a bug")
        if not self.info.main:
            return None
        c = self.config
        return TrainResult(self.out, c.optim.epochs, self.best_epoch, self.best_val, self.metrics, replicas)

