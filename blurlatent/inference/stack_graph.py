"""A folder of stacks as a Dask graph: ``deblur --stack-dir DIR --z P1 P2`` with ``--workers N`` or ``--scheduler``.

``predict_stack_graph`` writes exactly what ``jobs.predict_folders`` writes in one process — the same files
(``jobs.folder_outputs``), checked the same way before any work, held under the same lock (``FolderLock``), staged
and renamed all or nothing (``atomic.staged_files``) — but each batch of stacks runs as one task of
``plates.run_graph``: in this process, on local processes, or on a Dask cluster, each worker loading the model once
(``plates.cached_predictor``). The batches are ``jobs.same_shape_batches``' (up to ``batch_size`` consecutive stacks
of one plane shape, pixel size and α list, told here from each file's facts without reading a pixel), so with one
torch thread on both sides the pixels are those of the one-process job bit for bit (a batch of four does not give
the bits of four batches of one). α and each stack's focus (``--target auto``) come in, found by the caller before
the job starts, as ``jobs.deblur_folders`` finds them for the one-process job.

A task that fails, a lost worker or Ctrl-C (SIGTERM too) leaves no output, no temp and no lock: the client waits
for running tasks (``plates.cluster_compute``) before the staged files are removed.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from blurlatent.config import InferenceConfig, PlateConfig
from blurlatent.errors import RuntimeFailure, UsageError
from blurlatent.files.atomic import disk_space, staged_files, terminate_as_interrupt
from blurlatent.files.output_folders import FolderLock
from blurlatent.inference.alphas import DeblurLevels, defocus_um
from blurlatent.inference.inputs import check_stack_z, check_z, read_file, read_inputs
from blurlatent.inference.jobs import (
    Levels,
    check_folder_outputs,
    job_provenance,
    pair_levels,
    pair_provenance,
    write_output,
)
from blurlatent.inference.plates import (
    FieldResult,
    PlateJob,
    cached_predictor,
    check_scheduler,
    field_progress,
    import_dask,
    run_graph,
)
from blurlatent.inference.predictor import NEAR_FOCUS
from blurlatent.inference.selfcheck import with_checks
from blurlatent.nets.latent import check_blur_alpha, check_deblur_alpha


@dataclass(frozen=True)
class StackTask:
    """One stack of the folder: its name, its file, the staged path of each level's output, its α levels (checked)
    and the target its outputs record."""

    name: str
    path: str
    outputs: tuple[str, ...]
    levels: DeblurLevels


def stack_batch_task(job: PlateJob, batch: tuple[StackTask, ...]) -> list[FieldResult]:
    """Blur or deblur planes ``job.z`` of a batch of stacks of one shape and α list through one ``run_pairs`` call
    (as ``jobs.predict_folder`` does), writing each level to its staged path; run by the workers. Raises what
    reading, the model or writing raise; RuntimeFailure when the job's staged files are gone (it was stopped)."""
    import torch

    torch.set_num_threads(job.threads)
    predictor, load_s = cached_predictor(job)
    start = time.perf_counter()
    inputs = [read_inputs(task.path, None, z=job.z, channel=job.channel, series=job.series, axes=job.axes)
              for task in batch]
    read = time.perf_counter()
    near, alphas = NEAR_FOCUS[job.rule], list(batch[0].levels.alphas)
    levels = predictor.run_pairs([im.first for im in inputs], [im.second for im in inputs], alphas, job.rule,
                                 names=(batch[0].path, batch[0].path), pixel_size=inputs[0].sources[near].pixel_size[0])
    predicted = time.perf_counter()
    checks = predictor.checks or [[] for _ in batch]  # a deblur's self-checks, [stack][level], as predict_folder
    for images, task, stack, stack_checks in zip(inputs, batch, levels, checks, strict=True):
        like = images.sources[near]
        record = replace(pair_provenance(job.provenance, images.sources, like), target=task.levels.target)
        predictor.check_defocus(defocus_um(like, record.planes, record.target), task.name)
        for j, (path, level, alpha) in enumerate(zip(task.outputs, stack, alphas, strict=True)):
            if not Path(path).parent.is_dir():
                raise RuntimeFailure(f"{path}: the job's staged files are gone (it was stopped); stack not written")
            Path(path).unlink(missing_ok=True)  # Dask reruns the tasks a lost worker had done: ours to replace
            write_output(Path(path), level, [alpha], like, with_checks(record, stack_checks[j:j + 1]))
    done, n = time.perf_counter(), len(batch)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    return [FieldResult(task.name, task.levels, worker, load_s if i == 0 else 0.0, (read - start) / n,
                        (predicted - read) / n, (done - predicted) / n) for i, task in enumerate(batch)]


