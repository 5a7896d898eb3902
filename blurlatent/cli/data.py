"""Data commands: synth (synthetic BBBC006-like stacks) and prepare (a store for training)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape  # paths and field names are the user's: "[bold]" must print, "[/b]" must not raise

from blurlatent.bbbc006 import format_planes
from blurlatent.cli.common import app, at_least, split_list
from blurlatent.cli.errors import OneLineCommand, console, library_names
from blurlatent.config import Normalization, PrepareConfig, SynthConfig, SynthOptics, TestCrops

FOCUS_SHOWN = 8  # stacks whose focus plane prepare's summary line names

# === data: synth, prepare ===================================================================

OPTICS: dict[str, Any] = {"rich_help_panel": "Optics (default: the calibrated BBBC006 microscope)"}


@app.command("synth", cls=OneLineCommand)
@library_names({"wavelength_um": "wavelength", "z_step_um": "z_step", "optics_mode": "optics"})  # Optics': µm
def synth_cli(
    out: Path = typer.Argument(..., help="Output folder; gets BBBC006_v1_images_z_00/ … z_33/ like the real download."),
    fields: int = typer.Option(SynthConfig.fields, "--fields", help="Number of fields (a01_s1, a01_s2, a02_s1, …)."),
    channels: str = typer.Option(",".join(SynthConfig.channels), "--channels",
                                 help="w1 (nuclei), w2 (actin), or both."),
    planes: str = typer.Option(format_planes(SynthConfig.planes), "--planes",
                               help="Planes START:STOP[:STEP], stop inclusive; z16 is in focus."),
    size: str = typer.Option("x".join(map(str, SynthConfig.size)), "--size", help="Image size WIDTHxHEIGHT."),
    seed: int = typer.Option(SynthConfig.seed, "--seed", help="Random seed; the same seed gives the same images."),
    workers: int = typer.Option(SynthConfig.workers, "--workers", callback=lambda v: at_least(v, 0, "processes"),
                                 help="Processes rendering fields in parallel."),
    force: bool = typer.Option(False, "--force", help="Replace an existing synth output folder."),
    optics: SynthOptics = typer.Option(SynthConfig.optics, "--optics",
        help="fixed: the calibrated microscope and scene for every field; random: each field draws its own optics, "
             "camera, background and scene from documented ranges (training data; synth.json records them).",
        **OPTICS),
    na: float | None = typer.Option(None, "--na", help="Numerical aperture of the dry objective, 0.05-0.95 "
                                       "(default: the calibrated 0.45); higher: a wider defocus disk.", **OPTICS),
    wavelength: float | None = typer.Option(None, "--wavelength", help="Emission wavelength in µm for every "
                                               "channel, 0.3-1.0 (default: the dyes', w1 0.46, w2 0.57).", **OPTICS),
    z_step: float | None = typer.Option(None, "--z-step", help="µm between planes (defocus per plane), 0.1-5 "
                                           "(default: BBBC006's 2).", **OPTICS),
    read_noise: float | None = typer.Option(None, "--read-noise", help="Camera read noise in ADU, 0-100 "
                                               "(default: the calibrated 1.4).", **OPTICS),
    gain: float | None = typer.Option(None, "--gain", help="Photon level as ADU per photoelectron, 0.01-10 "
                                         "(default: the calibrated 0.39); higher: fewer photons, more shot noise.",
                                         **OPTICS),
    background: float | None = typer.Option(None, "--background", help="Extra background in ADU on every "
                                               "plane, 0-3000 (default: 0, i.e. each field's 8-18 ADU and haze).",
                                               **OPTICS),
):
    """Write synthetic widefield z-stacks (nuclei and actin, defocus, camera noise) in the BBBC006v1 layout.

    The optics flags image the same cells through another microscope (a test set unlike the training data).
    """
    from blurlatent.bbbc006 import parse_planes
    from blurlatent.synth.generator import parse_size, synthesize  # numpy, scipy, tifffile: not for --help
    from blurlatent.synth.optics import Optics as FixedOptics

    given = {"na": na, "wavelength_um": wavelength, "z_step_um": z_step, "read_noise": read_noise, "gain": gain,
             "background": background}
    result = synthesize(
        out, fields=fields, channels=split_list(channels), planes=parse_planes(planes), size=parse_size(size),
        seed=seed, force=force, progress=sys.stderr.isatty(), workers=workers,
        optics=FixedOptics(**{k: v for k, v in given.items() if v is not None}), optics_mode=optics,
    )
    console.print(
        f"[green]synth[/green] {result.files} TIFFs: {result.fields} fields × {len(result.planes)} planes "
        f"({format_planes(result.planes)}) × {escape(','.join(result.channels))} → {escape(str(result.path))} in "
        f"{result.seconds:.1f} s",
        highlight=False, soft_wrap=True,
    )


@app.command("prepare", cls=OneLineCommand)
def prepare_cli(
    src: Path = typer.Argument(...,
        help="Folder with BBBC006_v1_images_z_XX/ folders or .zip files, or with one z-stack file per field (TIFF, "
             "OME-TIFF, ImageJ; ZYX or CZYX; any names)."),
    out: Path = typer.Argument(..., help="Output store folder."),
    focus: str | None = typer.Option(None, "--focus", metavar="auto|N",
        help="Z-stack folders only: auto (each stack's sharpest plane, by normalized variance) or N (plane N of "
             "every stack, 0 = first). BBBC006 folders are in focus at z16."),
    channels: str | None = typer.Option(None, "--channels",
        help="Channels to prepare, e.g. w1,w2 (default). Z-stacks: w1 = the file's first channel, w2 the second; "
             "default all."),
    planes: str | None = typer.Option(None, "--planes",
        help="Planes START:STOP[:STEP], stop inclusive (the paper: 0:16:2, the default). Z-stacks: relative to "
             "the focus, one side: -16:0:2 (default; before focus) or 0:16:2 (after); stored as z16-|offset|."),
    crop: int = typer.Option(PrepareConfig.crop, "--crop", help="Crop size in pixels."),
    split: str = typer.Option(":".join(f"{r:g}" for r in PrepareConfig.split), "--split",
        help="TRAIN:VAL:TEST ratios; fields sorted by name go test, val, train."),
    normalize: Normalization = typer.Option(PrepareConfig.normalize, "--normalize",
        help="16→8 bit: minmax (per image, the paper), stack (one scale per field from the in-focus plane) or "
             "percentile."),
    test_crops: TestCrops = typer.Option(PrepareConfig.test_crops, "--test-crops",
        help="Test crops: center (one) or ten (as train)."),
    workers: int = typer.Option(PrepareConfig.workers, "--workers", callback=lambda v: at_least(v, 0, "processes"),
                                 help="Decoding processes."),
    strict: bool = typer.Option(False, "--strict",
        help="Fail on incomplete fields (or stacks without the planes around their focus) instead of skipping them."),
    force: bool = typer.Option(False, "--force", help="Replace an existing store made from other inputs or options."),
):
    """Match fields across planes (or find each z-stack's focus), split, scale to 8 bit and crop into a
    memory-mapped store for training."""
    from blurlatent.prepare.builder import parse_split, prepare  # numpy, scipy: not for --help

    result = prepare(
        src, out, channels=split_list(channels) if channels is not None else None, planes=planes, crop=crop,
        split=parse_split(split), normalize=normalize,
        test_crops=test_crops, workers=workers, strict=strict, force=force, progress=sys.stderr.isatty(),
        focus=focus,
    )
    counts = ", ".join(f"{s} {result.counts[s]} fields / {result.crops[s]} crops" for s in ("train", "val", "test"))
    state = "up to date" if result.up_to_date else f"written in {result.seconds:.1f} s"
    skipped = f"; {len(result.skipped)} incomplete fields skipped" if result.skipped else ""
    shown = [f"{name} z{z}" for name, z in list(result.focus.items())[:FOCUS_SHOWN]]
    more = f", … {len(result.focus) - FOCUS_SHOWN} more" if len(result.focus) > FOCUS_SHOWN else ""
    focus_note = f"; focus ({focus}) {', '.join(shown)}{more} (manifest.json: focus_planes)" if result.focus else ""
    console.print(f"[green]prepare[/green] {escape(str(result.path))}: {state}; planes {format_planes(result.planes)}"
                  f"{escape(focus_note)}; {counts}{skipped}",
                  highlight=False, soft_wrap=True)
