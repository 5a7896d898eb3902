"""Plates as a Dask graph: one task per field, on local processes or on an existing Dask cluster.

``run_plate`` blurs or deblurs planes ``z`` of every field of an OME-Zarr HCS plate (``files.plates``) into a plate
of the same layout and metadata, each field's output an NGFF image of its α levels with the field's pixel sizes,
channel name and provenance (``omezarr.write_omezarr``). The same ``z`` serves every field; a deblur's α comes
from its ``AlphaSource``, per field where the target is ``"auto"`` (the focus found in each field, on the worker).

Where the work runs: ``workers`` 1 runs every task in this process (dask's synchronous scheduler); more start that
many local processes (spawned, so a parent that already ran torch is never forked; they leave Ctrl-C to this
process and die with it, ``files.workers.quiet_worker``); ``scheduler`` ("tcp://HOST:8786") sends the same graph to
an existing cluster through ``distributed.Client``, whose workers must see the plate, the output's folder and the
checkpoint at the same paths (a shared filesystem). Each worker process loads the model once, on its first field
(``cached_predictor``, keyed by the checkpoint's path and sha256; the file is checked against the sha256 the job
recorded), and runs torch on ``threads`` threads: with one, a field gives the same bits on any worker.

The output policy is the folders' one (``output_folders``): the plate is built in a temp folder beside the output
and renamed onto it when every field is written; a task that fails, a lost worker or Ctrl-C (SIGTERM too) leaves
no output and no temp folder; an existing output is replaced only with ``force`` and only when it is a plate this
command wrote (its marker says so). dask (and for a cluster, distributed) is the extra ``blurlatent[dask]``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

from blurlatent.config import InferenceConfig, PlateConfig
from blurlatent.errors import RuntimeFailure, UsageError
from blurlatent.files.atomic import disk_space, make_temp_dir, replace_folder, sha256_file, terminate_as_interrupt
from blurlatent.files.omezarr import write_omezarr
from blurlatent.files.output_folders import check_output_folder, claim_output_folder
from blurlatent.files.plates import Plate, read_plate, sign_plate, write_plate_layout
from blurlatent.files.provenance import Provenance
from blurlatent.files.stacks import Stack, alpha_labels
from blurlatent.files.workers import quiet_worker
from blurlatent.inference.alphas import AUTO, AlphaSource, DeblurLevels, defocus_um
from blurlatent.inference.inputs import Inputs, check_stack_z, check_z, read_file, stack_pair
from blurlatent.inference.jobs import job_provenance, pair_provenance, predict_levels
from blurlatent.inference.predictor import Predictor
from blurlatent.progress import progress_bar

log = logging.getLogger(__name__)
EXTRA = "pip install 'blurlatent[dask]'"
STOP_WAIT_S = 30.0  # how long a stopped cluster job waits for its running tasks before removing its temp folder


@dataclass(frozen=True)
class PlateJob:
    """What every task of one plate job shares (sent to each worker): the model (path and sha256), how images go
    through it, the rule, planes ``z``, α (``source`` for a deblur, ``alphas`` for a blur), the channel, and the
    job's provenance (completed per field)."""

    checkpoint: str
    sha256: str
    config: InferenceConfig
    rule: str
    z: tuple[int, int]
    provenance: Provenance
    source: AlphaSource | None = None
    alphas: tuple[float, ...] = ()
    channel: int | str | None = None
    extrapolate: bool = False
    threads: int = PlateConfig.threads
    series: int | None = None  # a folder of stacks' (``stack_graph``): which series of each file, its axes
    axes: str | None = None


@dataclass(frozen=True)
class PlateFieldTask:
    """One field: its name in the plate ("A/1/0"), its image folder, where its output goes (inside the plate's temp
    folder) and the name its output records as its source ("plate.ome.zarr/A/1/0")."""

    name: str
    path: str
    out: str
    source: str


@dataclass(frozen=True)
class FieldResult:
    """What a task did: the field's α ``levels`` (where they came from: the lines a deblur prints), the worker
    (host:pid) and seconds spent loading the model (0 after a worker's first field), reading, predicting, writing."""

    name: str
    levels: DeblurLevels
    worker: str
    load_s: float
    read_s: float
    predict_s: float
    write_s: float


@dataclass(frozen=True)
class PlateRun:
    """A finished plate job: the output plate, the plate read, each field's result in the plate's order, seconds."""

    output: Path
    plate: Plate
    results: list[FieldResult]
    seconds: float


