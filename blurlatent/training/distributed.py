"""Several training processes: rank layout, process group, all-reduce helpers, Ctrl-C, the spawn launcher.

Two ways to get several processes: ``spawn`` starts one per GPU (NCCL) or per CPU share (gloo) from a
single ``blurlatent train``; under ``torchrun`` (or any env:// launcher) ``torchrun_env`` reads the
RANK/WORLD_SIZE/LOCAL_RANK variables and every process runs training itself. With one process every
helper here is a no-op, so the training loop calls them unconditionally.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from blurlatent.errors import Message, ParameterError, RuntimeFailure, UsageError
from blurlatent.nets.device import assign_device


@dataclass
class DistInfo:
    """This process's place among ``world`` processes (rank 0 logs, saves and returns the result)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def torchrun_env() -> DistInfo | None:
    """The rank layout torchrun (or any env:// launcher) gave this process, or None when not launched so."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    return None


def check_processes(nproc: int, device: str, sync_bn: bool = False) -> None:
    """UsageError unless this machine can run ``nproc`` training processes on ``device`` (a device spec)."""
    if str(device).lower().startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"{{nproc}} {nproc}: no CUDA GPU is visible here; run on a GPU machine, or use {{device}} "
                         f"cpu for {nproc} CPU processes", "nproc", "device")
    kind = assign_device(device).type
    if kind == "cuda":
        have = torch.cuda.device_count()
        if nproc > have:
            raise UsageError(f"{{nproc}} {nproc}: only {have} CUDA GPU(s) visible here; use {{nproc}} {have} or fewer",
                             "nproc")
    elif kind != "cpu":
        raise UsageError(f"{{device}} {device}: several processes need cuda or cpu, not {kind}", "device")
    if sync_bn and kind != "cuda":
        raise UsageError("{sync_bn} needs CUDA GPUs; leave it off on CPU", "sync_bn")


def init_process(device: torch.device, info: DistInfo, init_method: str | None) -> torch.device:
    """The device this rank trains on, after joining the process group (``world > 1``).

    CUDA ranks take GPU ``local_rank`` and NCCL; CPU ranks use gloo and share the cores. Raises
    UsageError for a device type that cannot run several processes or too few GPUs on this node.
    """
    if info.world == 1:
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        return device
    if device.type == "cuda":
        if info.local_rank >= torch.cuda.device_count():
            raise UsageError(f"local rank {info.local_rank}: only {torch.cuda.device_count()} CUDA GPU(s) on this "
                             "node; start fewer processes per node")
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise UsageError(f"{{device}} {device.type}: several processes need cuda or cpu", "device")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=init_method or "env://", rank=info.rank, world_size=info.world)
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.world))
    return device


def close_process(info: DistInfo) -> None:
    """Leave the process group (if this rank joined one)."""
    if info.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()


def all_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64), as a list."""
    if info.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


@contextlib.contextmanager
def stop_flag():
    """Yields ``{"stop": False}``; Ctrl-C or SIGTERM sets it (the loop finishes its step, the ranks agree, rank 0
    saves, all stop), a second Ctrl-C raises KeyboardInterrupt at once (a repeated SIGTERM does not: a scheduler
    may signal the launcher and every rank). Outside the main thread no handler can be set: the flag stays False."""
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def on_signal(signum, frame):
        if flag["stop"] and signum == signal.SIGINT:  # second Ctrl-C: stop hard
            raise KeyboardInterrupt
        flag["stop"] = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def first_bad_and_stop(bad: torch.Tensor, stop: bool, info: DistInfo) -> tuple[float, bool]:
    """(the earliest non-finite step of any rank, whether any rank was asked to stop): one sync."""
    flags = torch.stack([bad.double(), torch.tensor(float(stop), dtype=torch.float64, device=bad.device)])
    if info.world > 1:
        dist.all_reduce(flags[:1], op=dist.ReduceOp.MIN)
        mx = flags[1:].clone()
        dist.all_reduce(mx, op=dist.ReduceOp.MAX)
        flags = torch.cat([flags[:1], mx])
    return float(flags[0]), bool(flags[1] > 0)


