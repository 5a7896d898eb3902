"""The benchmark that decides the architecture (issue 13): paper vs the new arch, trained for the same budget,
scored on whole test fields of a synthetic set made with another seed and OTHER OPTICS.

    python benchmarks/bench_quality.py --out bench-quality/ --archs paper,multiscale --seeds 0,1 --minutes 10
    python benchmarks/bench_quality.py --out /tmp/bq --archs paper --smoke     # end to end in well under 2 min
    python benchmarks/bench_quality.py --out bq-new/ --steps 800 --triplets multiscale=focus --reuse bench-quality/

What it does, all through the library (no copy of any forward path or fit):

1. data: ``synth`` (``--data-seed``, the calibrated optics) → ``prepare`` (80:20 train/val) for training;
   ``synth`` (``--eval-seed``, ``--eval-optics``: another NA, wavelength, z step, noise and background)
   → ``prepare`` (25:0:75) for scoring: its test fields are scored WHOLE, its few train fields are where
   ``evaluate`` fits the classical baselines' PSF (as ``blurlatent evaluate`` does on any store).
2. train: every arch for every seed (``TrainConfig.seed``: weights and batch order; the data stay the same)
   through ``blurlatent.training.trainer.train`` for the same budget: ``--minutes`` of wall time per model (whole
   epochs: after each call the epochs that still fit are added with ``resume``) and/or ``--steps``
   (rounded up to whole epochs). Steps, epochs and seconds are printed and recorded.
3. score: ``blurlatent.evaluation.loop.evaluate(whole=True)`` on every run's ``best.pt`` at once, which runs each
   model through ``inference.Predictor`` and the baselines through ``baselines`` (Gaussian PSF fitted per
   plane, Richardson–Lucy and Wiener). Per pair (0, k) → 16, k = 2…14: the less-blurry input (identity),
   RL, Wiener and each arch (mean over seeds): PSNR after a per-image least-squares gain/offset fit to the
   true z16 (``metrics.psnr_calibrated``) and SSIM after the same fit, means per image; and blur
   synthesis, Eq. 2 between z16 and z0 at the α of plane k vs the real plane k (calibrated PSNR). FID
   is not part of it (a 4-statistic stand-in keeps ``evaluate`` from running Inception).
4. report: rich tables, ``bench_quality.json``, ``psnr_vs_k.png`` (deblurring) and ``blur_vs_k.png`` in
   ``--out``; the issue's targets
   with pass/fail (means over seeds): at (0,8) new ≥ paper + 2 dB and ≥ the best classical + 1 dB, SSIM
   ≥ paper's; at (0,14) new ≥ identity − 0.3 dB; blur synthesis (mean over k) ≥ paper's − 0.3 dB.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blurlatent.config import (
    CONFIG_VERSION,
    OptimConfig,
    TrainConfig,
    from_dict,
    load_yaml,
    override,
    to_dict,
    triplet_set,
)
from blurlatent.evaluation.loop import evaluate
from blurlatent.files.atomic import write_json
from blurlatent.files.pictures import save_line_plot
from blurlatent.prepare.builder import prepare
from blurlatent.prepare.store import Store
from blurlatent.synth.generator import parse_size, synthesize
from blurlatent.synth.optics import Optics
from blurlatent.training.loader import EpochBatches, triplet_dataset
from blurlatent.training.trainer import train

PLANES = list(range(0, 17, 2))  # far plane 0, k = 2…14, target 16
KS = PLANES[1:-1]
EVAL_OPTICS = "na=0.55,wavelength_um=0.52,z_step_um=1.8,read_noise=3,gain=0.6,background=30"
BASELINES = {"identity": "less-blurry input x_k", "rl": "Richardson–Lucy", "wiener": "Wiener"}
GAUSSIAN = "Gaussian blur (σ fitted)"
DEFAULT_WIDTHS = {"paper": [32, 64, 128, 256, 512]}  # the "paper-like" prototype; others: the arch's default
# the reference, paper, trains as the paper did (its seven triplets at α 0.5, no deblur loss); others: `train`'s
DEFAULT_TRIPLETS, DEFAULT_DEBLUR_WEIGHT = {"paper": "paper"}, {"paper": 0.0}
# --smoke: tiny everything, a pipeline check and not a measurement; one epoch unless --steps/--minutes say
SMOKE = dict(fields=4, eval_fields=3, size="64x64", crop=32, batch=16,
             widths={"paper": [4, 8], "multiscale": [4, 8, 8]})


# --- options ----------------------------------------------------------------------------------------


def per_arch(items: list[str], cast, what: str) -> dict:
    """``["paper=32,64", "multiscale=8,16"]`` → {"paper": cast("32,64"), …}."""
    out = {}
    for item in items or []:
        arch, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{what} {item!r}: give ARCH=VALUE, e.g. paper=32,64,128,256,512")
        out[arch.strip()] = cast(value)
    return out


def int_list(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def parse_optics(text: str) -> Optics:
    """``na=0.55,gain=0.6`` → a checked ``Optics`` (fields of ``blurlatent.synth.optics.Optics``)."""
    names = {f.name for f in dataclasses.fields(Optics)}
    values = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, _, value = item.partition("=")
        if key not in names:
            raise SystemExit(f"--eval-optics {key!r}: not an optics field; use {', '.join(sorted(names))}")
        values[key] = float(value)
    return Optics(**values).check()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for data, runs, report, JSON and PNG")
    p.add_argument("--archs", default="paper,multiscale", help="comma-separated archs (train --arch); paper first")
    p.add_argument("--seeds", default="0,1", help="training seeds, e.g. 0,1 (targets are means over them)")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-time budget per model and seed (default 10 without --steps, none with --smoke)")
    p.add_argument("--steps", type=int, default=None, help="step budget per model (rounded up to whole epochs)")
    p.add_argument("--fields", type=int, default=60,
                   help="synthetic training fields (80:20 train/val); with 30 the multiscale net overfits "
                        "(docs/research-log.md)")
    p.add_argument("--eval-fields", type=int, default=8, help="synthetic evaluation fields (25:0:75; test whole)")
    p.add_argument("--size", default="696x520", help="field size WIDTHxHEIGHT of both sets")
    p.add_argument("--crop", type=int, default=128, help="training crop size (px)")
    p.add_argument("--widths", action="append", default=[], metavar="ARCH=W1,W2,…",
                   help="model widths per arch (repeat); default paper=32,64,128,256,512, others the arch's own")
    p.add_argument("--deblur-weight", action="append", default=[], metavar="ARCH=W",
                   help="deblur loss weight per arch (repeat), e.g. multiscale=2; default paper 0 (as the paper), "
                        "others train's (1)")
    p.add_argument("--triplets", action="append", default=[], metavar="ARCH=SET",
                   help="training triplets per arch (repeat): paper or focus (train --triplets); default paper "
                        "paper (as the paper), others train's (focus)")
    p.add_argument("--reuse", type=Path, action="append", default=[], metavar="DIR",
                   help="score the runs of an earlier bench in DIR (repeat) that were trained with exactly this run's "
                        "data and settings instead of training them again (e.g. paper, or seeds run in parallel)")
    p.add_argument("--skips", default=None,
                   help="multiscale only: coarse, all, gated or quarter (default: train's, quarter)")
    p.add_argument("--reg", default="weak", help="regularization for every arch (none, weak)")
    p.add_argument("--reg-of", action="append", default=[], metavar="ARCH=REG",
                   help="another regularization for one arch (repeat), e.g. multiscale=strong (trained from scratch)")
    p.add_argument("--batch", type=int, default=16, help="triplets per step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--lr-halvings", type=int, default=0,
                   help="with --steps: halve the learning rate N times at equal fractions of every model's epochs "
                        "(0: no decay)")
    p.add_argument("--data-seed", type=int, default=0, help="synth seed of the training set")
    p.add_argument("--eval-seed", type=int, default=1000, help="synth seed of the evaluation set")
    p.add_argument("--eval-optics", default=EVAL_OPTICS, help="optics of the evaluation set, FIELD=VALUE,…")
    p.add_argument("--channel", default="w1", help="synthetic channel to train and score: w1 (nuclei) or w2 (actin)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                   help="also score this checkpoint as it is (repeat), e.g. builtin=blurlatent/models/w1.pt")
    p.add_argument("--device", default="auto", help="training and inference device")
    p.add_argument("--workers", type=int, default=2, help="synth/prepare processes")
    p.add_argument("--smoke", action="store_true", help="tiny end-to-end run (< 2 min): checks the pipeline only")
    p.add_argument("--force", action="store_true", help="replace this benchmark's earlier outputs in --out")
    args = p.parse_args(argv)
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip() and a.strip() != "none"]
    args.checkpoints = per_arch(args.checkpoint, Path, "--checkpoint")
    args.seeds = int_list(args.seeds)
    given = per_arch(args.widths, int_list, "--widths")
    args.deblur_weight = {**DEFAULT_DEBLUR_WEIGHT, **per_arch(args.deblur_weight, float, "--deblur-weight")}
    args.triplets = {**DEFAULT_TRIPLETS, **per_arch(args.triplets, str.strip, "--triplets")}
    args.reg_of = per_arch(args.reg_of, str.strip, "--reg-of")
    if args.minutes is None and args.steps is None and not args.smoke:
        args.minutes = 10.0
    args.minutes = args.minutes or None
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
        if args.steps is None and args.minutes is None:
            args.steps = 1  # one epoch
    args.widths = {**(SMOKE["widths"] if args.smoke else DEFAULT_WIDTHS), **given}
    if args.steps is None and args.minutes is None:
        raise SystemExit("give a budget: --minutes and/or --steps")
    if args.lr_halvings and (args.steps is None or args.minutes is not None):
        raise SystemExit("--lr-halvings needs a --steps budget alone (the schedule is set from the epochs)")
    if args.archs and "paper" not in args.archs:
        raise SystemExit("--archs must include paper (the reference every target compares with)")
    args.eval_optics = parse_optics(args.eval_optics)
    return args


# --- data -------------------------------------------------------------------------------------------


def make_data(args) -> dict:
    """The training store and the evaluation store (other seed, other optics); seconds taken."""
    t0 = time.perf_counter()
    size = parse_size(args.size)
    common = dict(channels=[args.channel], planes=PLANES, size=size, workers=args.workers, force=args.force)
    synthesize(args.out / "train-synth", fields=args.fields, seed=args.data_seed, **common)
    synthesize(args.out / "eval-synth", fields=args.eval_fields, seed=args.eval_seed, optics=args.eval_optics,
               **common)
    t1 = time.perf_counter()
    common = dict(channels=[args.channel], planes=PLANES, crop=args.crop, workers=args.workers, force=args.force)
    prepare(args.out / "train-synth", args.out / "train-store", split=(80, 20, 0), **common)
    prepare(args.out / "eval-synth", args.out / "eval-store", split=(25, 0, 75), **common)
    return {"train_store": args.out / "train-store", "eval_store": args.out / "eval-store",
            "synth_s": t1 - t0, "prepare_s": time.perf_counter() - t1}


# --- training for a budget ----------------------------------------------------------------------------


def train_config(args, arch: str, seed: int, store: Path) -> TrainConfig:
    """The run's config; an arch this tree's ``ModelConfig`` does not know fails here, naming it."""
    model = {"arch": arch}
    if arch in args.widths:
        model["widths"] = args.widths[arch]
    reg = args.reg_of.get(arch, args.reg)
    # every model here starts from random weights, for the same budget
    extra = {"from_scratch": True} if reg == "strong" else {}
    config = from_dict(TrainConfig, {"version": CONFIG_VERSION, "model": model, "reg": reg, "seed": seed,
                                     "device": args.device, "strip_every": 0, **extra},
                       source=f"bench_quality arch {arch}")
    # what `train --arch ARCH` trains, but for the triplets and deblur weight given here (or paper's, above)
    changes = {}
    if arch in args.triplets:
        changes.update(triplet_set(args.triplets[arch]))
    if arch in args.deblur_weight:
        changes["deblur_weight"] = args.deblur_weight[arch]
    if arch == "multiscale" and args.skips:
        changes["model.skips"] = args.skips
    config = override(config, {**changes, "data.store": str(store), "data.channel": args.channel})
    config.optim = OptimConfig(lr=args.lr, step=10**6, epochs=1, batch=args.batch)
    if args.lr_halvings:  # the same schedule, as fractions of the budget, for every arch's epoch length
        epochs = math.ceil(args.steps / steps_per_epoch(config))
        config.optim.step = max(1, epochs // (args.lr_halvings + 1))
    return config.check()


def steps_per_epoch(config: TrainConfig) -> int:
    n = len(triplet_dataset(Store(config.data.store), config.data.triplets, config.data.channel, "train"))
    return EpochBatches(n, config.optim.batch, config.seed).total()


def train_for_budget(config: TrainConfig, run: Path, steps: int | None, minutes: float | None,
                     force: bool) -> dict:
    """Train ``config`` into ``run`` until the budget is spent, in whole epochs: ``steps`` rounded up; under
    ``minutes``, one epoch, then (``resume``) half of the epochs that the last call's pace says still fit,
    until none does, so a machine that slows down (shared cores) overshoots by at most about one call."""
    per_epoch = steps_per_epoch(config)
    max_epochs = math.ceil(steps / per_epoch) if steps else None
    done = {"steps": 0}

    def on_step(epoch: int, step: int) -> None:
        done["steps"] += 1

    t0 = time.perf_counter()
    config.optim.epochs = max_epochs if minutes is None else 1
    result = train(config, run, progress=sys.stderr.isatty(), force=force, on_step=on_step)
    pace, calls = time.perf_counter() - t0, 1  # seconds per epoch of the last call, its setup included
    while minutes is not None:
        remaining = minutes * 60 - (time.perf_counter() - t0)
        more = int(remaining / pace) if remaining < 2 * pace else int(remaining / pace / 2)
        if max_epochs is not None:
            more = min(more, max_epochs - config.optim.epochs)
        if more <= 0:
            break
        config.optim.epochs += more
        t1 = time.perf_counter()
        result = train(config, run, resume=True, progress=sys.stderr.isatty(), on_step=on_step)
        pace, calls = (time.perf_counter() - t1) / more, calls + 1
    seconds = time.perf_counter() - t0
    return {"steps": done["steps"], "epochs": config.optim.epochs, "steps_per_epoch": per_epoch,
            "triplets": done["steps"] * config.optim.batch, "seconds": round(seconds, 2), "train_calls": calls,
            "best_epoch": result.best_epoch, "best_val": result.best_val,
            "widths": list(config.model.widths), "checkpoint": str(run / "best.pt")}


def comparable(config: TrainConfig) -> dict:
    """A run's config as plain data without what may differ between reusable runs: the store's path, the device
    and the epochs."""
    data = to_dict(config)
    data["data"]["store"], data["device"], data["optim"]["epochs"] = "", "", 0
    return data


def reused_runs(args, store: Path) -> dict:
    """{(arch, seed): run} from the earlier benches ``args.reuse`` (first match wins) that this bench would
    train itself: the same data and evaluation settings (else exit, saying which differs), and the run's
    config equal to ``train_config``'s but for the store's path, the device and the epochs. A run trained with
    other settings is not taken (a line says which keys differ) and is trained here."""
    mine = {"size": args.size, "crop": args.crop, "fields": args.fields, "eval_fields": args.eval_fields,
            "data_seed": args.data_seed, "eval_seed": args.eval_seed, "channel": args.channel,
            "eval_optics": dataclasses.asdict(args.eval_optics)}
    runs, wanted = {}, {}
    for folder in args.reuse:
        earlier = json.loads((folder / "bench_quality.json").read_text())
        for key, value in mine.items():
            if earlier.get(key, "w1" if key == "channel" else None) != value:
                raise SystemExit(f"--reuse {folder}: its {key} is {earlier.get(key)!r}, this run's {value!r}; "
                                 "rerun without it")
        for arch in args.archs:
            for seed in args.seeds:
                run = earlier["runs"].get(f"{arch}-s{seed}")
                if run is None or (arch, seed) in runs:
                    continue
                if (arch, seed) not in wanted:  # built once: with --lr-halvings it reads the store
                    wanted[arch, seed] = comparable(train_config(args, arch, seed, store))
                theirs = comparable(load_yaml(TrainConfig, Path(run["checkpoint"]).parent / "config.yaml"))
                if theirs != wanted[arch, seed]:
                    diff = sorted(k for k in wanted[arch, seed] if wanted[arch, seed][k] != theirs.get(k))
                    print(f"--reuse {folder}: {arch} seed {seed} was trained with other settings ({', '.join(diff)})"
                          "; training it here", flush=True)
                    continue
                runs[arch, seed] = {**run, "reused_from": run.get("reused_from", str(folder))}
    return runs


# --- scoring ----------------------------------------------------------------------------------------


def stand_in_features(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] → [B, 4] (mean, std, 10th/90th percentile): FID is not scored here, and this keeps
    ``evaluate`` from loading and running Inception."""
    flat = images[:, 0].flatten(1)
    q = torch.quantile(flat, torch.tensor([0.1, 0.9], device=flat.device, dtype=flat.dtype), dim=1).T
    return torch.cat([flat.mean(1, keepdim=True), flat.std(1, keepdim=True), q], 1)