# --- on the worker -------------------------------------------------------------------------------------------

_PREDICTORS: dict[tuple, Predictor] = {}  # one model per worker process, for every task it runs
_LOADING = threading.Lock()  # a worker with several threads loads it once


def cached_predictor(job: PlateJob) -> tuple[Predictor, float]:
    """This process's ``Predictor`` for ``job`` and the seconds loading it took (0.0 when it was loaded already).
    UsageError when the checkpoint this worker sees is not the one the job recorded (another file at that path)."""
    key = (job.checkpoint, job.sha256, repr(job.config))
    with _LOADING:
        if key in _PREDICTORS:
            return _PREDICTORS[key], 0.0
        start = time.perf_counter()
        if sha256_file(job.checkpoint) != job.sha256:
            raise UsageError(f"{job.checkpoint}: differs on {socket.gethostname()} from the checkpoint the job was "
                             "started with (sha256); give every worker the same file")
        _PREDICTORS.clear()  # a new job's model replaces the last one: a long-lived worker keeps one
        _PREDICTORS[key] = Predictor.from_checkpoint(job.checkpoint, job.config)
        return _PREDICTORS[key], time.perf_counter() - start


def read_field(job: PlateJob, field: PlateFieldTask) -> tuple[Stack, DeblurLevels]:
    """The field's stack (planes ``z`` only, or whole where its focus is to be found) and its α levels."""
    source = job.source
    whole = source is not None and source.needs_stack and source.target == AUTO
    stack = read_file(field.path, job.channel, None, None, None if whole else job.z)
    if source is None:
        check_stack_z(stack, job.z, field.name)
        return stack, DeblurLevels(list(job.alphas))
    levels = source.levels(stack, field.name) if source.needs_stack else source.levels()
    check_stack_z(stack, job.z, field.name)
    return stack, levels


def field_task(job: PlateJob, field: PlateFieldTask) -> FieldResult:
    """Blur or deblur one field into ``field.out`` (an NGFF image of its α levels, ``like`` the field); run by the
    workers. Raises what reading, the model or writing raise, and RuntimeFailure when the plate's temp folder is
    gone (its job was stopped meanwhile)."""
    import torch

    torch.set_num_threads(job.threads)
    predictor, load_s = cached_predictor(job)
    start = time.perf_counter()
    stack, levels = read_field(job, field)
    inputs = Inputs(*stack_pair(stack, job.z), (stack, stack))
    read = time.perf_counter()
    out = predict_levels(predictor, inputs, stack, levels.alphas, job.rule, job.extrapolate, None)
    record = replace(pair_provenance(job.provenance, (stack, stack), stack), alphas=tuple(levels.alphas),
                     target=levels.target, inputs=(field.source,))
    predictor.check_defocus(defocus_um(stack, record.planes, record.target), field.name)
    predicted = time.perf_counter()
    if not Path(field.out).parent.is_dir():
        raise RuntimeFailure(f"{field.out}: the plate's temp folder is gone (its job was stopped); field not written")
    # force: Dask reruns the fields a lost worker had done, each replacing its own image in the plate's temp folder
    write_omezarr(field.out, out, pixel_size=stack.pixel_size, channel=stack.channel,
                  labels=alpha_labels(levels.alphas), source=field.source, provenance=record, force=True)
    return FieldResult(field.name, levels, f"{socket.gethostname()}:{os.getpid()}", load_s, read - start,
                       predicted - read, time.perf_counter() - predicted)


# --- on the client -------------------------------------------------------------------------------------------


def import_dask(path, scheduler: str | None, what: str = "a plate"):
    """dask (and distributed for ``scheduler``), or UsageError naming the extra that brings them (``what`` the job
    is: "a plate", "a folder of stacks on {workers}")."""
    try:
        import dask

        if scheduler is not None:
            import distributed  # noqa: F401
    except ImportError:
        what = "a Dask cluster ({scheduler})" if scheduler is not None else f"{path}: {what}"
        raise UsageError(f"{what} runs as a Dask graph, which needs dask and distributed; {EXTRA}",
                         *(("scheduler",) if scheduler is not None else ("workers",) if "{workers}" in what
                           else ())) from None
    return dask


