"""Every channel of a file at once (``channel="all"``, ``--channel all``): each channel blurred or deblurred by
the same model from the same two planes at the same α, into one output that keeps the channel axis and the
channel names (OME-TIFF: ``.tif`` or ``.ome.tif``; levels on T, the channels of each level on C).

A file of one channel is refused (it needs no ``channel``), and so are folder modes, PNG and OME-Zarr outputs:
one line each. Where a deblur's target is found in the stack, the first channel's focus serves every channel
(the caller passes its ``target``). Everything ``jobs.run_files`` checks before the model loads is checked here
too: the inputs of every channel, the output (not an input, not existing without ``force``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from blurlatent.config import InferenceConfig
from blurlatent.errors import UsageError
from blurlatent.files.atomic import disk_space, staged_files, terminate_as_interrupt
from blurlatent.files.output_folders import FolderLock
from blurlatent.files.stacks import alpha_labels, write_stack
from blurlatent.inference.alphas import defocus_um
from blurlatent.inference.inputs import Inputs, output_like, read_inputs
from blurlatent.inference.jobs import check_job_outputs, job_provenance, pair_provenance, predict_levels
from blurlatent.inference.predictor import NEAR_FOCUS, Predictor
from blurlatent.progress import tile_progress


def read_channels(first: Path, second: Path | None = None, *, z=None, series: int | None = None,
                  axes: str | None = None) -> list[Inputs]:
    """The two planes of a job in every channel of ``first`` (``inputs.read_inputs`` per channel); UsageError
    naming channel for a file of one channel."""
    inputs = [read_inputs(first, second, z=z, channel=0, series=series, axes=axes)]
    count = inputs[0].sources[0].channel_count
    if count == 1:
        raise UsageError(f"{{channel}} all: {first} holds one channel; leave {{channel}} out", "channel")
    return inputs + [read_inputs(first, second, z=z, channel=c, series=series, axes=axes) for c in range(1, count)]


def channels_output(output: Path) -> Path:
    """``output`` when it is a TIFF name (the one file every channel goes into); UsageError otherwise."""
    if not output.name.lower().endswith((".tif", ".tiff")):
        raise UsageError(f"{output}: every channel goes into one multi-channel .tif or .ome.tif; name the output so, "
                         "or pass one {channel}", "channel")
    return output


def run_channels(checkpoint, config: InferenceConfig, first: Path, second: Path | None, alphas: Sequence[float],
                 output: Path, rule: str, *, force: bool = False, extrapolate: bool = False, z=None,
                 series: int | None = None, progress_enabled: bool = False, planes=None, target=None,
                 axes: str | None = None) -> list[Path]:
    """``jobs.run_files`` on every channel of ``first`` (and ``second``): one OME-TIFF ``output`` of C channels
    (× K levels), each channel as a run on it alone would make it, with the channel names and the job's
    provenance (``channel``: every index). Returns [output]."""
    every = read_channels(first, second, z=z, series=series, axes=axes)
    path = channels_output(Path(output))
    check_job_outputs([path], force, [p for p in (first, second) if p is not None])
    likes = [inputs.sources[NEAR_FOCUS[rule]] for inputs in every]
    with disk_space(output), FolderLock(output, rule), terminate_as_interrupt():  # as run_files
        predictor = Predictor.from_checkpoint(checkpoint, config)
        with tile_progress(rule, progress_enabled) as update:
            levels = np.stack([predict_levels(predictor, inputs, like, alphas, rule, extrapolate, update)
                               for inputs, like in zip(every, likes, strict=True)])
        job = job_provenance(checkpoint, rule, alphas, z if planes is None else planes, target)
        predictor.check_defocus(defocus_um(likes[0], job.planes, job.target), str(first))
        record = replace(pair_provenance(job, every[0].sources, likes[0]), channel=tuple(range(len(every))),
                         channel_name=None)
        with staged_files(force) as stage:
            write_stack(stage(path), levels[:, 0] if len(alphas) == 1 else levels, like=output_like(likes[0]),
                        labels=alpha_labels(alphas), provenance=record, channels=[like.channel or "" for like in likes])
    return [path]