def column_scores(column) -> dict:
    """{"deblur": {k: {"psnr": …, "ssim": …}}, "blur": {k: psnr}} of one report column (calibrated figures)."""
    deblur = {k: {"psnr": row.psnr_deblur_quality_cal, "ssim": row.ssim_deblur_quality_cal}
              for k, row in column.deblur_per_k.items()}
    blur = {n: row.psnr_blur_quality_cal for n, row in column.blur_per_plane.items()}
    return {"deblur": deblur, "blur": blur}


def mean_over_seeds(per_seed: list[dict]) -> dict:
    """The mean of several ``column_scores`` (one per seed), key by key."""
    first = per_seed[0]
    deblur = {k: {m: float(np.mean([s["deblur"][k][m] for s in per_seed])) for m in ("psnr", "ssim")}
              for k in first["deblur"]}
    blur = {n: float(np.mean([s["blur"][n] for s in per_seed])) for n in first["blur"]}
    return {"deblur": deblur, "blur": blur}


def score(args, stores: dict, runs: dict) -> dict:
    """``evaluate`` every run at once on the whole test fields; per method (baselines, each arch) its scores."""
    order = list(runs)  # (arch, seed) trained here, then (name, None) for each --checkpoint
    t0 = time.perf_counter()
    report = evaluate(stores["eval_store"], [runs[key]["checkpoint"] for key in order], args.channel,
                      args.out / "report", whole=True, device=args.device, batch_size=2,
                      progress=sys.stderr.isatty(), force=args.force, feature_extractor=stand_in_features)
    seconds = time.perf_counter() - t0
    models = [c for c in report.columns if c.kind == "model"]
    methods = {key: column_scores(report.column(name)) for key, name in BASELINES.items()}
    methods["gaussian"] = column_scores(report.column(GAUSSIAN))
    per_seed = {}
    for (arch, seed), column in zip(order, models, strict=True):
        if seed is None:  # a given checkpoint: scored as it is
            methods[arch] = column_scores(column)
            continue
        per_seed.setdefault(arch, {})[seed] = column_scores(column)
    for arch in args.archs:
        methods[arch] = mean_over_seeds(list(per_seed[arch].values()))
    return {"methods": methods, "per_seed": per_seed, "seconds": round(seconds, 2),
            "test_fields": report.config.fields, "image_size": list(report.config.image_size),
            "baseline_fits": {str(n): dataclasses.asdict(f) for n, f in report.config.baselines.items()}}


