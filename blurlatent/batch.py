"""File and folder jobs for blur and deblur: reading pairs, pairing folders, naming and writing outputs.

Every output path is checked before the model is loaded (``files.check_outputs``): an existing file
(without ``force``), an output that is an input (even with ``force``), two levels that would share a file
name, or a PNG of pixels PNG cannot hold stop a job with nothing written. The files of one job are
written all or nothing (``files.staged_files``): a pair that fails in folder mode leaves no output of any
pair, so the corrected rerun needs no ``force``. The images go through one ``Predictor``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .bbbc006 import parse_bbbc_name, plane_from_path
from .config import InferenceConfig
from .errors import UsageError
from .files import check_outputs, staged_files
from .imageio import IMAGE_SUFFIXES, read_image, write_image
from .inference import Predictor
from .latent import alpha_from_planes, check_blur_alpha, check_deblur_alpha, steps_to_alphas
from .progress import progress_bar


def read_pair(path_a, path_b) -> tuple[np.ndarray, np.ndarray]:
    """Read two grayscale images of one shape; UsageError names the file at fault."""
    a, b = read_image(path_a), read_image(path_b)
    if a.shape != b.shape:
        raise UsageError(f"{path_b}: image is {b.shape[1]}x{b.shape[0]} but {path_a} is {a.shape[1]}x{a.shape[0]}; "
                         "pass two planes of one field")
    return a, b


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
    raise UsageError(f"alpha {twice:g} is given twice and each level gets its own file; give each level once")


def level_paths(out, alphas: Sequence[float]) -> list[Path]:
    """Where K levels go: one (multi-page) TIFF, or numbered PNGs ``stem_a0.250.png`` for a .png with K > 1."""
    out = Path(out)
    if out.suffix.lower() not in (".tif", ".tiff", ".png"):
        raise UsageError(f"{out}: output must end in .tif, .tiff or .png")
    if out.suffix.lower() == ".png" and len(alphas) > 1:
        return [out.with_name(f"{out.stem}_{name}.png") for name in level_names(alphas)]
    return [out]


def check_png(paths: Sequence[Path], dtype) -> None:
    """UsageError when a .png output would get pixels PNG cannot hold (it holds 8- and 16-bit unsigned)."""
    png = next((p for p in paths if p.suffix.lower() == ".png"), None)
    if png is not None and np.dtype(dtype) not in (np.uint8, np.uint16):
        raise UsageError(f"{png}: PNG holds 8- or 16-bit unsigned pixels, not {np.dtype(dtype)}; write a .tif, or "
                         "pass out_dtype uint16")


def write_levels(out, levels: np.ndarray, alphas: Sequence[float], force: bool = False) -> list[Path]:
    """Write [K, H, W] levels as ``level_paths`` says (K pages in one TIFF), all or nothing; returns the paths."""
    paths = level_paths(out, alphas)
    check_outputs(paths, force)
    check_png(paths, levels.dtype)
    with staged_files() as stage:
        if len(paths) == 1:
            write_image(stage(paths[0]), levels[0] if len(levels) == 1 else levels)
        else:
            for p, level in zip(paths, levels):
                write_image(stage(p), level)
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


def field_name(path: Path) -> str:
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
            name = field_name(p)
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


def folder_outputs(out_dir, pairs, alphas: Sequence[float], suffix: str = ".tif") -> list[list[Path]]:
    """Per pair, one file per level: ``OUT/{field}_a0.250.tif`` (``level_names``)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a folder; folder mode writes into a folder")
    names = level_names(alphas)
    return [[out_dir / f"{name}_{tag}{suffix}" for tag in names] for name, _, _ in pairs]


def check_folder_outputs(out_dir, pairs, alphas: Sequence[float], force: bool) -> list[list[Path]]:
    """``folder_outputs``, each checked (``files.check_outputs``: none may be an input, or exist without ``force``)."""
    outputs = folder_outputs(out_dir, pairs, alphas)
    check_outputs([p for paths in outputs for p in paths], force, [f for _, a, b in pairs for f in (a, b)])
    return outputs


def blur_folder(predictor: Predictor, pairs: Sequence[tuple[str, Path, Path]], alphas: Sequence[float], out_dir, *,
                force: bool = False, extrapolate: bool = False,
                progress: Callable[[int], None] | None = None) -> list[Path]:
    """``predictor.blur`` every pair from ``pair_folders`` at every α, writing ``folder_outputs``; returns the paths.

    All or nothing: every output path is checked before anything is written, and the images are kept in
    temps until every pair is done, so a pair that fails (or Ctrl-C) leaves no output of any pair.
    ``progress(n)`` is called after each batch of n pairs.
    """
    alphas = [check_blur_alpha(a, extrapolate) for a in alphas]
    outputs = check_folder_outputs(out_dir, pairs, alphas, force)
    written = []
    with staged_files() as stage:
        for batch in same_shape_batches(list(zip(pairs, outputs)), predictor.config.batch_size):
            (_, sharp0, blurry0), _ = batch[0][1]
            levels = predictor.run_pairs([im[0] for im, _ in batch], [im[1] for im, _ in batch], alphas, "blur",
                                         names=(str(sharp0), str(blurry0)))
            for (_, (_, paths)), stack in zip(batch, levels):
                for p, level in zip(paths, stack):
                    write_image(stage(p), level)
                    written.append(p)
            if progress is not None:
                progress(len(batch))
    return written


