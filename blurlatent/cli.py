"""The command line: Typer only. Each command parses, builds a config, calls one library function, prints.

Errors: library code raises ``UsageError``/``ValueError``/``FileNotFoundError`` (exit 2) or
``RuntimeFailure`` (exit 1); ``handle_errors`` turns them into one line on stderr, no traceback unless
``--debug``. Heavy imports (torch) happen inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import enum
import logging
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import typer
from rich.console import Console
from rich.markup import escape  # messages hold paths and lists: [w1] must print, not vanish as markup

from .cli_errors import FlagNamesHandler, OneLineGroup, console, flag_message, handle_errors, state
from .config import Intensity, OutDtype, Precision, choices

# Enums made from config's Literal options, so --help lists the choices and typer refuses others.
IntensityChoice = enum.Enum("IntensityChoice", {v: v for v in choices(Intensity)}, type=str)
PrecisionChoice = enum.Enum("PrecisionChoice", {v: v for v in choices(Precision)}, type=str)
OutDtypeChoice = enum.Enum("OutDtypeChoice", {v: v for v in choices(OutDtype)}, type=str)

app = typer.Typer(
    cls=OneLineGroup,
    help="Defocus blur synthesis and deblurring for microscopy by interpolation in an autoencoder's latent space.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
):
    state["debug"] = debug
    state.pop("flags", None)  # one command's flag names (train --gpus) must not leak into the next in-process call
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[FlagNamesHandler(console=console, show_path=False)],
        force=True,
    )


def _value(option):
    """The plain string of an Enum choice (typer passes Enums), or the value itself."""
    return getattr(option, "value", option)


def split_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def at_least(value: Optional[int], low: int, what: str) -> Optional[int]:
    """An option callback: ``value`` unless it is below ``low`` (a parse error naming the option, exit 2)."""
    if value is not None and value < low:
        raise typer.BadParameter(f"{value}: give {low} or more {what}")
    return value


def int_list(text: str, what: str) -> list[int]:
    """``8,16,32`` → [8, 16, 32]; UsageError naming ``what`` (a parameter, shown as its flag) otherwise."""
    from .errors import UsageError

    try:
        return [int(t) for t in split_list(text)]
    except ValueError:
        raise UsageError(f"{what} {text}: give comma-separated whole numbers, e.g. 8,16,32") from None


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
    from .bbbc006 import format_planes, parse_planes
    from .synth import parse_size, synthesize  # numpy, scipy, tifffile: not for --help

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
    from .bbbc006 import format_planes, parse_planes
    from .prepare import parse_split, prepare  # numpy, scipy: not for --help

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


# === train ===================================================================================


@app.command("train")
@handle_errors
def train_cli(
    store: Optional[Path] = typer.Argument(None,
        help="Prepared store folder (from `blurlatent prepare`); not needed with --resume or data.store in --config."),
    channel: Optional[str] = typer.Option(None, "--channel",
        help="Channel to train on: w1 (nuclei) or w2 (cell structure). Default w1."),
    reg: Optional[str] = typer.Option(None, "--reg",
        help="none (baseline AE), weak (Eq. 4) or strong (Eq. 5, fine-tunes --init). Default none."),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
        help="Run folder to create (config.yaml, metrics.jsonl, last.pt, best.pt, strips/)."),
    init: Optional[Path] = typer.Option(None, "--init",
        help="Start from this checkpoint's weights, e.g. runs/w1-weak/best.pt (required by --reg strong)."),
    from_scratch: bool = typer.Option(False, "--from-scratch",
        help="Allow --reg strong without --init (random start)."),
    config: Optional[Path] = typer.Option(None, "--config",
        help="YAML run config (keys as in a run's config.yaml); flags override it."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs (the paper: 40)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size",
        help="Triplets per step PER PROCESS (the paper: 40); with --gpus N the effective batch is N times this."),
    lr: Optional[float] = typer.Option(None, "--lr",
        help="Adam learning rate (the paper: 1e-4, halved every 15 epochs)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps."),
    gpus: Optional[int] = typer.Option(None, "--gpus",
        help="Train on N GPUs with DDP, one process each (NCCL); with --device cpu, N gloo processes."),
    nproc: Optional[int] = typer.Option(None, "--nproc",
        help="Processes for DDP (same as --gpus; use with --device cpu for gloo)."),
    sync_bn: bool = typer.Option(False, "--sync-bn", help="Synchronize BatchNorm statistics across GPUs."),
    resume: Optional[Path] = typer.Option(None, "--resume",
        help="Continue the run in this folder exactly from its last.pt (from any working folder)."),
    store_option: Optional[Path] = typer.Option(None, "--store", help="Same as STORE; with --resume: where it is now."),
    widths: Optional[str] = typer.Option(None, "--widths",
        help="Encoder widths, e.g. 64,128,256,512,1024 (the paper) or 8,16,32 for a quick run."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (weights and batch order)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Loader processes (default: 0 on CPU, 4 per GPU)."),
    amp: Optional[str] = typer.Option(None, "--amp",
        help="Mixed precision: auto (bf16 on CUDA and on CPUs with native bf16), bf16, fp16 (CUDA) or off."),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last",
        help="NHWC memory format (default: on for CUDA and CPU, where it measured 1.5x faster at batch 40; off on "
             "MPS)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run folder."),
):
    """Train the autoencoder (baseline, weak or strong) on a prepared store; Ctrl-C saves, --resume continues.

    Strong fine-tunes weak: `--reg weak --out runs/w1-weak`, then `--reg strong --init runs/w1-weak/best.pt --out
    runs/w1-strong`.
    """
    from .config import TrainConfig, load_yaml, override
    from .errors import UsageError
    from .run import resume_config, store_argument
    from .train import train

    if gpus is not None and nproc is not None and gpus != nproc:
        raise UsageError(f"--gpus {gpus} and --nproc {nproc} disagree; give one of them")
    if gpus is not None:
        state["flags"] = {"nproc": "--gpus"}  # the user said --gpus: report it so
    if gpus is not None and device is None:
        device = "cuda"
    changes = {
        "data.store": store_argument(store, store_option), "data.channel": channel, "reg": reg,
        "init": str(init) if init is not None else None, "from_scratch": from_scratch or None,
        "optim.epochs": epochs, "optim.batch": batch_size, "optim.lr": lr, "device": device,
        "nproc": gpus if gpus is not None else nproc, "sync_bn": sync_bn or None, "seed": seed, "workers": workers,
        "amp": amp, "channels_last": channels_last,
        "model.widths": int_list(widths, "model widths") if widths else None,
    }
    if resume is not None:
        if config is not None:
            raise UsageError("--resume continues a run with its own settings; drop --config")
        cfg, out = resume_config(resume, changes, out=out), resume
    elif out is None:
        raise UsageError("no run folder given: pass --out runs/NAME")
    else:
        cfg = override(load_yaml(TrainConfig, config) if config is not None else TrainConfig(), changes)
    try:
        result = train(cfg, out, resume=resume is not None, progress=sys.stderr.isatty(), force=force)
    except KeyboardInterrupt as exc:  # train() saved a resumable last.pt first; say how to continue
        console.print(f"[yellow]{exc or 'interrupted'}[/yellow]", highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    if result is not None:
        console.print(f"[green]train[/green] {result.out}: {result.epochs} epochs, best validation loss "
                      f"{result.best_val:.5f} at epoch {result.best_epoch} → {result.out / 'best.pt'}", highlight=False)


# === inference: blur, deblur =================================================================

def _inference_config(device: str, tile, out_dtype, intensity: str, precision: str, batch_size: int = 4):
    from .config import InferenceConfig

    return InferenceConfig(intensity=intensity, tile=tile, precision=precision, batch_size=batch_size,
                           out_dtype=out_dtype, device=device).check()


def _report(paths, alphas) -> None:
    pages = ", ".join(f"{a:.4g}" for a in alphas)
    if len(paths) == 1:
        where = f"{len(alphas)} pages, " if len(alphas) > 1 else ""
        typer.echo(f"wrote {paths[0]} ({where}alpha = {pages})")
    else:
        typer.echo(f"wrote {len(paths)} files ({paths[0].name} ... {paths[-1].name}; alpha = {pages})")


# Options blur and deblur share, declared once.
DEVICE_OPTION = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps.")
TILE_OPTION = typer.Option(
    None, "--tile", help="Tile size in px for large images (0 = whole; default: whole up to 2048x2048, else 512).")
OUT_DTYPE_OPTION = typer.Option(None, "--out-dtype", help="Output pixel type (default: the input's).")
PRECISION_OPTION = typer.Option("auto", "--precision", help="auto (= fp32), fp32, or opt-in autocast bf16/fp16 "
                                "(measured off fp32 by up to 0.05 and 0.009 of the range).")


@app.command()
@handle_errors
def blur(
    sharp: Optional[Path] = typer.Argument(None, help="The sharper image x1 (TIFF/PNG, grayscale)."),
    blurry: Optional[Path] = typer.Argument(None, help="The blurrier image x2 of the same field."),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="A checkpoint written by `blurlatent train`."),
    alpha: Optional[List[float]] = typer.Option(None, "--alpha", "-a",
        help="Blur level: 1 = sharp, 0 = blurry; repeat for several."),
    steps: Optional[int] = typer.Option(None, "--steps",
        help="N evenly spaced levels alpha = 1/(N+1) .. N/(N+1) (7: the paper's Fig. 2)."),
    output: Path = typer.Option(..., "--output", "-o",
        help="Output .tif (several levels: one page each) or .png (numbered files); a folder in folder mode."),
    sharp_dir: Optional[Path] = typer.Option(None, "--sharp-dir", help="Folder mode: folder of sharper images. "
        "All or nothing: if any pair fails, no output is written, so the rerun needs no --force."),
    blurry_dir: Optional[Path] = typer.Option(None, "--blurry-dir",
        help="Folder mode: folder of blurrier images, paired by BBBC006 field or file name."),
    extrapolate: bool = typer.Option(False, "--extrapolate", help="Allow alpha outside [0, 1]."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
    device: str = DEVICE_OPTION,
    tile: Optional[int] = TILE_OPTION,
    out_dtype: Optional[OutDtypeChoice] = OUT_DTYPE_OPTION,
    intensity: IntensityChoice = typer.Option("conserve", "--intensity",
        help="conserve: keep the total signal above background; minmax: map to the inputs' range."),
    precision: PrecisionChoice = PRECISION_OPTION,
    batch_size: int = typer.Option(4, "--batch-size", help="Images per forward pass (pairs in folder mode)."),
):
    """Synthesize defocus blur between two planes of one field (Eq. 2): G(alpha E(sharp) + (1 - alpha) E(blurry))."""
    from . import batch
    from .errors import UsageError

    config = _inference_config(device, tile, _value(out_dtype), _value(intensity), _value(precision), batch_size)
    alphas = batch.blur_alphas(alpha, steps, extrapolate)
    if sharp_dir is not None or blurry_dir is not None:
        if sharp_dir is None or blurry_dir is None or sharp is not None or blurry is not None:
            raise UsageError("folder mode needs both --sharp-dir and --blurry-dir and no SHARP/BLURRY files")
        written, pairs, unpaired = batch.blur_folders(checkpoint, config, sharp_dir, blurry_dir, alphas, output, force,
                                                      extrapolate, progress_enabled=sys.stderr.isatty())
        typer.echo(f"wrote {len(written)} images for {len(pairs)} pairs into {output} (alpha = "
                   f"{', '.join(f'{a:.4g}' for a in alphas)})")
        if unpaired:
            typer.echo(f"skipped {len(unpaired)} file(s) without a partner, e.g. {unpaired[0]}")
        return
    if sharp is None or blurry is None:
        raise UsageError("give SHARP and BLURRY image files, or --sharp-dir and --blurry-dir")
    _report(batch.run_files(checkpoint, config, sharp, blurry, alphas, output, "blur", force, extrapolate), alphas)


@app.command()
@handle_errors
def deblur(
    blurriest: Path = typer.Argument(..., help="The most defocused image (z1), e.g. plane 0."),
    less_blurry: Path = typer.Argument(..., help="A less defocused image of the same field (z3'), e.g. plane 8."),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="A checkpoint written by `blurlatent train`."),
    alpha: Optional[float] = typer.Option(None, "--alpha", "-a",
        help="Eq. 3's alpha = (target - less_blurry) / (target - blurriest), 0 <= alpha < 1."),
    planes: Optional[Tuple[float, float]] = typer.Option(None, "--planes",
        help="Focal planes of BLURRIEST and LESS_BLURRY, e.g. --planes 0 8."),
    target: float = typer.Option(16.0, "--target", help="The in-focus plane to recover (BBBC006: 16)."),
    sweep: bool = typer.Option(False, "--sweep",
        help="Also write alpha = 1/8 .. 7/8, one page each, to see which alpha is best."),
    output: Path = typer.Option(..., "--output", "-o", help="Output .tif (several alphas: one page each) or .png."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
    device: str = DEVICE_OPTION,
    tile: Optional[int] = TILE_OPTION,
    out_dtype: Optional[OutDtypeChoice] = OUT_DTYPE_OPTION,
    intensity: IntensityChoice = typer.Option("conserve", "--intensity",
        help="conserve: keep the less-blurry input's total signal above background; minmax: its range."),
    precision: PrecisionChoice = PRECISION_OPTION,
):
    """Recover the in-focus image from two defocused planes of one field (Eq. 3).

    alpha comes from --alpha, from --planes P1 P2 (--target, default 16), or, for BBBC006 files inside
    BBBC006_v1_images_z_XX folders, from the folder names.
    """
    from . import batch

    config = _inference_config(device, tile, _value(out_dtype), _value(intensity), _value(precision))
    alphas, planes = batch.deblur_alphas(alpha, planes, target, sweep, (blurriest, less_blurry))
    if alpha is None and planes is not None:
        typer.echo(f"alpha = {alphas[0] if not sweep else batch.alpha_from_planes(planes[0], planes[1], target):.4g} "
                   f"from planes {planes[0]:g}, {planes[1]:g} toward {target:g}")
    _report(batch.run_files(checkpoint, config, blurriest, less_blurry, alphas, output, "deblur", force), alphas)


# === evaluate ================================================================================


@app.command("evaluate")
@handle_errors
def evaluate_cli(
    store: Path = typer.Argument(..., help="Prepared store folder (from `blurlatent prepare`)."),
    checkpoint: List[Path] = typer.Option(..., "--checkpoint", "-c",
        help="Model checkpoint .pt; repeat to compare models (one column each)."),
    channel: str = typer.Option("w1", "--channel", help="Channel to evaluate (w1 nuclei, w2 cell structure)."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder to create (report.json, report.md, figures/)."),
    whole: bool = typer.Option(False, "--whole",
        help="Use full-size test fields (padded to 2**depth) instead of centre crops."),
    fid_weights: Optional[Path] = typer.Option(None, "--fid-weights",
        help="pytorch-fid Inception weights pt_inception-2015-12-05-6726825d.pth (else the torch hub cache; never "
             "downloaded)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    batch_size: int = typer.Option(8, "--batch-size", help="Test fields per forward pass."),
    force: bool = typer.Option(False, "--force", help="Replace an existing report folder."),
):
    """Score models on the test split: the paper's Tables 1-2 and Figs 2/5/6/7, with classical baselines."""
    from .evaluate import evaluate
    from .report import rich_tables

    report = evaluate(store, checkpoint, channel, out, whole=whole, fid_weights=fid_weights, device=device,
                      batch_size=batch_size, progress=True, force=force)
    screen = Console()
    for table in rich_tables(report):
        screen.print(table)
    if not report.config.fid.available:
        note = flag_message(report.config.fid.note)
        console.print(f"[yellow]{escape(note)}[/yellow]", highlight=False, soft_wrap=True)
    screen.print(f"report written to {out}/ (report.md, report.json, figures/)", highlight=False)


