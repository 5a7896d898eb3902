"""The command line's streamed job: a pair of huge planes (TIFF or OME-Zarr, read by region: ``files.regions``) blurred
or deblurred block by block (``streaming``) into an OME-Zarr written chunk by chunk (``omezarr.omezarr_draft``: a temp
folder beside the output, renamed onto it at the end; an error, Ctrl-C or SIGTERM leaves neither).

``should_stream`` says when: a plane of more than ``STREAM_PIXELS`` pixels, or a whole-image job the memory available
could not hold; the CLI then runs ``stream_files`` instead of ``jobs.run_files``, said in one INFO line. A streamed
job keeps ``run_files``' checks (inputs, output, the model after them), metadata (the input nearer focus) and
provenance; it runs at the inputs' own pixel size, and writes OME-Zarr only (a TIFF cannot be written by region).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from blurlatent.config import InferenceConfig
from blurlatent.errors import UsageError
from blurlatent.files.atomic import disk_space, terminate_as_interrupt
from blurlatent.files.omezarr import check_zarr_output, is_zarr_path, omezarr_attrs, omezarr_draft
from blurlatent.files.output_folders import FolderLock
from blurlatent.files.regions import file_facts, open_plane
from blurlatent.files.stacks import Stack, alpha_labels
from blurlatent.inference.alphas import defocus_um
from blurlatent.inference.inputs import TIFF_MAGIC, check_stack_z, check_z
from blurlatent.inference.jobs import LABELLED_KINDS, job_provenance, pair_provenance
from blurlatent.inference.memory import LEVEL_BYTES, LIMIT, MAPPING_BYTES, PAIR_BYTES, available_bytes
from blurlatent.inference.predictor import NEAR_FOCUS, Predictor
from blurlatent.inference.scale import rescale_factor
from blurlatent.inference.streaming import BLOCK, Progress, stream_pair
from blurlatent.nets.latent import check_blur_alpha, check_deblur_alpha
from blurlatent.progress import tile_progress

log = logging.getLogger(__name__)
STREAM_PIXELS = 1 << 26  # planes beyond this many pixels (8192²) are streamed whatever the memory
Planes = tuple[tuple[Stack, int], tuple[Stack, int]]


def streamable(path: Path | None) -> bool:
    """Whether ``path`` can be read by region: an OME-Zarr, or a TIFF (by its first bytes)."""
    if path is None or is_zarr_path(path):
        return path is not None
    try:
        with open(path, "rb") as handle:
            return handle.read(4) in TIFF_MAGIC
    except OSError:
        return False


def pair_planes(first: Path, second: Path | None, *, z, channel, series, axes) -> Planes:
    """(facts, plane) of each input: planes ``z`` of the stack ``first``, or the one plane of each file; read without a
    pixel (``regions.file_facts``). UsageError as ``inputs.read_inputs`` says it."""
    if second is not None and z is not None:
        raise UsageError(f"{{z}} chooses two planes of one stack, but two files were given ({first}, {second})", "z")
    facts = file_facts(first, channel=channel, series=series, axes=axes)
    if second is None:
        if z is None:
            raise UsageError(f"{first}: give a second image of the same field, or a z-stack and {{z=P1 P2}}", "z")
        za, zb = check_stack_z(facts, check_z(z))
        return (facts, za), (facts, zb)
    other = file_facts(second, channel=channel, series=series, axes=axes)
    for stack in (facts, other):
        if stack.plane_count != 1:
            raise UsageError(f"{stack.path}: holds {stack.plane_count} planes (axes {stack.axes}); pass {{z=P1 P2}} "
                             "with this one file to use two of its planes", "z")
    if facts.data.shape[-2:] != other.data.shape[-2:]:
        raise UsageError(f"{second}: image is {other.data.shape[-1]}x{other.data.shape[-2]} but {first} is "
                         f"{facts.data.shape[-1]}x{facts.data.shape[-2]}; pass two planes of one field")
    return (facts, 0), (other, 0)


def should_stream(first: Path, second: Path | None, levels: int, config: InferenceConfig, *, z=None, channel=None,
                  series=None, axes=None) -> bool:
    """Whether the job runs streamed: both inputs read by region (TIFF, OME-Zarr), and a plane of more than
    STREAM_PIXELS pixels or a whole-image job beyond ``memory.LIMIT`` of the memory available (the arrays alone:
    the inputs, the pair in [0, 1], ``levels`` float32 outputs and their mapped copies). Inputs it cannot read say
    nothing here: ``run_files`` then says what is wrong."""
    if not streamable(first) or (second is not None and not streamable(second)):
        return False
    try:
        (fa, _), (fb, _) = pair_planes(first, second, z=z, channel=channel, series=series, axes=axes)
    except UsageError:
        return False
    h, w = fa.data.shape[-2:]
    out = np.dtype(config.out_dtype or np.result_type(fa.data.dtype, fb.data.dtype)).itemsize
    per_pixel = fa.data.itemsize + fb.data.itemsize + PAIR_BYTES + levels * (LEVEL_BYTES + out) + MAPPING_BYTES
    free = available_bytes()
    return h * w > STREAM_PIXELS or (free is not None and h * w * per_pixel > LIMIT * free)


def check_stream_output(output: Path, force: bool, inputs: Sequence[Path]) -> None:
    """UsageError for a streamed job's output that is not a new (or, with ``force``, our) OME-Zarr."""
    if not output.name.lower().endswith(".zarr"):
        raise UsageError(f"{output}: the inputs are streamed block by block (huge planes), which is written as "
                         "OME-Zarr only; name the {output} OUT.ome.zarr", "output")
    check_zarr_output(output, force, tuple(inputs))


