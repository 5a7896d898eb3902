"""File and folder jobs for blur and deblur: reading pairs, pairing folders, naming and writing outputs.

Every output path is checked before the model is loaded (``files.check_outputs``): an existing file
(without ``force``), an output that is an input (even with ``force``), two levels that would share a file
name, or a PNG of pixels PNG cannot hold stop a job with nothing written. The files of one job are
written all or nothing (``files.staged_files``): a pair that fails in folder mode leaves no output of any
pair, so the corrected rerun needs no ``force``. A job holds its output's lock (the file, or the folder in
folder mode: ``output_folders.FolderLock``) while it runs, and its targets are looked at again right before
the rename, so a second job never silently replaces the first one's files; SIGTERM stops a job as Ctrl-C does.
The images go through one ``Predictor``; outputs keep their pixel type (``check_format``).

Inputs are one plane per file or two planes ``z`` of one z-stack (``planes``); outputs keep the metadata of
the input nearer focus (``stacks.write_stack``: OME-TIFF stays OME-TIFF with its pixel sizes, ImageJ stays
ImageJ), several levels in one file are labelled with their α (``alpha=0.125``) on the T axis, and every output
records how it was made (``files.provenance``: planes, z, target, α, channel, model and its sha256, version).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from blurlatent import __version__
from blurlatent.bbbc006 import parse_bbbc_name
from blurlatent.config import InferenceConfig
from blurlatent.errors import UsageError
from blurlatent.files.atomic import check_outputs, disk_space, staged_files, terminate_as_interrupt
from blurlatent.files.images import IMAGE_SUFFIXES
from blurlatent.files.omezarr import check_zarr_output
from blurlatent.files.output_folders import FolderLock
from blurlatent.files.provenance import Provenance
from blurlatent.files.stacks import (
    IMAGEJ_DTYPES,
    IMAGEJ_TYPES,
    Stack,
    alpha_labels,
    is_ome_name,
    output_kind,
    write_stack,
)
from blurlatent.inference.alphas import AlphaSource, DeblurLevels, defocus_um, plane_z_um, stack_levels
from blurlatent.inference.builtin import model_identity
from blurlatent.inference.inputs import Inputs, output_like, read_inputs
from blurlatent.inference.predictor import NEAR_FOCUS, Predictor
from blurlatent.inference.selfcheck import SelfCheck, with_checks
from blurlatent.nets.latent import check_blur_alpha, check_deblur_alpha
from blurlatent.progress import progress_bar, tile_progress

OUTPUT_SUFFIXES = (".tif", ".tiff", ".png", ".zarr")
LABELLED_KINDS = ("ome", "imagej", "zarr")  # inputs whose outputs carry a label even for a single level
Levels = Sequence[float] | Mapping[str, Sequence[float]]  # one α list for every pair, or one per pair name


def read_pair(path_a, path_b) -> tuple[np.ndarray, np.ndarray]:
    """Read two grayscale images of one shape; UsageError names the file at fault (see ``planes.read_inputs``)."""
    inputs = read_inputs(path_a, path_b)
    return inputs.first, inputs.second


def level_names(alphas: Sequence[float]) -> list[str]:
    """One file-name tag per α, ``a0.250``: three decimals, more when two levels would share a tag (0.1 and
    0.1004 → ``a0.1000``, ``a0.1004``). UsageError for a level given twice."""
    for digits in range(3, 18):
        names = [f"a{a:.{digits}f}" for a in alphas]
        if len(set(names)) == len(names):
            return names
    names = [f"a{a!r}" for a in alphas]
    if len(set(names)) == len(names):
        return names
    twice = next(a for a in alphas if list(alphas).count(a) > 1)
    raise UsageError(f"{{alpha}} {twice:g} is given twice and each level gets its own file; give each level once",
                     "alpha")


def level_paths(out, alphas: Sequence[float]) -> list[Path]:
    """Where K levels go: one (multi-page) TIFF or OME-Zarr, or numbered PNGs ``stem_a0.250.png`` for a .png
    with K > 1."""
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UsageError(f"{out}: output must end in .tif, .tiff, .png or .ome.zarr")
    if out.suffix.lower() == ".png" and len(alphas) > 1:
        return [out.with_name(f"{out.stem}_{name}.png") for name in level_names(alphas)]
    return [out]


def check_png(paths: Sequence[Path], dtype) -> None:
    """UsageError when a .png output would get pixels PNG cannot hold (it holds 8- and 16-bit unsigned)."""
    png = next((p for p in paths if p.suffix.lower() == ".png"), None)
    if png is not None and np.dtype(dtype) not in (np.uint8, np.uint16):
        raise UsageError(f"{png}: PNG holds 8- or 16-bit unsigned pixels, not {np.dtype(dtype)}; write a .tif, or "
                         "pass {out_dtype} uint16", "out_dtype")


def check_format(path: Path, dtype, like: Stack | None, levels: int) -> None:
    """UsageError when the TIFF ``write_output`` makes of ``levels`` planes like ``like`` is an ImageJ one (an
    ImageJ input's kind) and ``dtype`` is not a pixel type ImageJ holds (``IMAGEJ_TYPES``): the pixels are
    never converted behind the user's back. Other labelled outputs go to OME-TIFF, which holds any type."""
    labelled = levels > 1 or (like is not None and like.kind in LABELLED_KINDS)
    kind = output_kind(Path(path), like and output_like(like), [""] * levels if labelled else None, dtype)
    if kind == "imagej" and np.dtype(dtype) not in IMAGEJ_DTYPES:  # only for an ImageJ ``like``
        source = like.path if like is not None else "its input"
        raise UsageError(f"{path}: an ImageJ TIFF (the kind of {source}) holds {IMAGEJ_TYPES} pixels, not "
                         f"{np.dtype(dtype)}; pass {{out_dtype}} float32, or write a .ome.tif", "out_dtype")


def job_provenance(checkpoint, rule: str, alphas: Sequence[float], planes=None, target=None) -> Provenance:
    """What every output of a job records (``files.provenance``), its model hashed once per job; ``planes`` the
    two planes α came from (stack indices or focal planes), ``target`` the plane a deblur's α aims at."""
    name, digest = model_identity(checkpoint)
    return Provenance(rule, tuple(float(a) for a in alphas), name, digest, __version__,
                      planes=None if planes is None else (float(planes[0]), float(planes[1])),
                      target=None if target is None else float(target))


def pair_provenance(job: Provenance, sources: Sequence[Stack], like: Stack) -> Provenance:
    """``job``'s provenance for one pair: its inputs' file names, ``like``'s channel, and the z in µm of the
    planes (from the stack's first plane) where ``like`` has a z step."""
    planes = job.planes
    z = None if planes is None else (plane_z_um(like, planes[0]), plane_z_um(like, planes[1]))
    z_um = None if z is None or z[0] is None or z[1] is None else (z[0], z[1])
    names = tuple(dict.fromkeys(s.path.name for s in sources if s.path is not None))
    return replace(job, z_um=z_um, channel=like.channel_index, channel_name=like.channel, inputs=names)


def write_output(path: Path, levels: np.ndarray, alphas: Sequence[float], like: Stack | None = None,
                 provenance: Provenance | None = None) -> None:
    """One output file of [K, H, W] levels (or one [H, W] level) with ``like``'s metadata (``stacks.write_stack``)
    and ``provenance`` (its α the file's): several levels are labelled with their α (``alpha=0.125``) on the T
    axis, so is one level of an OME, ImageJ or OME-Zarr input. The levels keep their dtype (``check_format``)."""
    labelled = levels.ndim == 3 or (like is not None and like.kind in LABELLED_KINDS)
    check_format(path, levels.dtype, like, len(levels) if levels.ndim == 3 else 1)
    write_stack(path, levels, like=None if like is None else output_like(like),
                labels=alpha_labels(alphas) if labelled else None,
                provenance=None if provenance is None else replace(provenance, alphas=tuple(map(float, alphas))))


def check_job_outputs(paths: Sequence[Path], force: bool, inputs: Sequence[Path] = ()) -> None:
    """``files.check_outputs`` for the files of a job, ``omezarr.check_zarr_output`` for its OME-Zarr folders (an
    earlier one is replaced with ``force`` when blurlatent wrote it, a folder of anyone else's never)."""
    zarrs = [p for p in paths if p.name.lower().endswith(".zarr")]
    check_outputs([p for p in paths if p not in zarrs], force, inputs)
    for path in zarrs:
        check_zarr_output(path, force, tuple(Path(p) for p in inputs))


def write_levels(out, levels: np.ndarray, alphas: Sequence[float], force: bool = False,
                 like: Stack | None = None, provenance: Provenance | None = None,
                 checks: Sequence[SelfCheck] = ()) -> list[Path]:
    """Write [K, H, W] levels as ``level_paths`` says (K labelled levels in one file), all or nothing, with
    ``like``'s metadata and ``provenance`` (and each level's self-check, ``checks``, where given); returns the paths."""
    paths = level_paths(out, alphas)
    check_job_outputs(paths, force)
    check_png(paths, levels.dtype)
    with staged_files(force) as stage:
        if len(paths) == 1:
            write_output(stage(paths[0]), levels[0] if len(levels) == 1 else levels, alphas, like,
                         with_checks(provenance, checks))
        else:
            for i, (p, level, a) in enumerate(zip(paths, levels, alphas, strict=True)):
                write_output(stage(p), level, [a], like, with_checks(provenance, checks[i:i + 1]))
    return paths


def image_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: folder not found; pass an existing folder of .tif/.png images")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise UsageError(f"{folder}: holds no .tif/.tiff/.png images")
    return files


def file_field_name(path: Path) -> str:
    key = parse_bbbc_name(path.name)
    return key.name if key is not None else path.stem


def pair_folders(sharp_dir, blurry_dir) -> tuple[list[tuple[str, Path, Path]], list[Path]]:
    """Pair the images of two folders by field: BBBC006 names by (well, site, channel), whatever the
    UUID; other files by identical file name.

    Returns (pairs as (name, sharp_path, blurry_path) sorted by name, files left without a partner).
    Raises UsageError when a folder is missing or empty, a field appears twice, or nothing pairs.
    """
    def index(folder):
        found: dict[str, Path] = {}
        for p in image_files(folder):
            name = file_field_name(p)
            if name in found:
                raise UsageError(f"{p}: field {name} also appears as {found[name].name}; keep one file per field in "
                                 f"{folder}")
            found[name] = p
        return found

    sharp, blurry = index(sharp_dir), index(blurry_dir)
    names = sorted(set(sharp) & set(blurry))
    if not names:
        raise UsageError(f"no image in {sharp_dir} has a partner in {blurry_dir}: name files identically or keep "
                         "BBBC006 names (well, site, channel)")
    unpaired = sorted([sharp[n] for n in set(sharp) - set(names)] + [blurry[n] for n in set(blurry) - set(names)])
    return [(n, sharp[n], blurry[n]) for n in names], unpaired


def stem_name(path: Path) -> str:
    """A file's name without its image suffix: ``x.ome.tif``, ``x.tif`` and ``x.ome.zarr`` are all ``x``."""
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".png", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def stack_folder(folder) -> list[tuple[str, Path, None]]:
    """The stacks of a folder (TIFF/PNG files, ``.zarr`` folders) as jobs (name, path, None) sorted by name;
    UsageError for a missing or empty folder or two files of one name (``x.tif`` and ``x.ome.tif``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: folder not found; pass an existing folder of z-stacks")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not ((p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
                                          or (p.is_dir() and p.suffix.lower() == ".zarr")):
            continue
        name = stem_name(p)
        if name in found:
            raise UsageError(f"{p}: stack {name} also appears as {found[name].name}; keep one file per stack in "
                             f"{folder}")
        found[name] = p
    if not found:
        raise UsageError(f"{folder}: holds no z-stacks (.tif/.tiff/.png files or .ome.zarr folders)")
    return [(name, found[name], None) for name in sorted(found)]


def output_suffix(pair) -> str:
    """``.ome.tif`` when an input of the pair is OME (by name, or an OME-Zarr), else ``.tif``."""
    ome = any(p is not None and (is_ome_name(p) or Path(p).suffix.lower() == ".zarr") for p in pair[1:])
    return ".ome.tif" if ome else ".tif"


def pair_levels(alphas: Levels, name: str) -> list[float]:
    """The α levels of the pair ``name``: ``alphas`` itself, or its entry where α differs per pair."""
    return list(alphas[name] if isinstance(alphas, Mapping) else alphas)


def folder_outputs(out_dir, pairs, alphas: Levels, suffix: str | None = None) -> list[list[Path]]:
    """Per pair, one file per level: ``OUT/{field}_a0.250.tif`` (``level_names``; ``.ome.tif`` for OME inputs)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a folder; folder mode writes into a folder")
    return [[out_dir / f"{pair[0]}_{tag}{suffix or output_suffix(pair)}"
             for tag in level_names(pair_levels(alphas, pair[0]))] for pair in pairs]


def check_folder_outputs(out_dir, pairs, alphas: Levels, force: bool) -> list[list[Path]]:
    """``folder_outputs``, each checked (``files.check_outputs``: none may be an input, or exist without ``force``)."""
    outputs = folder_outputs(out_dir, pairs, alphas)
    inputs = [f for _, a, b in pairs for f in (a, b) if f is not None]
    check_outputs([p for paths in outputs for p in paths], force, inputs)
    return outputs


def predict_folder(predictor: Predictor, pairs: Sequence[tuple], alphas: Levels, out_dir,
                   rule: str = "blur", *, force: bool = False, extrapolate: bool = False,
                   progress: Callable[[int], None] | None = None, read: Callable[..., Inputs] = read_inputs,
                   provenance: Provenance | None = None, targets: Mapping[str, float] | None = None) -> list[Path]:
    """Blur (``rule="blur"``) or deblur every pair (``pair_folders``; ``stack_folder`` jobs with ``read`` choosing
    their planes) at every α (``alphas``, or per pair name: a stack's own focus), writing ``folder_outputs`` (each
    with ``provenance``, completed by its pair's inputs, ``pair_provenance``, and its ``targets`` entry);
    returns the paths.

    All or nothing: every output path is checked before anything is written, and the images are kept in
    temps until every pair is done, so a pair that fails (or Ctrl-C) leaves no output of any pair.
    ``progress(n)`` is called after each batch of n pairs.
    """
    check = partial(check_blur_alpha, extrapolate=extrapolate) if rule == "blur" else check_deblur_alpha
    checked = {pair[0]: [check(a) for a in pair_levels(alphas, pair[0])] for pair in pairs}
    outputs = check_folder_outputs(out_dir, pairs, checked, force)
    written = []
    jobs = list(zip(pairs, outputs, strict=True))
    with terminate_as_interrupt(), staged_files(force) as stage:  # SIGTERM between two writes: as Ctrl-C
        for batch in same_shape_batches(jobs, predictor.config.batch_size, read, lambda job: checked[job[0][0]]):
            (name0, first0, second0), _ = batch[0][1]
            levels = predictor.run_pairs([im.first for im, _ in batch], [im.second for im, _ in batch],
                                         checked[name0], rule, names=(str(first0), str(second0 or first0)),
                                         pixel_size=batch[0][0].sources[NEAR_FOCUS[rule]].pixel_size[0])
            checks = predictor.checks or [[] for _ in batch]  # [pair][level] for deblur
            for (images, ((name, _, _), paths)), stack, pair_checks in zip(batch, levels, checks, strict=True):
                like = images.sources[NEAR_FOCUS[rule]]
                record = None if provenance is None else pair_provenance(provenance, images.sources, like)
                if record is not None and targets is not None:
                    record = replace(record, target=targets[name])
                if record is not None:  # a blurriest plane beyond the model's training: one warning
                    predictor.check_defocus(defocus_um(like, record.planes, record.target), name)
                for j, (p, level, a) in enumerate(zip(paths, stack, checked[name], strict=True)):
                    write_output(stage(p), level, [a], like, with_checks(record, pair_checks[j:j + 1]))
                    written.append(p)
            if progress is not None:
                progress(len(batch))
    return written


def same_shape_batches(jobs: list, size: int, read: Callable[..., Inputs] = read_inputs,
                       key: Callable[[tuple], object] = lambda job: None):
    """Read the pairs of ``jobs`` [((name, a, b), outputs), ...] with ``read(a, b)`` and yield lists of up to
    ``size`` (``Inputs``, job) of one image shape and one ``key(job)`` (their α levels), in order: pairs in a
    batch go through the model together."""
    batch: list = []
    for job in jobs:
        images = read(job[0][1], job[0][2])
        sizes = [s.pixel_size for s in images.sources]  # one pixel size per batch: one resampling (``scale``)
        if batch and (len(batch) >= max(1, size) or images.first.shape != batch[0][0].first.shape
                      or key(job) != key(batch[0][1]) or sizes != [s.pixel_size for s in batch[0][0].sources]):
            yield batch
            batch = []
        batch.append((images, job))
    if batch:
        yield batch


# --- the jobs the command line runs ------------------------------------------------------------------


def run_files(checkpoint, config: InferenceConfig, first: Path, second: Path | None, alphas: Sequence[float],
              output: Path, rule: str, *, force: bool = False, extrapolate: bool = False, z=None, channel=None,
              series: int | None = None, progress_enabled: bool = False, planes=None, target=None,
              axes: str | None = None) -> list[Path]:
    """Blur (``rule="blur"``: first = sharp) or deblur (first = blurriest) two files, or planes ``z`` of the
    stack ``first`` (``second`` None; read by ``axes`` where given), into ``output`` with the metadata of the input
    nearer focus and the job's provenance (``planes`` α came from, default ``z``; the deblur ``target``;
    ``job_provenance``).

    Inputs and every output path (not an input, not existing without ``force``, a pixel type the format
    holds) are checked before the model is loaded; a tiled image shows a progress bar (``progress_enabled``).
    Returns the paths written.
    """
    inputs = read_inputs(first, second, z=z, channel=channel, series=series, axes=axes)
    paths = level_paths(output, alphas)
    check_job_outputs(paths, force, [p for p in (first, second) if p is not None])
    dtype = config.out_dtype or np.result_type(inputs.first.dtype, inputs.second.dtype)
    check_png(paths, dtype)
    like = inputs.sources[NEAR_FOCUS[rule]]
    for path in paths:
        check_format(path, dtype, like, len(alphas) if len(paths) == 1 else 1)
    # one job per output at a time (a second gets "in use by pid N"); SIGTERM ends it as Ctrl-C does
    with disk_space(output), FolderLock(output, rule), terminate_as_interrupt():
        predictor = Predictor.from_checkpoint(checkpoint, config)
        with tile_progress(rule, progress_enabled) as update:
            levels = predict_levels(predictor, inputs, like, alphas, rule, extrapolate, update)
        job = job_provenance(checkpoint, rule, alphas, z if planes is None else planes, target)
        predictor.check_defocus(defocus_um(like, job.planes, job.target), str(first))
        return write_levels(output, levels, alphas, force=force, like=like,
                            provenance=pair_provenance(job, inputs.sources, like),
                            checks=predictor.checks[0] if predictor.checks else ())


def predict_levels(predictor: Predictor, inputs: Inputs, like, alphas: Sequence[float], rule: str,
                   extrapolate: bool, update) -> np.ndarray:
    """[K, H, W] levels of one pair by ``rule`` (blur or deblur), at ``like``'s pixel size."""
    if rule == "blur":
        return predictor.blur(inputs.first, inputs.second, list(alphas), extrapolate=extrapolate, progress=update,
                              pixel_size=like.pixel_size[0])
    return predictor.deblur(inputs.first, inputs.second, list(alphas), progress=update, pixel_size=like.pixel_size[0])


def predict_folders(checkpoint, config: InferenceConfig, pairs: list[tuple], alphas: Levels, output: Path,
                rule: str, *, force: bool = False, extrapolate: bool = False, z=None, channel=None,
                series: int | None = None, progress_enabled: bool = True, planes=None, target=None,
                targets: Mapping[str, float] | None = None, axes: str | None = None) -> list[Path]:
    """``predict_folder`` on ``pairs`` (``pair_folders`` or, with ``z``, ``stack_folder``) into the folder ``output``,
    outputs checked before the model is loaded, a bar per pair (``progress_enabled``), the provenance as
    ``run_files`` records it (``targets``: each pair's own); returns the paths."""
    check_folder_outputs(output, pairs, alphas, force)
    read = partial(read_inputs, z=z, channel=channel, series=series, in_folders=z is None, axes=axes)
    with disk_space(output), FolderLock(output, rule), terminate_as_interrupt():  # one job per output folder
        predictor = Predictor.from_checkpoint(checkpoint, config)
        shared = [] if isinstance(alphas, Mapping) else alphas  # per pair: each output records its own
        job = job_provenance(checkpoint, rule, shared, z if planes is None else planes, target)
        with progress_bar(rule, len(pairs), progress_enabled) as advance:
            return predict_folder(predictor, pairs, alphas, output, rule, force=force, extrapolate=extrapolate,
                                  progress=advance, read=read, provenance=job, targets=targets)


def refuse_z_in_pairs(z, rule: str) -> None:
    """UsageError for ``z`` in the folder mode that pairs single-plane files of two folders (blur and deblur)."""
    if z is not None:
        stacks = ", or deblur a folder of z-stacks with {stack_dir} and {z=P1 P2}" if rule == "deblur" else ""
        raise UsageError(f"{{z}} chooses two planes of one z-stack, but folder mode pairs single-plane files of two "
                         f"folders; leave {{z}} out{stacks}", "z", *(("stack_dir",) if stacks else ()))


def blur_folders(checkpoint, config: InferenceConfig, sharp_dir: Path, blurry_dir: Path, alphas: Sequence[float],
                 output: Path, *, force: bool = False, extrapolate: bool = False, progress_enabled: bool = True,
                 channel=None, series: int | None = None, z=None, axes: str | None = None):
    """Blur every pair of two folders into the folder ``output``: (paths written, pairs, unpaired files).
    UsageError for ``z`` (the files of a pair are single planes)."""
    refuse_z_in_pairs(z, "blur")
    pairs, unpaired = pair_folders(sharp_dir, blurry_dir)
    written = predict_folders(checkpoint, config, pairs, alphas, output, "blur", force=force, extrapolate=extrapolate,
                          channel=channel, series=series, progress_enabled=progress_enabled, axes=axes)
    return written, pairs, unpaired


def deblur_folders(checkpoint, config: InferenceConfig, source: AlphaSource, output: Path, *,
                   blurriest_dir: Path | None = None, less_blurry_dir: Path | None = None,
                   stack_dir: Path | None = None, z=None, channel=None, series: int | None = None,
                   force: bool = False, progress_enabled: bool = True, axes: str | None = None,
                   run: Callable[..., list[Path]] | None = None):
    """Deblur every field of two folders (paired as ``pair_folders`` does), or planes ``z`` of every stack of
    ``stack_dir``, into the folder ``output``, α from ``source`` — per stack where it comes from the stack
    (``alphas.stack_levels``: every stack is checked, its focus found, before the model is loaded): (paths
    written, jobs, inputs left without a partner, {job name: its ``DeblurLevels``}). ``run``: what predicts and
    writes them, ``predict_folders``'s arguments (default: it; ``stack_graph.predict_stack_graph``: on Dask)."""
    pairs: Sequence[tuple[str, Path, Path | None]]
    unpaired: list[Path]
    if stack_dir is not None:
        if blurriest_dir is not None or less_blurry_dir is not None:
            raise UsageError("folder mode: give {stack_dir}, or {blurriest_dir} and {less_blurry_dir}; not both",
                             "stack_dir", "blurriest_dir", "less_blurry_dir")
        if z is None:
            raise UsageError(f"{stack_dir}: a folder of stacks needs the two planes to deblur from; pass {{z=P1 P2}}",
                             "z")
        pairs, unpaired = stack_folder(stack_dir), []
    else:
        if blurriest_dir is None or less_blurry_dir is None:
            raise UsageError("folder mode: give both {blurriest_dir} and {less_blurry_dir}", "blurriest_dir",
                             "less_blurry_dir")
        refuse_z_in_pairs(z, "deblur")
        pairs, unpaired = pair_folders(blurriest_dir, less_blurry_dir)
    shared = DeblurLevels([], source.planes) if source.needs_stack else source.levels()
    levels = dict.fromkeys((pair[0] for pair in pairs), shared)
    alphas: Levels = shared.alphas
    targets: dict[str, float] | None = None
    if source.needs_stack:
        levels = {name: stack_levels(source, path, channel=channel, series=series, axes=axes)
                  for name, path, _ in pairs}
        alphas = {name: found.alphas for name, found in levels.items()}
        targets = {name: found.target for name, found in levels.items() if found.target is not None}
    written = (run or predict_folders)(checkpoint, config, pairs, alphas, output, "deblur", force=force, z=z,
                                       channel=channel, series=series, progress_enabled=progress_enabled,
                                       planes=shared.planes, target=shared.target, targets=targets, axes=axes)
    return written, pairs, unpaired, levels