# === demo ====================================================================================


@app.command()
@handle_errors
def demo(
    out: Path = typer.Option(Path("demo"), "--out", "-o", help="Folder for everything the demo writes."),
    fast: bool = typer.Option(False, "--fast",
        help="Smaller data and fewer epochs (under 3 minutes on 2 CPU cores; CI runs this)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    seed: int = typer.Option(0, help="Seed for the synthetic data and training."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier demo folder."),
):
    """Show the whole idea on synthetic data: synth → prepare → train (weak) → blur → deblur → evaluate."""
    from rich.table import Table

    from .demo import run_demo, verdict_rows  # torch: not for --help

    result = run_demo(out, fast=fast, device=device, force=force, seed=seed)
    table = Table(title=f"blurlatent demo ({result.seconds:.0f} s)")
    for column in ("check", "measured", "result"):
        table.add_column(column)
    for check, measured, passed in verdict_rows(result):
        table.add_row(check, measured, "[green]yes[/green]" if passed else "[red]NO[/red]")
    screen = Console()
    screen.print(table)
    screen.print(f"report: {result.report}\npicture: {result.figures['demo']}")
    if not result.passed:
        screen.print("[yellow]The demo ran, but not every check passed (see above); "
                     "the numbers are real, not hidden.[/yellow]")