def check_scheduler(address: str | None) -> str | None:
    """``address`` as ``tcp://HOST:PORT`` (``HOST:PORT`` gets tcp://); UsageError for anything else."""
    if address is None:
        return None
    text = address.strip()
    text = text if "://" in text else f"tcp://{text}"
    host, _, port = text.partition("://")[2].rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"{{scheduler}} {address!r}: give the Dask scheduler's address, e.g. "
                         "{scheduler=tcp://HOST:8786}", "scheduler")
    return text


def run_field_graph(job: PlateJob, fields: Sequence[PlateFieldTask], workers: int, scheduler: str | None,
                    connect_timeout: float, done: Callable[[FieldResult], None] | None = None) -> list[FieldResult]:
    """``field_task`` of every field as one Dask graph (``run_graph``)."""
    return run_graph(field_task, job, fields, [f.name for f in fields], workers, scheduler, connect_timeout, done)


def run_graph(task: Callable, job: PlateJob, items: Sequence, names: Sequence[str], workers: int,
              scheduler: str | None, connect_timeout: float, done: Callable | None = None) -> list:
    """``task(job, item)`` of every item as one Dask graph, the results in order: in this process (``workers``
    <= 1), on ``workers`` local processes, or on the cluster at ``scheduler``; ``done(result)`` in this process as
    each task ends (a progress bar, a log line). Raises the first task's error, no task runs on after it;
    RuntimeFailure ("workers died") when a worker process dies."""
    dask = import_dask(names[0] if names else "", scheduler)
    keys = [f"task-{i}-{name}" for i, name in enumerate(names)]
    tasks = [dask.delayed(task, pure=False)(job, item, dask_key_name=key)
             for item, key in zip(items, keys, strict=True)]
    if scheduler is not None:
        return cluster_compute(tasks, scheduler, connect_timeout, done)
    with local_progress(set(keys), done):
        if workers <= 1 or len(tasks) <= 1:
            return list(dask.compute(*tasks, scheduler="sync"))
        return pool_compute(dask, tasks, workers)


def pool_compute(dask, tasks: list, workers: int) -> list:
    """The tasks on ``workers`` spawned local processes (see the module)."""
    from dask.multiprocessing import RemoteException

    pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=get_context("spawn"), initializer=quiet_worker)
    try:
        return list(dask.compute(*tasks, scheduler="processes", pool=pool))
    except RemoteException as exc:  # the task's own error, without the worker's traceback in its text
        raise exc.exception from None
    except BrokenProcessPool:
        raise RuntimeFailure("workers died: a worker process ended (out of memory? killed?); nothing was "
                             "written") from None
    finally:  # Ctrl-C or an error: running fields end, the rest never start, then the temp folder goes
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def local_progress(keys: set[str], done: Callable | None):
    """While the block computes on dask's local schedulers, ``done(result)`` after each task of ``keys`` (dask calls
    it in this process, in its scheduling loop)."""
    if done is None:
        yield
        return
    from dask.callbacks import Callback

    def posttask(key, result, dsk, state, worker_id) -> None:
        if key in keys:
            done(result)

    with Callback(posttask=posttask):
        yield


def cluster_compute(tasks: list, address: str, connect_timeout: float, done: Callable | None = None) -> list:
    """The tasks on the cluster at ``address``; UsageError in one line when no scheduler answers within
    ``connect_timeout`` seconds. On an error or Ctrl-C the job's tasks are cancelled and waited for (up to
    ``STOP_WAIT_S``), so none writes after its temp folder is removed. ``done(result)`` as each task ends."""
    from distributed import Client, KilledWorker, as_completed

    try:
        client = Client(address, timeout=f"{connect_timeout}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"{{scheduler}} {address}: no Dask scheduler answers within {connect_timeout:g} s "
                         f"({type(exc).__name__}); start one (`dask scheduler`) or check the address",
                         "scheduler") from None
    with client:
        futures = client.compute(tasks)
        try:
            if done is not None:
                for future in as_completed(futures, loop=client.loop):  # our client: it is no default one
                    done(future.result())  # a failed task raises here, as gather does
            return list(client.gather(futures))
        except BaseException as exc:
            client.cancel(futures)  # a task already running goes on in its worker's thread: wait for it
            ours, deadline = {f.key for f in futures}, time.monotonic() + STOP_WAIT_S
            while time.monotonic() < deadline and ours & {k for ks in client.run(running_keys).values() for k in ks}:
                time.sleep(0.1)
            if isinstance(exc, KilledWorker):  # distributed retried the field on other workers; they died too
                raise RuntimeFailure(f"Dask workers died running {exc.task} ({exc}); nothing was written: check the "
                                     "workers' memory and logs") from None
            raise


