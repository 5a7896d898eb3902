"""Worker processes for CPU-bound jobs (prepare's TIFF decoding): results in order, no orphans, clean Ctrl-C.

Workers are forked with Ctrl-C and SIGTERM held back (a signal mid-fork lands in logging's at-fork hooks
or in a child whose handlers are not set yet); each worker then ignores Ctrl-C, which the parent handles
by stopping the pool, ends at once on SIGTERM, and dies with its parent even on SIGKILL (Linux).
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from blurlatent.files.atomic import release_stop_signals, stop_signals_held

J = TypeVar("J")
R = TypeVar("R")


def quiet_worker() -> None:
    """A pool worker leaves Ctrl-C to the parent, which stops the pool (in-flight fields finish, the rest are
    cancelled, the workers exit); SIGTERM ends it at once (the pool's own way to end a worker, so the parent's
    handler is not inherited); and it dies with the parent even on SIGKILL (Linux): no orphans."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    release_stop_signals()  # forked with them held (ordered_map): a Ctrl-C sent meanwhile is now ignored
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: no prctl
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def ordered_map(fn: Callable[[J], R], jobs: Sequence[J], workers: int) -> Iterator[R]:
    """``fn(job)`` for each job, in order: inline for one worker, else ``workers`` processes with a bounded
    look-ahead (memory stays flat on the full 768-field set). ``fn`` must be a module-level function."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield fn(job)
        return
    pool = ProcessPoolExecutor(min(workers, len(jobs)), initializer=quiet_worker)
    try:
        with stop_signals_held():  # the first submits fork every worker (fork start method)
            pending = [pool.submit(fn, job) for job in jobs[: 4 * workers]]
        next_job = len(pending)
        while pending:
            result = pending.pop(0).result()
            if next_job < len(jobs):
                pending.append(pool.submit(fn, jobs[next_job]))
                next_job += 1
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