def stack_batches(pairs: Sequence[tuple], checked: Mapping[str, list[float]], z: tuple[int, int], size: int, *,
                  channel=None, series: int | None = None, axes: str | None = None) -> list[list[tuple[str, Path]]]:
    """The stacks ``pairs`` [(name, path, None), ...] in ``jobs.same_shape_batches``' groups: up to ``size``
    consecutive stacks of one plane shape, one pixel size and one α list (``checked``), from each file's facts (no
    pixel read). UsageError as reading says, and for ``z`` out of a stack's range."""
    batches: list[list[tuple[str, Path]]] = []
    last = None
    for name, path, _ in pairs:
        facts = read_file(path, channel, series, axes, ())
        check_stack_z(facts, z)
        key = (tuple(facts.data.shape[-2:]), facts.pixel_size, list(checked[name]))
        if batches and len(batches[-1]) < max(1, size) and key == last:
            batches[-1].append((name, Path(path)))
        else:
            batches.append([(name, Path(path))])
        last = key
    return batches


def predict_stack_graph(checkpoint, config: InferenceConfig, pairs: list[tuple], alphas: Levels, output: Path,
                        rule: str, *, force: bool = False, extrapolate: bool = False, z=None, channel=None,
                        series: int | None = None, progress_enabled: bool = True, planes=None, target=None,
                        targets: Mapping[str, float] | None = None, axes: str | None = None,
                        workers: int = PlateConfig.workers, scheduler: str | None = None,
                        threads: int = PlateConfig.threads,
                        connect_timeout: float = PlateConfig.connect_timeout) -> list[Path]:
    """``jobs.predict_folders`` of the stacks ``pairs`` (``jobs.stack_folder``; planes ``z``) as a Dask graph (see
    the module): ``workers`` local processes, or the cluster at ``scheduler``. Everything is checked before a
    worker starts — dask, the address, α, every output path, each stack's ``z`` — and the model is hashed for
    the provenance; UsageError names the parameter at fault. A bar over the stacks (``progress_enabled``) and a
    log line per stack. Returns the paths written."""
    if z is None:
        raise UsageError("{workers} and {scheduler} spread the stacks of {stack_dir} over processes; pass {z=P1 P2}",
                         "workers", "scheduler", "stack_dir", "z")
    z, scheduler = check_z(z), check_scheduler(scheduler)
    import_dask(output, scheduler, "a folder of stacks on {workers}")
    check = partial(check_blur_alpha, extrapolate=extrapolate) if rule == "blur" else check_deblur_alpha
    checked = {pair[0]: [check(a) for a in pair_levels(alphas, pair[0])] for pair in pairs}
    outputs = dict(zip((pair[0] for pair in pairs), check_folder_outputs(output, pairs, checked, force), strict=True))
    batches = stack_batches(pairs, checked, z, config.batch_size, channel=channel, series=series, axes=axes)
    shared = [] if isinstance(alphas, Mapping) else alphas  # per stack: each output records its own
    provenance = job_provenance(checkpoint, rule, shared, z if planes is None else planes, target)
    job = PlateJob(str(checkpoint), provenance.model_sha256, config, rule, z, provenance, None, (), channel,
                   extrapolate, threads, series, axes)
    recorded = (lambda name: targets[name]) if targets is not None else (lambda name: provenance.target)
    with disk_space(output), FolderLock(output, rule), terminate_as_interrupt(), staged_files(force) as stage:
        tasks = [tuple(StackTask(name, str(path), tuple(str(stage(p)) for p in outputs[name]),
                                 DeblurLevels(checked[name], None, recorded(name))) for name, path in batch)
                 for batch in batches]
        with field_progress(rule, len(pairs), progress_enabled) as done:
            run_graph(stack_batch_task, job, tasks, [batch[0].name for batch in tasks], workers, scheduler,
                      connect_timeout, done)
    return [path for pair in pairs for path in outputs[pair[0]]]
