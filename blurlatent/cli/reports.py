"""Commands that report and package: evaluate, demo, export."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer
from rich.console import Console
from rich.markup import escape  # messages hold paths and lists: [w1] must print, not vanish as markup

from blurlatent.cli.common import app
from blurlatent.cli.errors import OneLineCommand, console, flag_names
from blurlatent.config import DEMO_ARCH, Arch, EvalConfig

# === evaluate ================================================================================


@app.command("evaluate", cls=OneLineCommand)
def evaluate_cli(
    ctx: typer.Context,
    store: Path = typer.Argument(..., help="Prepared store folder (from `blurlatent prepare`)."),
    checkpoint: list[Path] = typer.Option(..., "--checkpoint", "-c",
        help="Model checkpoint .pt; repeat to compare models (one column each)."),
    channel: str = typer.Option(EvalConfig.channel, "--channel",
                                help="Channel to evaluate (w1 nuclei, w2 cell structure)."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder to create (report.json, report.md, figures/)."),
    whole: bool = typer.Option(False, "--whole",
        help="Use full-size test fields (padded to 2**depth) instead of centre crops."),
    fid_weights: Path | None = typer.Option(None, "--fid-weights",
        help="pytorch-fid Inception weights pt_inception-2015-12-05-6726825d.pth (else the torch hub cache; never "
             "downloaded)."),
    device: str = typer.Option(EvalConfig.device, "--device", help="auto, cpu, cuda, cuda:N or mps."),
    batch_size: int = typer.Option(EvalConfig.batch_size, "--batch-size", help="Test fields per forward pass."),
    force: bool = typer.Option(False, "--force", help="Replace an existing report folder."),
):
    """Score models on the test split: the paper's Tables 1-2 and Figs 2/5/6/7, with classical baselines. Needs
    blurlatent[eval] (FID also blurlatent[fid])."""
    from blurlatent.errors import Message
    from blurlatent.evaluation.loop import evaluate
    from blurlatent.evaluation.report import rich_tables

    report = evaluate(store, checkpoint, channel, out, whole=whole, fid_weights=fid_weights, device=device,
                      batch_size=batch_size, progress=True, force=force)
    screen = Console()
    for table in rich_tables(report):
        screen.print(table)
    if not report.config.fid.available:
        note = report.config.fid.note  # a Message naming fid_weights: said with this command's --fid-weights
        note = note.render(flag_names(ctx)) if isinstance(note, Message) else str(note)
        console.print(f"[yellow]{escape(note)}[/yellow]", highlight=False, soft_wrap=True)
    screen.print(f"report written to {escape(str(out))}/ (report.md, report.json, figures/)", highlight=False)


# === demo ====================================================================================


@app.command(cls=OneLineCommand)
def demo(
    out: Path = typer.Option(Path("demo"), "--out", "-o", help="Folder for everything the demo writes."),
    fast: bool = typer.Option(False, "--fast",
        help="Smaller data and fewer epochs (what CI runs)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    seed: int = typer.Option(0, help="Seed for the synthetic data and training."),
    arch: Arch = typer.Option(DEMO_ARCH, "--arch",
        help="The model to train: paper (the paper's autoencoder, small) or multiscale (train's default; ~10x "
             "longer)."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier demo folder."),
):
    """Show the whole idea on synthetic data: synth → prepare → train (weak) → blur → deblur → evaluate, with the
    built-in model beside the small one trained here. Needs blurlatent[eval]."""
    from rich.table import Table

    from blurlatent.demo import run_demo, verdict_rows  # torch: not for --help

    result = run_demo(out, fast=fast, device=device, force=force, seed=seed, arch=arch)
    table = Table(title=f"blurlatent demo ({result.seconds:.0f} s)")
    for column in ("check", "measured", "result"):
        table.add_column(column)
    for check, measured, passed in verdict_rows(result):
        table.add_row(check, measured, "[green]yes[/green]" if passed else "[red]NO[/red]")
    screen = Console()
    screen.print(table)
    screen.print(f"report: {escape(str(result.report))}\npicture: {escape(str(result.figures['demo']))}",
                 highlight=False)
    if not result.passed:
        screen.print("[yellow]The demo ran, but not every check passed (see above); "
                     "the numbers are real, not hidden.[/yellow]")


# === export ==================================================================================
ExportTask = Literal["deblur", "blur"]  # bmz.description.TASKS


@app.command("export", cls=OneLineCommand)
def export_cli(
    checkpoint: Path = typer.Argument(..., help="A checkpoint written by `blurlatent train` (runs/NAME/best.pt), or "
                                      "a built-in model's name, w1 (`blurlatent models`)."),
    output: Path = typer.Option(..., "--output", "-o", help="The bioimage.io model package to write (.zip)."),
    alpha: float | None = typer.Option(None, "--alpha", "-a", help="The package's fixed alpha (blur: 1 = sharp)."),
    planes: tuple[float, float] | None = typer.Option(None, "--planes", metavar="P1 P2",
                                                      help="deblur: alpha from planes, e.g. 0 8."),
    target: float | None = typer.Option(None, "--target",
                                        help="deblur: the in-focus plane --planes lead to (BBBC006: 16)."),
    task: ExportTask = typer.Option("deblur", "--task", help="deblur or blur (inputs sharp, blurry)."),
    author: list[str] | None = typer.Option(None, "--author", help="Who trained the model; repeat for several."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing package."),
):
    """Export a checkpoint as a bioimage.io model package (TorchScript + ONNX); needs blurlatent\\[export]."""
    try:
        from blurlatent.bmz.package import export_package  # torch, bioimageio, onnx: not for --help
    except ModuleNotFoundError as exc:
        from blurlatent.errors import UsageError
        raise UsageError(f"export needs blurlatent[export] ({exc.name} is missing): pip install 'blurlatent[export]'"
                         ) from exc
    typer.echo(export_package(checkpoint, output, task=task, alpha=alpha, planes=planes, target=target,
                              authors=author or (), force=force).summary())