def refuse_rescaling(predictor: Predictor, like: Stack) -> None:
    """UsageError where ``--rescale auto`` would resample the inputs: a streamed job runs at their own pixel size."""
    size = predictor.config.pixel_size if predictor.config.pixel_size is not None else like.pixel_size[0]
    factor, note, warning = rescale_factor(size, predictor.trained, predictor.config.rescale)
    if factor != 1.0:
        raise UsageError(f"{like.path}: its pixel size ({size:g} µm) is not the model's, and a streamed job (a huge "
                         "plane) runs at the image's own; bin the image to the model's pixel size first, or pass "
                         "{rescale=off} to run it as it is", "rescale")
    predictor.say(note, warning)


def stream_files(checkpoint, config: InferenceConfig, first: Path, second: Path | None, alphas: Sequence[float],
                 output: Path, rule: str, *, force: bool = False, z=None, channel=None, series: int | None = None,
                 planes=None, target=None, axes: str | None = None, extrapolate: bool = False,
                 progress_enabled: bool = False, progress: Progress = None) -> list[Path]:
    """``jobs.run_files`` for huge planes (see the module): blur (first = sharp) or deblur (first = blurriest) two
    files or planes ``z`` of ``first`` into the OME-Zarr ``output`` block by block; returns [output]. Inputs and
    output are checked before the model loads; UsageError also for a non-OME-Zarr output and for inputs
    ``--rescale auto`` would resample, and α out of range (``extrapolate``: blur α outside [0, 1] allowed).
    ``progress(done, total)``: after each block (else a bar, ``progress_enabled``)."""
    first, output = Path(first), Path(output)
    alphas = [check_blur_alpha(a, extrapolate) if rule == "blur" else check_deblur_alpha(a) for a in alphas]
    inputs = [p for p in (first, second) if p is not None]
    check_stream_output(output, force, inputs)
    (fa, za), (fb, zb) = pair_planes(first, second, z=z, channel=channel, series=series, axes=axes)
    like = (fa, fb)[NEAR_FOCUS[rule]]
    h, w = fa.data.shape[-2:]
    dtype = np.dtype(config.out_dtype or np.result_type(fa.data.dtype, fb.data.dtype))
    shape = (h, w) if len(alphas) == 1 else (len(alphas), h, w)
    scratch = 4 if config.intensity == "conserve" else 0  # the [0, 1] float32 output, before it is mapped
    log.info("%s: %dx%d px, streamed in blocks of %d px into %s", first, w, h, BLOCK, output)
    with disk_space(output), FolderLock(output, rule), terminate_as_interrupt():
        predictor = Predictor.from_checkpoint(checkpoint, config)
        refuse_rescaling(predictor, like)
        job = job_provenance(checkpoint, rule, alphas, z if planes is None else planes, target)
        predictor.check_defocus(defocus_um(like, job.planes, job.target), str(first))
        record = replace(pair_provenance(job, (fa, fb), like), alphas=tuple(map(float, alphas)))
        labelled = len(alphas) > 1 or like.kind in LABELLED_KINDS
        need = h * w * len(alphas) * (dtype.itemsize + scratch)
        with open_plane(first, fa, za, series=series) as pa, open_plane(second or first, fb, zb, series=series) as pb, \
                omezarr_draft(output, shape, dtype, force=force, inputs=tuple(inputs), need=need) as draft, \
                tile_progress(rule, progress_enabled) as update:
            _, window = stream_pair(predictor, pa, pb, alphas, rule, draft.array, scratch=draft.scratch, block=BLOCK,
                                    progress=progress or update)
            draft.attrs = omezarr_attrs(output, len(shape), pixel_size=like.pixel_size, channel=like.channel,
                                        labels=alpha_labels(alphas) if labelled else None,
                                        source=like.path.name if like.path else None, provenance=record,
                                        window=window)
    return [output]