def same_shape_batches(jobs: list, size: int):
    """Read the pairs of ``jobs`` [((name, a, b), outputs), ...] and yield lists of up to ``size``
    ((image_a, image_b), job) of one image shape, in order: pairs in a batch go through the model together."""
    batch: list = []
    for job in jobs:
        images = read_pair(job[0][1], job[0][2])
        if batch and (len(batch) >= max(1, size) or images[0].shape != batch[0][0][0].shape):
            yield batch
            batch = []
        batch.append((images, job))
    if batch:
        yield batch


def planes_from_paths(path_a, path_b) -> tuple[int, int] | None:
    """Focal planes of two BBBC006 files inside ``..._z_XX`` folders, or None when either is not."""
    pa, pb = plane_from_path(path_a), plane_from_path(path_b)
    return None if pa is None or pb is None else (pa, pb)


# --- the jobs the command line runs ------------------------------------------------------------------


def blur_alphas(alphas: Sequence[float] | None, steps: int | None, extrapolate: bool = False) -> list[float]:
    """The blur levels from a list of α or from ``steps`` evenly spaced ones (exactly one of the two)."""
    if bool(alphas) == (steps is not None):
        raise UsageError("levels: give alpha (one or more values) or steps N, one of the two")
    return [check_blur_alpha(a, extrapolate) for a in alphas] if alphas else steps_to_alphas(steps)


def deblur_alphas(alpha: float | None, planes: tuple[float, float] | None, target: float, sweep: bool,
                  paths: tuple[Path, Path] | None = None) -> tuple[list[float], tuple[float, float] | None]:
    """Eq. 3's α list and the planes it came from: from ``alpha``, from ``planes`` toward ``target``, or
    from the BBBC006_v1_images_z_XX folders of ``paths``; ``sweep`` adds 1/8 … 7/8."""
    if alpha is not None and planes is not None:
        raise UsageError("alpha or planes: give one, not both")
    if alpha is None and planes is None and paths is not None:
        planes = planes_from_paths(*paths)
        if planes is None and not sweep:
            raise UsageError(f"alpha or planes: give one; the planes of {paths[0]} and {paths[1]} are not in "
                             "BBBC006_v1_images_z_XX folder names")
    alphas = []
    if alpha is not None:
        alphas = [check_deblur_alpha(alpha, warn=False)]  # Predictor.deblur warns once
    elif planes is not None:
        alphas = [alpha_from_planes(planes[0], planes[1], target)]
    if sweep:
        alphas = sorted(set(alphas) | set(steps_to_alphas(7)))
    return alphas, planes


def run_files(checkpoint, config: InferenceConfig, first: Path, second: Path, alphas: Sequence[float], output: Path,
              rule: str, force: bool = False, extrapolate: bool = False) -> list[Path]:
    """Blur (``rule="blur"``: first = sharp) or deblur (first = blurriest) two files into ``output``.

    Inputs and every output path (not an input, not existing without ``force``, a pixel type the format
    holds) are checked before the model is loaded; returns the paths written.
    """
    a, b = read_pair(first, second)
    paths = level_paths(output, alphas)
    check_outputs(paths, force, [first, second])
    check_png(paths, config.out_dtype or np.result_type(a.dtype, b.dtype))
    predictor = Predictor.from_checkpoint(checkpoint, config)
    if rule == "blur":
        levels = predictor.blur(a, b, list(alphas), extrapolate=extrapolate)
    else:
        levels = predictor.deblur(a, b, list(alphas))
    return write_levels(output, levels, alphas, force=force)


def blur_folders(checkpoint, config: InferenceConfig, sharp_dir: Path, blurry_dir: Path, alphas: Sequence[float],
                 output: Path, force: bool = False, extrapolate: bool = False, progress_enabled: bool = True):
    """Blur every pair of two folders into the folder ``output``: (paths written, pairs, unpaired files)."""
    pairs, unpaired = pair_folders(sharp_dir, blurry_dir)
    check_folder_outputs(output, pairs, alphas, force)
    predictor = Predictor.from_checkpoint(checkpoint, config)
    with progress_bar("blur", len(pairs), progress_enabled) as advance:
        written = blur_folder(predictor, pairs, alphas, output, force=force, extrapolate=extrapolate, progress=advance)
    return written, pairs, unpaired