# === export ==================================================================================
ExportTaskChoice = enum.Enum("ExportTaskChoice", {"deblur": "deblur", "blur": "blur"}, type=str)


@app.command("export")
@handle_errors
def export_cli(
    checkpoint: Path = typer.Argument(..., help="A checkpoint written by `blurlatent train` (runs/NAME/best.pt)."),
    output: Path = typer.Option(..., "--output", "-o", help="The bioimage.io model package to write (.zip)."),
    alpha: Optional[float] = typer.Option(None, "--alpha", "-a", help="The package's fixed alpha (blur: 1 = sharp)."),
    planes: Optional[Tuple[float, float]] = typer.Option(None, "--planes", help="deblur: alpha from planes, e.g. 0 8."),
    target: float = typer.Option(16.0, "--target", help="deblur: the in-focus plane to recover (BBBC006: 16)."),
    task: ExportTaskChoice = typer.Option("deblur", "--task", help="deblur or blur (inputs sharp, blurry)."),
    author: Optional[List[str]] = typer.Option(None, "--author", help="Who trained the model; repeat for several."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing package."),
):
    """Export a checkpoint as a bioimage.io model package (TorchScript + ONNX); needs blurlatent\\[export]."""
    try:
        from .export import export_package  # torch, bioimageio, onnx: not for --help
    except ModuleNotFoundError as exc:
        from .errors import UsageError
        raise UsageError(f"export needs blurlatent[export] ({exc.name} is missing): pip install 'blurlatent[export]'")
    typer.echo(export_package(checkpoint, output, task=_value(task), alpha=alpha, planes=planes, target=target,
                              authors=author or (), force=force).summary())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