# --- targets, table, plot --------------------------------------------------------------------------------


def targets(methods: dict, archs: list[str]) -> list[dict]:
    """The issue's targets for every arch other than paper (means over seeds), each with pass/fail."""
    out = []
    paper = methods["paper"]
    classical = max(methods["rl"]["deblur"][8]["psnr"], methods["wiener"]["deblur"][8]["psnr"])
    blur_paper = float(np.mean(list(paper["blur"].values())))
    identity = methods["identity"]["deblur"][14]["psnr"]
    for arch in (a for a in archs if a != "paper"):
        new = methods[arch]
        checks = [
            ("(0,8) PSNR ≥ paper + 2 dB", new["deblur"][8]["psnr"], paper["deblur"][8]["psnr"] + 2.0),
            ("(0,8) PSNR ≥ best classical + 1 dB", new["deblur"][8]["psnr"], classical + 1.0),
            ("(0,8) SSIM ≥ paper's", new["deblur"][8]["ssim"], paper["deblur"][8]["ssim"]),
            ("(0,14) PSNR ≥ identity − 0.3 dB", new["deblur"][14]["psnr"], identity - 0.3),
            ("blur synthesis PSNR (mean over k) ≥ paper − 0.3 dB", float(np.mean(list(new["blur"].values()))),
             blur_paper - 0.3),
        ]
        out += [{"arch": arch, "target": name, "value": v, "threshold": t, "pass": bool(v >= t)}
                for name, v, t in checks]
    return out