def sync_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics).

    DDP broadcasts them from rank 0 before each forward, so after an epoch's last step each rank holds
    its own; aligning them makes validation and the replicas agree.
    """
    if info.world > 1:
        for buf in model.buffers():
            dist.broadcast(buf, 0)


def gather(value: Any, info: DistInfo) -> list[Any]:
    """``value`` of every rank, in rank order (a one-item list with one process)."""
    if info.world == 1:
        return [value]
    values = [None] * info.world
    dist.all_gather_object(values, value)
    return values


# --- spawn: one process per GPU or CPU share ---------------------------------------------------------

# Exceptions a rank reports that stay usage errors in the parent; any other becomes a RuntimeFailure.
_USAGE_KINDS = ("UsageError", "FileNotFoundError")


def spawn(worker: Callable, nproc: int, args: tuple) -> Any:
    """Run ``worker(rank, world, init_method, *args)`` in ``nproc`` spawned processes; rank 0's return value.

    ``worker`` must be a module-level function (it is pickled by name). A rank's UsageError or
    RuntimeFailure is raised here with its message; Ctrl-C reaches every rank, which agree on a step,
    save and raise KeyboardInterrupt: that message is re-raised here as KeyboardInterrupt.
    """
    ctx = mp.get_context("spawn")
    errors, results = ctx.SimpleQueue(), ctx.SimpleQueue()
    level = logging.getLogger("blurlatent").getEffectiveLevel()
    # The ranks meet through a file, not a TCP port: a port picked free here and bound later by rank 0 can be
    # taken in between by another process (seen as a rare failed start when tests run beside other work).
    with tempfile.TemporaryDirectory(prefix="blurlatent-rendezvous-") as meeting:
        init_method = f"file://{os.path.join(meeting, 'store')}"
        procs = mp.start_processes(_entry, args=(nproc, init_method, worker, args, errors, results, level),
                                   nprocs=nproc, join=False, start_method="spawn")
        _join(procs)
    _raise_reported(errors)
    if any(p.exitcode for p in procs.processes):
        codes = [p.exitcode for p in procs.processes]
        raise RuntimeFailure(f"a training process died (exit codes {codes}); rerun with nproc 1 to see why")
    return results.get() if not results.empty() else None


def _join(procs) -> None:
    # Ctrl-C reaches every rank; the ranks agree on a step, rank 0 saves, all exit. The parent just waits.
    # SIGTERM may reach only the parent (`kill PID`): it passes it on to the ranks, which stop the same way.
    def forward(signum, frame):
        for p in procs.processes:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
    previous_term = signal.signal(signal.SIGTERM, forward) if main_thread else None
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
            signal.signal(signal.SIGTERM, previous_term if previous_term is not None else signal.SIG_DFL)


def _raise_reported(errors) -> None:
    reported = []
    while not errors.empty():
        reported.append(errors.get())
    if not reported:
        return
    interrupted = [r for r in reported if r[0] == "KeyboardInterrupt"]
    if len(interrupted) == len(reported):
        raise KeyboardInterrupt(interrupted[0][1])
    kind, template, names = next(r for r in reported if r[0] != "KeyboardInterrupt")
    raise (UsageError if kind in _USAGE_KINDS else RuntimeFailure)(template, *names)


def _entry(rank, world, init_method, worker, args, errors, results, level):
    logging.basicConfig(level=level, format="%(message)s")
    try:
        result = worker(rank, world, init_method, *args)
        if rank == 0 and result is not None:
            results.put(result)
    except KeyboardInterrupt as exc:
        errors.put(("KeyboardInterrupt", str(exc), ()))
    except BaseException as exc:  # report, then a non-zero exit so the parent stops the other ranks
        # our errors keep the parameters they name (errors.Message), for the parent to raise them again
        message = exc.message if isinstance(exc, ParameterError) else Message(str(exc))
        errors.put((type(exc).__name__, f"rank {rank}: {message.template}", message.names))
        raise SystemExit(1) from None  # the error went to the parent: only the exit code is left to give
