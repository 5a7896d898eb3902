"""Data commands: synth (synthetic BBBC006-like stacks) and prepare (a store for training)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..cli_errors import console, handle_errors
from .common import app, at_least, split_list

# === data: synth, prepare ===================================================================


@app.command("synth")
@handle_errors
def synth_cli(
    out: Path = typer.Argument(..., help="Output folder; gets BBBC006_v1_images_z_00/ … z_33/ like the real download."),
    fields: int = typer.Option(10, "--fields", help="Number of fields (a01_s1, a01_s2, a02_s1, …)."),
    channels: str = typer.Option("w1,w2", "--channels", help="w1 (nuclei), w2 (actin), or both."),
    planes: str = typer.Option("0:33", "--planes", help="Planes START:STOP[:STEP], stop inclusive; z16 is in focus."),
    size: str = typer.Option("696x520", "--size", help="Image size WIDTHxHEIGHT."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same images."),
    workers: int = typer.Option(2, "--workers", callback=lambda v: at_least(v, 0, "processes"),
                                 help="Processes rendering fields in parallel."),
    force: bool = typer.Option(False, "--force", help="Replace an existing synth output folder."),
):
    """Write synthetic widefield z-stacks (nuclei and actin, defocus, camera noise) in the BBBC006v1 layout."""
    from ..bbbc006 import format_planes, parse_planes
    from ..synth import parse_size, synthesize  # numpy, scipy, tifffile: not for --help

    result = synthesize(
        out, fields=fields, channels=split_list(channels), planes=parse_planes(planes), size=parse_size(size),
        seed=seed, force=force, progress=sys.stderr.isatty(), workers=workers,
    )
    console.print(
        f"[green]synth[/green] {result.files} TIFFs: {result.fields} fields × {len(result.planes)} planes "
        f"({format_planes(result.planes)}) × {','.join(result.channels)} → {result.path} in {result.seconds:.1f} s",
        highlight=False, soft_wrap=True,
    )


@app.command("prepare")
@handle_errors
def prepare_cli(
    src: Path = typer.Argument(...,
        help="Folder with BBBC006_v1_images_z_XX/ folders or the BBBC006_v1_images_z_XX.zip files."),
    out: Path = typer.Argument(..., help="Output store folder."),
    channels: str = typer.Option("w1,w2", "--channels", help="Channels to prepare, e.g. w1,w2."),
    planes: str = typer.Option("0:16:2", "--planes",
        help="Planes START:STOP[:STEP], stop inclusive (the paper: 0:16:2)."),
    crop: int = typer.Option(128, "--crop", help="Crop size in pixels."),
    split: str = typer.Option("70:10:20", "--split",
        help="TRAIN:VAL:TEST ratios; fields sorted by name go test, val, train."),
    normalize: str = typer.Option("minmax", "--normalize",
        help="16→8 bit: minmax (per image, the paper), stack (one scale per field from the in-focus plane) or "
             "percentile."),
    test_crops: str = typer.Option("center", "--test-crops", help="Test crops: center (one) or ten (as train)."),
    workers: int = typer.Option(2, "--workers", callback=lambda v: at_least(v, 0, "processes"),
                                 help="Decoding processes."),
    strict: bool = typer.Option(False, "--strict", help="Fail on incomplete fields instead of skipping them."),
    force: bool = typer.Option(False, "--force", help="Replace an existing store made from other inputs or options."),
):
    """Match fields across planes, split, scale to 8 bit and crop into a memory-mapped store for training."""
    from ..bbbc006 import format_planes, parse_planes
    from ..prepare import parse_split, prepare  # numpy, scipy: not for --help

    plane_list = parse_planes(planes)
    result = prepare(
        src, out, channels=split_list(channels), planes=plane_list, crop=crop, split=parse_split(split),
        normalize=normalize, test_crops=test_crops, workers=workers, strict=strict, force=force,
        progress=sys.stderr.isatty(),
    )
    counts = ", ".join(f"{s} {result.counts[s]} fields / {result.crops[s]} crops" for s in ("train", "val", "test"))
    state = "up to date" if result.up_to_date else f"written in {result.seconds:.1f} s"
    skipped = f"; {len(result.skipped)} incomplete fields skipped" if result.skipped else ""
    console.print(f"[green]prepare[/green] {result.path}: {state}; planes {format_planes(plane_list)}; "
                  f"{counts}{skipped}",
                  highlight=False, soft_wrap=True)