def print_tables(args, methods: dict, goals: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)  # files and pipes: the tables unwrapped
    names = ["identity", "rl", "wiener", *args.archs, *args.checkpoints]
    table = Table(title=f"deblurring (0,k) → 16, calibrated PSNR dB / SSIM, whole test fields, other optics; "
                        f"archs: mean of seeds {args.seeds}")
    table.add_column("k", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for k in KS:
        table.add_row(str(k), *[f"{methods[m]['deblur'][k]['psnr']:.2f} / {methods[m]['deblur'][k]['ssim']:.3f}"
                                for m in names])
    console.print(table)
    blur = Table(title="blur synthesis: Eq. 2 (z16, z0) at α of plane k vs the real plane k, calibrated PSNR dB")
    blur.add_column("k", justify="right")
    for name in ("gaussian", *args.archs, *args.checkpoints):
        blur.add_column(name, justify="right")
    for k in KS:
        blur.add_row(str(k), *[f"{methods[m]['blur'][k]:.2f}" for m in ("gaussian", *args.archs, *args.checkpoints)])
    console.print(blur)
    if not goals:
        console.print("targets: not checked (they compare a new arch with paper, both trained here: --archs paper,NEW)")
    for g in goals:
        mark = "[green]PASS[/green]" if g["pass"] else "[red]FAIL[/red]"
        console.print(f"{mark} {g['arch']}: {g['target']}: {g['value']:.3f} vs {g['threshold']:.3f}", highlight=False)


def plot(args, methods: dict) -> list[str]:
    """psnr_vs_k.png (deblurring, every method) and blur_vs_k.png (blur synthesis, Gaussian and each arch)."""
    names = ["identity", "rl", "wiener", *args.archs, *args.checkpoints]
    series = {name: [methods[name]["deblur"][k]["psnr"] for k in KS] for name in names}
    deblur = save_line_plot(KS, series, args.out / "psnr_vs_k.png", xlabel="k (pair (0, k) → 16)",
                            ylabel="calibrated PSNR (dB)", title="deblurring on other optics, whole test fields")
    series = {name: [methods[name]["blur"][k] for k in KS] for name in ("gaussian", *args.archs, *args.checkpoints)}
    blur = save_line_plot(KS, series, args.out / "blur_vs_k.png", xlabel="plane k (Eq. 2 between z16 and z0)",
                          ylabel="calibrated PSNR vs the real plane (dB)", title="blur synthesis on other optics")
    return [str(deblur), str(blur)]


# --- main ------------------------------------------------------------------------------------------------


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    stores = make_data(args)
    print(f"data: synth {stores['synth_s']:.1f} s, prepare {stores['prepare_s']:.1f} s", flush=True)
    runs = {}
    runs.update(reused_runs(args, stores["train_store"]))
    for seed in args.seeds:
        for arch in args.archs:
            if (arch, seed) in runs:
                print(f"train {arch} seed {seed}: reused from {runs[arch, seed]['reused_from']}", flush=True)
                continue
            config = train_config(args, arch, seed, stores["train_store"])
            runs[arch, seed] = r = train_for_budget(config, args.out / "runs" / f"{arch}-s{seed}", args.steps,
                                                     args.minutes, args.force)
            print(f"train {arch} seed {seed}: {r['steps']} steps ({r['epochs']} epoch(s) × {r['steps_per_epoch']}, "
                  f"{r['triplets']} triplets) in {r['seconds']:.1f} s; widths {r['widths']}", flush=True)
    for name, path in args.checkpoints.items():
        runs[name, None] = {"checkpoint": str(path)}
    scores = score(args, stores, runs)
    print(f"evaluate: {scores['test_fields']} whole test fields {scores['image_size']} in {scores['seconds']:.1f} s")
    goals = targets(scores["methods"], args.archs) if "paper" in args.archs else []
    result = {
        "machine": machine(), "smoke": args.smoke, "archs": args.archs, "seeds": args.seeds, "ks": KS,
        "budget": {"minutes": args.minutes, "steps": args.steps}, "size": args.size, "crop": args.crop,
        "fields": args.fields, "eval_fields": args.eval_fields, "data_seed": args.data_seed,
        "eval_seed": args.eval_seed, "eval_optics": dataclasses.asdict(args.eval_optics),
        "metrics": "PSNR and SSIM after a per-image least-squares gain/offset fit to the truth, mean per image",
        "data_seconds": {"synth": round(stores["synth_s"], 2), "prepare": round(stores["prepare_s"], 2)},
        "channel": args.channel, "runs": {f"{a}-s{s}" if s is not None else a: r for (a, s), r in runs.items()},
        **scores, "targets": goals,
    }
    result["plots"] = plot(args, scores["methods"])
    result["total_seconds"] = round(time.perf_counter() - start, 2)
    write_json(args.out / "bench_quality.json", result)
    print_tables(args, scores["methods"], goals)
    print(f"total {result['total_seconds']:.1f} s; {args.out / 'bench_quality.json'}, {', '.join(result['plots'])}")
    return result


if __name__ == "__main__":
    main()
