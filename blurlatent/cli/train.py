"""The train command."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape  # run folders are the user's paths: "[bold]" must print, "[/b]" must not raise

from blurlatent.cli.common import app, int_list
from blurlatent.cli.errors import OneLineCommand, console, library_names
from blurlatent.config import Amp, Arch, Log, Reg, TripletSet

# === train ===================================================================================


def train_names(params: dict) -> dict[str, str]:
    """The library names train's parameters differ from: a run config's dotted keys, and ``nproc`` as --gpus
    when the user said --gpus."""
    return {"data.store": "store_option", "data.channel": "channel", "model.widths": "widths", "model.arch": "arch",
            "optim.epochs": "epochs", "optim.batch": "batch_size", "optim.lr": "lr",
            "nproc": "gpus" if params.get("gpus") is not None else "nproc"}


@app.command("train", cls=OneLineCommand)
@library_names(train_names)
def train_cli(
    store: Path | None = typer.Argument(None,
        help="Prepared store folder (from `blurlatent prepare`); not needed with --resume or data.store in --config."),
    channel: str | None = typer.Option(None, "--channel",
        help="Channel to train on: w1 (nuclei) or w2 (cell structure). Default w1."),
    reg: Reg | None = typer.Option(None, "--reg",
        help="none (baseline AE), weak (Eq. 4) or strong (Eq. 5, fine-tunes --init). Default none."),
    out: Path | None = typer.Option(None, "--out", "-o",
        help="Run folder to create (config.yaml, metrics.jsonl, last.pt, best.pt, strips/)."),
    init: Path | None = typer.Option(None, "--init",
        help="Start from this checkpoint's weights and model (any --reg: fine-tuning), e.g. runs/w1-weak/best.pt "
             "or a built-in model's name, w1 (`blurlatent models`); required by --reg strong."),
    from_scratch: bool = typer.Option(False, "--from-scratch",
        help="Allow --reg strong without --init (random start)."),
    config: Path | None = typer.Option(None, "--config",
        help="YAML run config (keys as in a run's config.yaml); flags override it. Without `version: 2` it means "
             "what configs meant before: the paper's model and training (examples/configs/)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs (the paper: 40)."),
    batch_size: int | None = typer.Option(None, "--batch-size",
        help="Triplets per step PER PROCESS (the paper: 40); with --gpus N the effective batch is N times this."),
    lr: float | None = typer.Option(None, "--lr",
        help="Adam learning rate (the paper: 1e-4, halved every 15 epochs)."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps."),
    gpus: int | None = typer.Option(None, "--gpus",
        help="Train on N GPUs with DDP, one process each (NCCL); with --device cpu, N gloo processes."),
    nproc: int | None = typer.Option(None, "--nproc",
        help="Processes for DDP (same as --gpus; use with --device cpu for gloo)."),
    sync_bn: bool = typer.Option(False, "--sync-bn", help="Synchronize BatchNorm statistics across GPUs."),
    resume: Path | None = typer.Option(None, "--resume",
        help="Continue the run in this folder exactly from its last.pt (from any working folder)."),
    store_option: Path | None = typer.Option(None, "--store", help="Same as STORE; with --resume: where it is now."),
    widths: str | None = typer.Option(None, "--widths",
        help="Encoder widths of the --arch, e.g. 12,24,64,128,256 (multiscale's), 64,128,256,512,1024 (paper's)."),
    arch: Arch | None = typer.Option(None, "--arch",
        help="multiscale (the default: a latent at every resolution, resize+conv decoder, skips quarter) or paper "
             "(the paper's autoencoder); the other settings stay train's defaults (the paper's training: "
             "examples/configs/)."),
    deblur_weight: float | None = typer.Option(None, "--deblur-weight",
        help="Weight of the deblur loss, L1(G(Eq. 3(z_left, z_target)), x_right) on each triplet; 0 is off (the "
             "paper); adds to any --reg. Default 1."),
    triplets: TripletSet | None = typer.Option(None, "--triplets",
        help="Training triplets: focus (the default: all 28 (left, target, 16) of the even planes, each with its "
             "own alpha: every blur level and every pair toward focus) or paper (its seven, alpha 0.5)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (weights and batch order)."),
    workers: int | None = typer.Option(None, "--workers", help="Loader processes (default: 0 on CPU, 4 per GPU)."),
    amp: Amp | None = typer.Option(None, "--amp",
        help="Mixed precision: auto (bf16 on CUDA and on CPUs with native bf16), bf16, fp16 (CUDA) or off."),
    channels_last: bool | None = typer.Option(None, "--channels-last/--no-channels-last",
        help="NHWC memory format (default: on for CUDA and CPU, where it trains faster; off on MPS)."),
    log: Log | None = typer.Option(None, "--log",
        help="Also log to TensorBoard (RUN/tensorboard/; needs blurlatent\\[tensorboard]). metrics.jsonl and "
             "metrics.csv are always written."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run folder."),
):
    """Train the multiscale autoencoder (--arch paper: the paper's) on a store; Ctrl-C saves, --resume continues.

    Strong fine-tunes weak: `--reg weak --out runs/w1-weak`, then `--reg strong --init runs/w1-weak/best.pt --out
    runs/w1-strong`.
    """
    from blurlatent.config import triplet_set
    from blurlatent.errors import UsageError
    from blurlatent.training.run_folder import store_argument

    if gpus is not None and nproc is not None and gpus != nproc:
        raise UsageError(f"--gpus {gpus} and --nproc {nproc} disagree; give one of them")
    if gpus is not None:
        device = "cuda" if device is None else device
    changes = {
        "data.store": store_argument(store, store_option), "data.channel": channel, "reg": reg,
        "init": str(init) if init is not None else None, "from_scratch": from_scratch or None, "log": log,
        "optim.epochs": epochs, "optim.batch": batch_size, "optim.lr": lr, "device": device, "seed": seed,
        "nproc": gpus if gpus is not None else nproc, "sync_bn": sync_bn or None, "workers": workers,
        "amp": amp, "channels_last": channels_last, "deblur_weight": deblur_weight,
        "model.widths": int_list(widths, "model.widths") if widths else None, "model.arch": arch,
        **(triplet_set(triplets) if triplets is not None else {}),
    }
    cfg, out = _run_config(resume, config, out, init, changes)
    _run(cfg, out, resume is not None, force)


def _run_config(resume: Path | None, config: Path | None, out: Path | None, init: Path | None,
                changes: dict):
    """(config, run folder): a resumed run's own config with the flags' allowed changes, or a new run's."""
    from blurlatent.errors import UsageError
    from blurlatent.training.run_folder import resume_config

    if resume is not None and config is not None:
        raise UsageError("--resume continues a run with its own settings; drop --config")
    if resume is not None:
        return resume_config(resume, changes, out=out), resume
    if out is None:
        raise UsageError("no run folder given: pass --out runs/NAME")
    return _new_run_config(config, init, changes), out


def _new_run_config(config: Path | None, init: Path | None, changes: dict):
    """A new run's config: ``TrainConfig``'s defaults ← --config (of its version: ``config.upgrade``) ← flags, as
    ``train(TrainConfig(...))`` would run them. Where neither gives them, fine-tuning (--init) takes the init's
    model, and an arch other than the config's takes its own default widths and skips."""
    from blurlatent.config import DEFAULT_SKIPS, DEFAULT_WIDTHS, TrainConfig, checked_config, override, read_yaml
    from blurlatent.training.run_folder import init_model

    tree = read_yaml(config) or {} if config is not None else {}
    base = checked_config(TrainConfig, tree, config) if config is not None else TrainConfig()
    in_yaml = _dotted_keys(tree)
    if init is not None:  # fine-tuning: the init's model, except what flags or --config give
        changes.update({key: value for key, value in init_model(init).items()
                        if changes.get(key) is None and key not in in_yaml})
    arch = changes.get("model.arch")
    if arch is not None and arch != base.model.arch:
        # widths the YAML gave for its own arch do not fit another one; widths it gave alone are the user's
        if changes.get("model.widths") is None and ("model.widths" not in in_yaml or "model.arch" in in_yaml):
            changes["model.widths"] = list(DEFAULT_WIDTHS[arch])
        if changes.get("model.skips") is None and "model.skips" not in in_yaml:
            changes["model.skips"] = DEFAULT_SKIPS[arch]
    return override(base, changes)


def _dotted_keys(tree: dict, prefix: str = "") -> set[str]:
    """The keys a YAML config sets, dotted (``{"model": {"arch": …}}`` → ``{"model", "model.arch"}``)."""
    keys = set()
    for key, value in tree.items() if isinstance(tree, dict) else ():
        keys.add(prefix + str(key))
        keys |= _dotted_keys(value, f"{prefix}{key}.")
    return keys


def _run(cfg, out: Path, resume: bool, force: bool) -> None:
    """Train; one summary line (a line per epoch before it when stderr is not a terminal: ``logs``)."""
    from blurlatent.training.trainer import train

    try:
        result = train(cfg, out, resume=resume, progress=sys.stderr.isatty(), force=force)
    except KeyboardInterrupt as exc:  # train() saved a resumable last.pt first; say how to continue
        console.print(f"[yellow]{escape(str(exc) or 'interrupted')}[/yellow]", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    if result is not None:  # best.pt is chosen on the validation loss, or without a validation split the training loss
        chosen = "validation loss" if "val_loss" in result.metrics else "training loss (no validation split)"
        console.print(f"[green]train[/green] {escape(str(result.out))}: {result.epochs} epochs, best {chosen} "
                      f"{result.best_val:.5f} at epoch {result.best_epoch} → {escape(str(result.out / 'best.pt'))}",
                      highlight=False, soft_wrap=True)
