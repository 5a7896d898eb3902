"""Inference commands: blur (Eq. 2) and deblur (Eq. 3) on files, z-stacks and folders."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from blurlatent.cli.common import app, at_least
from blurlatent.cli.errors import OneLineCommand, console
from blurlatent.config import InferenceConfig, Intensity, OutDtype, PlateConfig, Precision, Rescale

# === inference: blur, deblur =================================================================

def _inference_config(device: str, tile: int | None, out_dtype: OutDtype | None, intensity: Intensity,
                      precision: Precision, batch_size: int, pixel_size: float | None = None,
                      rescale: Rescale = InferenceConfig.rescale) -> InferenceConfig:
    return InferenceConfig(intensity=intensity, tile=tile, precision=precision, batch_size=batch_size,
                           out_dtype=out_dtype, device=device, rescale=rescale, pixel_size=pixel_size).check()


def _report(paths, alphas) -> None:
    pages = ", ".join(f"{a:.4g}" for a in alphas)
    if len(paths) == 1:
        where = f"{len(alphas)} pages, " if len(alphas) > 1 else ""
        typer.echo(f"wrote {paths[0]} ({where}alpha = {pages})")
    else:
        typer.echo(f"wrote {len(paths)} files ({paths[0].name} ... {paths[-1].name}; alpha = {pages})")


# Options blur and deblur share, declared once.
DEVICE_OPTION = typer.Option(InferenceConfig.device, "--device", help="auto, cpu, cuda, cuda:N or mps.")
TILE_OPTION = typer.Option(
    None, "--tile", help="Tile size in px for large images (0 = whole; default: whole up to 2048x2048, else 512).")
OUT_DTYPE_OPTION = typer.Option(None, "--out-dtype", help="Output pixel type (default: the input's).")
PRECISION_OPTION = typer.Option(InferenceConfig.precision, "--precision", help="auto (= fp32), fp32, or opt-in "
                                "autocast bf16/fp16 (measured off fp32 by up to 0.05 and 0.009 of the range).")
CHANNEL_OPTION = typer.Option(None, "--channel", help="Channel of a multi-channel file: index or name; all: every "
                              "channel (same planes and alpha) into one multi-channel .tif/.ome.tif.")
AXES_OPTION = typer.Option(None, "--axes", help="Axes of a file that does not say them (a plain multi-page TIFF), "
                           "one letter per dimension: e.g. ZYX, CZYX, ZCYX.")
Z_HELP = "Two planes of a z-stack, {}, e.g. --z {}"
SERIES_OPTION = typer.Option(None, "--series", help="Image series of a file holding several (0, 1, ...).")
CHECKPOINT_OPTION = typer.Option(None, "--checkpoint", "-c",
                                 help="A checkpoint written by `blurlatent train` (default: the built-in model).")
MODEL_OPTION = typer.Option(None, "--model", "-m", help="A built-in model instead of --checkpoint: w1 (nuclei, the "
                            "default) or w2 (actin); `blurlatent models` lists them.")
PIXEL_SIZE_OPTION = typer.Option(None, "--pixel-size", metavar="UM", help="The inputs' pixel size in µm, over what "
                                 "their files say (OME PhysicalSizeX, ImageJ resolution).")
WORKERS_OPTION = typer.Option(PlateConfig.workers, "--workers", callback=lambda v: at_least(v, 1, "processes"),
                              help="Plates: local processes, one field each at a time (blurlatent[dask]).")
SCHEDULER_OPTION = typer.Option(None, "--scheduler", metavar="tcp://HOST:8786", help="Plates: run on this Dask "
                                "cluster; its workers must see the plate, the output and the model at these paths.")
RESCALE_OPTION = typer.Option(InferenceConfig.rescale, "--rescale", help="auto: resample inputs to the pixel size "
                              "the model was trained at (the built-in: 0.645 µm) and the output back, said in the "
                              "log; off: use them as they are.")


def _check_inputs(files, folders, *, channel: str | None, axes: str | None) -> str | None:
    """What can be checked of a job's inputs before the model line and before torch is imported, so a typo is
    answered at once: each input path exists, --axes names axes, --channel all is given one file or stack.
    Returns --axes upper-cased."""
    from blurlatent.errors import UsageError

    for path in files:
        if path is not None and not path.exists():
            raise UsageError(f"{path}: file not found; check the path")
    for folder in folders:
        if folder is not None and not folder.exists():
            raise UsageError(f"{folder}: folder not found; check the path")
    from blurlatent.files.axes import check_axes_letters
    from blurlatent.inference.inputs import every_channel

    if every_channel(channel) and any(f is not None for f in folders):
        raise UsageError("{channel} all writes one multi-channel output of one file or stack; folder mode takes one "
                         "channel: pass {channel} as an index or a name", "channel")
    return None if axes is None else check_axes_letters(axes)


def _run_files(checkpoint, config, first: Path, second: Path | None, alphas, output: Path, rule: str, *,
               channel: str | None, **options) -> list[Path]:
    """``jobs.run_files`` on one channel, or ``channels.run_channels`` on every one (--channel all)."""
    from blurlatent.inference.inputs import every_channel

    if every_channel(channel):
        from blurlatent.inference.channels import run_channels

        return run_channels(checkpoint, config, first, second, alphas, output, rule,
                            progress_enabled=sys.stderr.isatty(), **options)
    from blurlatent.inference.stream_jobs import should_stream, stream_files

    where = {k: options.get(k) for k in ("z", "series", "axes")}
    if should_stream(first, second, len(alphas), config, channel=channel, **where):  # huge planes: block by block
        return stream_files(checkpoint, config, first, second, alphas, output, rule, channel=channel,
                            progress_enabled=sys.stderr.isatty(), **options)
    from blurlatent.inference.jobs import run_files

    return run_files(checkpoint, config, first, second, alphas, output, rule, channel=channel,
                     progress_enabled=sys.stderr.isatty(), **options)


def _checkpoint(checkpoint: Path | None, model: str | None) -> Path:
    """--checkpoint, else the built-in model (its checksum verified), said in one line on stderr."""
    from blurlatent.inference.builtin import resolve_checkpoint

    path, note = resolve_checkpoint(checkpoint, model)
    if note:
        console.print(note, highlight=False, soft_wrap=True, markup=False)
    return path


def _alphas_line(alphas) -> str:
    return ", ".join(f"{a:.4g}" for a in alphas)


def _report_folder(written, pairs, unpaired, alphas, output, what: str = "pairs") -> None:
    typer.echo(f"wrote {len(written)} images for {len(pairs)} {what} into {output} (alpha = {_alphas_line(alphas)})")
    if unpaired:
        typer.echo(f"skipped {len(unpaired)} file(s) without a partner, e.g. {unpaired[0]}")


def _plate_input(path: Path | None, second: Path | None, z, channel: str | None, workers: int,
                 scheduler: str | None) -> bool:
    """Whether the job is a plate's (``path`` an OME-Zarr HCS plate), checked before torch: its fields are stacks
    (--z, no second file), one channel, and dask is installed. --workers/--scheduler serve plates only."""
    from blurlatent.errors import UsageError
    from blurlatent.files.plates import is_plate

    if path is None or not is_plate(path):
        if scheduler is not None or workers != PlateConfig.workers:
            raise UsageError("{workers} and {scheduler} spread the fields of an OME-Zarr plate over processes (or "
                             "deblur's --stack-dir stacks); pass a plate, or leave them out", "workers", "scheduler")
        return False
    if second is not None or z is None:
        raise UsageError(f"{path}: is a plate, whose fields are z-stacks; pass it alone with {{z=P1 P2}}", "z")
    from blurlatent.inference.inputs import every_channel

    if every_channel(channel):
        raise UsageError("{channel} all writes one multi-channel output of one stack; a plate takes one channel: "
                         "pass {channel} as an index or a name", "channel")
    from blurlatent.inference.plates import check_scheduler, import_dask

    import_dask(path, check_scheduler(scheduler))
    return True


def _report_plate(checkpoint, config, plate: Path | None, output: Path, rule: str, **options) -> None:
    """``plates.run_plate`` (the model line first), then where α came from per field (a deblur's) and what was
    written."""
    from blurlatent.inference.plates import run_plate

    assert plate is not None  # _plate_input said it is one
    run = run_plate(checkpoint, config, plate, output, rule, progress_enabled=sys.stderr.isatty(), **options)
    if rule == "deblur":
        _echo_lines(_alpha_lines({result.name: result.levels for result in run.results}))
    seconds = run.seconds
    typer.echo(f"wrote {run.output} ({len(run.results)} fields of {run.plate.path.name} in {seconds:.1f} s, "
               f"{len(run.results) / max(seconds, 1e-9):.2f} fields/s)")


@app.command("blur", cls=OneLineCommand)
def blur_command(
    sharp: Path | None = typer.Argument(None, help="The sharper image x1 (TIFF/PNG, grayscale), or a z-stack "
                                           "(TIFF, OME-TIFF, OME-Zarr) with --z."),
    blurry: Path | None = typer.Argument(None, help="The blurrier image x2 of the same field (not with --z)."),
    checkpoint: Path | None = CHECKPOINT_OPTION,
    model: str | None = MODEL_OPTION,
    alpha: list[float] | None = typer.Option(None, "--alpha", "-a",
        help="Blur level: 1 = sharp, 0 = blurry; repeat for several."),
    steps: int | None = typer.Option(None, "--steps",
        help="N evenly spaced levels alpha = 1/(N+1) .. N/(N+1) (7: the paper's Fig. 2)."),
    output: Path = typer.Option(..., "--output", "-o",
        help="Output .tif (several levels: one page each) or .png (numbered files); a folder in folder mode."),
    sharp_dir: Path | None = typer.Option(None, "--sharp-dir", help="Folder mode: folder of sharper images. "
        "All or nothing: if any pair fails, no output is written, so the rerun needs no --force."),
    blurry_dir: Path | None = typer.Option(None, "--blurry-dir",
        help="Folder mode: folder of blurrier images, paired by BBBC006 field or file name."),
    z: tuple[int, int] | None = typer.Option(None, "--z", metavar="P1 P2",
        help=Z_HELP.format("of the stack SHARP, sharper first", "16 0.")),
    channel: str | None = CHANNEL_OPTION,
    series: int | None = SERIES_OPTION,
    axes: str | None = AXES_OPTION,
    extrapolate: bool = typer.Option(False, "--extrapolate", help="Allow alpha outside [0, 1]."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
    device: str = DEVICE_OPTION,
    tile: int | None = TILE_OPTION,
    out_dtype: OutDtype | None = OUT_DTYPE_OPTION,
    intensity: Intensity = typer.Option(InferenceConfig.intensity, "--intensity",
        help="conserve: keep the total signal above background; minmax: map to the inputs' range."),
    precision: Precision = PRECISION_OPTION,
    batch_size: int = typer.Option(InferenceConfig.batch_size, "--batch-size",
                                   help="Images per forward pass (pairs in folder mode)."),
    pixel_size: float | None = PIXEL_SIZE_OPTION,
    rescale: Rescale = RESCALE_OPTION,
    workers: int = WORKERS_OPTION,
    scheduler: str | None = SCHEDULER_OPTION,
):
    """Synthesize defocus blur between two planes of one field (Eq. 2): G(alpha E(sharp) + (1 - alpha) E(blurry))."""
    from blurlatent.errors import UsageError

    config = _inference_config(device, tile, out_dtype, intensity, precision, batch_size, pixel_size, rescale)
    folder_mode = sharp_dir is not None or blurry_dir is not None
    if folder_mode and (sharp_dir is None or blurry_dir is None or sharp is not None or blurry is not None):
        raise UsageError("folder mode needs both --sharp-dir and --blurry-dir and no SHARP/BLURRY files")
    if not folder_mode and (sharp is None or (blurry is None and z is None)):
        raise UsageError("give SHARP and BLURRY image files, a z-stack SHARP with --z P1 P2, or --sharp-dir and "
                         "--blurry-dir")
    axes = _check_inputs((sharp, blurry), (sharp_dir, blurry_dir), channel=channel, axes=axes)
    from blurlatent.inference.alphas import blur_alphas  # numpy, scipy: after the paths are checked

    alphas = blur_alphas(alpha, steps, extrapolate)
    if _plate_input(sharp, blurry, z, channel, workers, scheduler):
        return _report_plate(_checkpoint(checkpoint, model), config, sharp, output, "blur", z=z, alphas=alphas,
                             channel=channel, force=force, extrapolate=extrapolate, workers=workers,
                             scheduler=scheduler)
    checkpoint = _checkpoint(checkpoint, model)  # the model line: once the inputs are checked
    if folder_mode:
        from blurlatent.inference.jobs import blur_folders

        assert sharp_dir is not None and blurry_dir is not None  # checked above
        written, pairs, unpaired = blur_folders(checkpoint, config, sharp_dir, blurry_dir, alphas, output,
                                                force=force, extrapolate=extrapolate,
                                                progress_enabled=sys.stderr.isatty(),
                                                channel=channel, series=series, z=z, axes=axes)
        _report_folder(written, pairs, unpaired, alphas, output)
        return
    assert sharp is not None  # checked above: the file modes have SHARP
    _report(_run_files(checkpoint, config, sharp, blurry, alphas, output, "blur", channel=channel, force=force,
                       extrapolate=extrapolate, z=z, series=series, axes=axes), alphas)


@app.command("deblur", cls=OneLineCommand)
def deblur_command(
    blurriest: Path | None = typer.Argument(None, help="The most defocused image (z1), e.g. plane 0; or a z-stack "
                                               "(TIFF, OME-TIFF, OME-Zarr) with --z."),
    less_blurry: Path | None = typer.Argument(None, help="A less defocused image of the same field (z3'), e.g. "
                                                 "plane 8 (not with --z)."),
    checkpoint: Path | None = CHECKPOINT_OPTION,
    model: str | None = MODEL_OPTION,
    alpha: float | None = typer.Option(None, "--alpha", "-a",
        help="Eq. 3's alpha = (target - less_blurry) / (target - blurriest), 0 <= alpha < 1."),
    planes: tuple[float, float] | None = typer.Option(None, "--planes", metavar="P1 P2",
        help="Focal planes of BLURRIEST and LESS_BLURRY, e.g. --planes 0 8."),
    z: tuple[int, int] | None = typer.Option(None, "--z", metavar="P1 P2",
        help=Z_HELP.format("blurriest first", "0 8 (alpha from them and --target).")),
    target: str | None = typer.Option(None, "--target", metavar="P|auto", help="The in-focus plane alpha leads "
        "to: a plane number, or auto (the default for --z): the focus found in each stack, printed. Two files with "
        "--planes need it (BBBC006 folder names: 16)."),
    sweep: bool = typer.Option(False, "--sweep",
        help="Also write alpha = 1/8 .. 7/8, one page each, to see which alpha is best."),
    output: Path = typer.Option(..., "--output", "-o",
        help="Output .tif/.ome.tif (several alphas: one labelled page each), .png, or .ome.zarr; a folder in folder "
             "mode."),
    blurriest_dir: Path | None = typer.Option(None, "--blurriest-dir", help="Folder mode: folder of the most "
        "defocused images. All or nothing: if any field fails, no output is written."),
    less_blurry_dir: Path | None = typer.Option(None, "--less-blurry-dir",
        help="Folder mode: folder of less defocused images, paired by BBBC006 field or file name."),
    stack_dir: Path | None = typer.Option(None, "--stack-dir",
        help="Folder mode: a folder of z-stacks, one output each from planes --z P1 P2."),
    channel: str | None = CHANNEL_OPTION,
    series: int | None = SERIES_OPTION,
    axes: str | None = AXES_OPTION,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
    device: str = DEVICE_OPTION,
    tile: int | None = TILE_OPTION,
    out_dtype: OutDtype | None = OUT_DTYPE_OPTION,
    intensity: Intensity = typer.Option(InferenceConfig.intensity, "--intensity",
        help="conserve: keep the less-blurry input's total signal above background; minmax: its range."),
    precision: Precision = PRECISION_OPTION,
    batch_size: int = typer.Option(InferenceConfig.batch_size, "--batch-size",
                                   help="Images per forward pass (fields in folder mode)."),
    pixel_size: float | None = PIXEL_SIZE_OPTION,
    rescale: Rescale = RESCALE_OPTION,
    workers: int = WORKERS_OPTION,
    scheduler: str | None = SCHEDULER_OPTION,
):
    """Recover the in-focus image from two defocused planes of one field (Eq. 3).

    alpha comes from --alpha; from the stack planes --z P1 P2 toward --target (default auto: the focus found in the
    stack, printed); from --planes P1 P2 toward --target; or from the BBBC006_v1_images_z_XX folder names (toward 16).
    """
    config = _inference_config(device, tile, out_dtype, intensity, precision, batch_size, pixel_size, rescale)
    folder_mode = _deblur_mode(blurriest, less_blurry, blurriest_dir, less_blurry_dir, stack_dir, z)
    axes = _check_inputs((blurriest, less_blurry), (blurriest_dir, less_blurry_dir, stack_dir), channel=channel,
                         axes=axes)
    from blurlatent.inference.alphas import alpha_source, stack_levels  # numpy, scipy: after the paths are checked
    from blurlatent.inference.inputs import every_channel
    first, second = blurriest_dir or blurriest, less_blurry_dir or less_blurry
    paths = (first, second) if first is not None and second is not None else None
    source = alpha_source(alpha, planes, target, sweep, paths=paths, z=z)  # contradictions: before any reading
    graph = _stack_graph(stack_dir, workers, scheduler) if folder_mode else None  # None: in this process
    if not folder_mode and _plate_input(blurriest, less_blurry, z, channel, workers, scheduler):
        return _report_plate(_checkpoint(checkpoint, model), config, blurriest, output, "deblur", z=z, source=source,
                             channel=channel, force=force, workers=workers, scheduler=scheduler)
    checkpoint = _checkpoint(checkpoint, model)  # the model line: once the inputs are checked
    if folder_mode:
        from blurlatent.inference.jobs import deblur_folders
        written, pairs, unpaired, found = deblur_folders(
            checkpoint, config, source, output, blurriest_dir=blurriest_dir, less_blurry_dir=less_blurry_dir,
            stack_dir=stack_dir, z=z, channel=channel, series=series, force=force,
            progress_enabled=sys.stderr.isatty(), axes=axes, run=graph)
        _echo_lines(_alpha_lines(found))
        _report_folder(written, pairs, unpaired, sorted({a for levels in found.values() for a in levels.alphas}),
                       output, "stacks" if stack_dir is not None else "fields")
        return
    assert blurriest is not None  # checked above: the file modes have BLURRIEST
    levels = stack_levels(source, blurriest, channel=0 if every_channel(channel) else channel, series=series,
                          axes=axes)  # z, the target (--channel all: the first channel's focus), then alpha
    written = _run_files(checkpoint, config, blurriest, less_blurry, levels.alphas, output, "deblur", channel=channel,
                         force=force, z=z, series=series, planes=levels.planes, target=levels.target, axes=axes)
    _echo_lines(levels.lines())
    _report(written, levels.alphas)


def _stack_graph(stack_dir: Path | None, workers: int, scheduler: str | None):
    """With --workers/--scheduler, what runs a folder of stacks on Dask (``stack_graph.predict_stack_graph``, dask
    and the address checked now); None without them. UsageError for them beside two folders of single planes."""
    from blurlatent.errors import UsageError

    if scheduler is None and workers == PlateConfig.workers:
        return None
    if stack_dir is None:
        raise UsageError("{workers} and {scheduler} spread the stacks of {stack_dir} (or a plate's fields) over "
                         "processes, not pairs of two folders; leave them out", "workers", "scheduler", "stack_dir")
    from functools import partial

    from blurlatent.inference.plates import check_scheduler, import_dask
    from blurlatent.inference.stack_graph import predict_stack_graph

    address = check_scheduler(scheduler)
    import_dask(stack_dir, address, "a folder of stacks on {workers}")
    return partial(predict_stack_graph, workers=workers, scheduler=address)


def _deblur_mode(blurriest, less_blurry, blurriest_dir, less_blurry_dir, stack_dir, z) -> bool:
    """Whether deblur runs in a folder mode; UsageError for files beside folders, or too few inputs."""
    from blurlatent.errors import UsageError

    folder_mode = any(f is not None for f in (blurriest_dir, less_blurry_dir, stack_dir))
    if folder_mode and (blurriest is not None or less_blurry is not None):
        raise UsageError("folder mode (--stack-dir, --blurriest-dir/--less-blurry-dir) takes no BLURRIEST/LESS_BLURRY "
                         "files")
    if not folder_mode and (blurriest is None or (less_blurry is None and z is None)):
        raise UsageError("give BLURRIEST and LESS_BLURRY image files, a z-stack BLURRIEST with --z P1 P2, or a folder "
                         "mode (--stack-dir, --blurriest-dir/--less-blurry-dir)")
    return folder_mode


def _alpha_lines(found) -> list[str]:
    """Where α came from: per stack where each has its own focus found, else once for the job."""
    lines = [f"{name}: {'; '.join(levels.lines())}" for name, levels in found.items() if levels.found_by]
    return lines or next(iter(found.values())).lines()


def _echo_lines(lines) -> None:
    for line in lines:  # after the job: an error stays the only line
        typer.echo(line)