def running_keys(dask_worker) -> list:
    """The keys of the tasks a distributed worker is running, cancelled ones included (``Client.run``)."""
    return [task.key for task in dask_worker.state.executing]


@contextlib.contextmanager
def field_progress(rule: str, total: int, enabled: bool):
    """A bar over ``total`` fields (``enabled``: a terminal) and one INFO line per field (``field_line``) as its task
    ends; yields ``done(result)`` for ``run_graph`` (a ``FieldResult``, or a task's list of them)."""
    with progress_bar(f"{rule} (fields)", total, enabled) as advance:

        def done(result: FieldResult | list[FieldResult]) -> None:
            for one in result if isinstance(result, list) else [result]:
                log.info("%s", field_line(one))
                advance()

        yield done


def field_line(result: FieldResult) -> str:
    """"A/1/0: alpha = 0.5 (target z5 found by normvar), 0.42 s on host:pid": a field's α, its focus where it was
    found, and its seconds (the model's load included, on a worker's first field)."""
    levels = result.levels
    by = f" found by {levels.found_by}" if levels.found_by else ""
    found = f" (target z{levels.target:g}{by})" if levels.target is not None else ""
    seconds = result.load_s + result.read_s + result.predict_s + result.write_s
    return (f"{result.name}: alpha = {', '.join(f'{a:.4g}' for a in levels.alphas)}{found}, {seconds:.2f} s on "
            f"{result.worker}")


def plate_command(rule: str) -> str:
    """The command a plate output's marker names: "deblur plate" or "blur plate"."""
    return f"{rule} plate"


def run_plate(checkpoint, config: InferenceConfig, plate_path: Path, output: Path, rule: str, *,
              z: Sequence[int], source: AlphaSource | None = None, alphas: Sequence[float] = (),
              channel: int | str | None = None, force: bool = False, extrapolate: bool = False,
              workers: int = PlateConfig.workers, scheduler: str | None = None,
              threads: int = PlateConfig.threads, connect_timeout: float = PlateConfig.connect_timeout,
              progress_enabled: bool = False) -> PlateRun:
    """Blur (``alphas``) or deblur (``source``) planes ``z`` of every field of the plate ``plate_path`` into the
    plate ``output`` (see the module). Everything that can be checked — dask, the scheduler's address, the plate,
    ``z`` and ``channel`` on its first field, the output — is checked before the model is loaded or a worker
    started; UsageError names the parameter at fault. A bar over the fields (``progress_enabled``) and a log line
    per field (``field_line``) as each ends. Returns the ``PlateRun``."""
    start = time.perf_counter()
    scheduler = check_scheduler(scheduler)
    z = check_z(z)
    import_dask(plate_path, scheduler)
    plate = read_plate(plate_path)
    command, what = plate_command(rule), f"a plate blurlatent {rule} wrote"
    check_output_folder(output, command, force, what, [plate_path])
    first = read_file(plate.field_path(plate.fields[0]), channel, None, None, ())  # facts only: no plane read
    check_stack_z(first, z, f"{plate_path.name}/{plate.fields[0].name}")
    provenance = job_provenance(checkpoint, rule, [] if source is not None else alphas, z)  # hashes the model
    job = PlateJob(str(checkpoint), provenance.model_sha256, config, rule, (z[0], z[1]), provenance, source,
                   tuple(alphas), channel, extrapolate, threads)
    with claim_output_folder(output, command, force, what, [plate_path]), disk_space(output), \
            terminate_as_interrupt():
        tmp = make_temp_dir(output)
        try:
            write_plate_layout(tmp, plate, plate_path.name, provenance.as_dict())
            fields = [PlateFieldTask(f.name, str(plate.field_path(f)), str(tmp / f.name), f"{plate_path.name}/{f.name}")
                      for f in plate.fields]
            with field_progress(rule, len(fields), progress_enabled) as done:
                results = run_field_graph(job, fields, workers, scheduler, connect_timeout, done)
            sign_plate(tmp, command)
            replace_folder(tmp, output)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return PlateRun(output, plate, results, time.perf_counter() - start)
