"""Reproduce blurlatent's built-in models from scratch: synthetic data → training → slim weights → card.

    python examples/train_default_model.py --out build/default-models            # both channels, CPU or GPU
    python examples/train_default_model.py --out build/default-models --install  # and replace blurlatent/models/

Per channel (w1 nuclei, w2 actin): ``synth`` widefield stacks with the calibrated default optics (seed 0),
``prepare`` the paper's planes 0..16 step 2 as 128 px crops, ``train`` what `blurlatent train` trains (the
architecture that deblurs best in ``benchmarks/bench_quality.py``, on every triplet toward focus, with the deblur
loss) with the weak loss (Eq. 4) and this script's short schedule, then ``shipping.slim_checkpoint``
(weights only, the smallest precision within 1e-3 of float32) and the card: what it was trained on, and the
benchmark's figures for it on a synthetic test set made with ANOTHER seed and OTHER optics
(``bench_quality.py --checkpoint``), next to the less-blurry input, Richardson–Lucy and Wiener.
The same seed gives the same model on the same machine kind; on 2 CPU cores the default schedule (3 epochs,
1,260 steps) takes about 20 minutes per channel, on a GPU a minute or two.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from blurlatent.bbbc006 import PIXEL_SIZE_UM, PLANE_STEP_UM
from blurlatent.config import (
    Arch,
    DataConfig,
    ModelConfig,
    OptimConfig,
    Skips,
    TrainConfig,
    TripletSet,
    choices,
    override,
    triplet_set,
)
from blurlatent.files.atomic import write_json
from blurlatent.inference.builtin import MODELS_DIR
from blurlatent.inference.shipping import slim_checkpoint
from blurlatent.prepare.builder import prepare
from blurlatent.prepare.store import Store
from blurlatent.synth.generator import synthesize
from blurlatent.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
AUTHORS = ["the blurlatent contributors"]  # who trained the shipped models: the card's, and every export's of them
PLANES = list(range(0, 17, 2))
LIMITS = [
    "trained only on synthetic widefield stacks (20x, NA 0.45, 2 µm planes) of nuclei (w1) or actin (w2); "
    "checked on real-content BBBC006 stacks only for the paper-like model (README), not for this one",
    "not for confocal, light-sheet or brightfield images",
    "alpha must be known: from the plane indices (--planes/--z with --target) or given",
    "trained on planes on one side of focus (0..16 toward 16); the other side is similar in widefield optics "
    "but untested",
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="work folder: data, runs, benchmark, models/")
    p.add_argument("--channels", default="w1,w2", help="channels to train, one model each")
    p.add_argument("--arch", default=None, choices=choices(Arch),
                   help="architecture; default train's (multiscale, bench_quality.py's winner)")
    p.add_argument("--widths", default=None,
                   help="encoder widths, e.g. 12,24,48,96,192 (the shipped w1 model); default: the arch's own")
    p.add_argument("--skips", default=None, choices=choices(Skips),
                   help="multiscale: the latent scales the decoder takes; default: the arch's (multiscale: quarter; "
                        "the shipped w1 model: coarse)")
    p.add_argument("--fields", type=int, default=30, help="synthetic training fields (80:20 train/val)")
    p.add_argument("--epochs", type=int, default=3, help="epochs (focus triplets: 420 steps each)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate, halved every --lr-step epochs")
    p.add_argument("--lr-step", type=int, default=1)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--deblur-weight", type=float, default=None, help="deblur loss weight; default train's (1)")
    p.add_argument("--triplets", default=None, choices=choices(TripletSet),
                   help="training triplets (train --triplets); default train's: focus, every (left, target, 16) with "
                        "its own alpha")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--smoke", action="store_true", help="a tiny end-to-end run (tests): 64 px, 1 epoch, widths 4,8")
    p.add_argument("--install", action="store_true",
                   help="copy the models and cards into blurlatent/models/ (not one below its input at any k)")
    p.add_argument("--force", action="store_true", help="replace this script's earlier outputs in --out")
    args = p.parse_args(argv)
    args.size, args.crop = (696, 520), 128
    args.widths = [int(w) for w in args.widths.split(",")] if args.widths else None
    if args.smoke:
        args.size, args.crop, args.widths, args.fields, args.epochs = (64, 64), 32, [4, 8, 8], 6, 1
    return args


def triplets_name(config: TrainConfig) -> str:
    """The ``--triplets`` set ``config`` trains on."""
    given = [list(t) for t in config.data.triplets]
    return next((name for name in choices(TripletSet) if triplet_set(name)["data.triplets"] == given), "custom")


def train_channel(args, store: Path, channel: str) -> tuple[Path, dict]:
    # what `blurlatent train --arch ARCH` trains (its defaults) unless an option here says otherwise
    model = ModelConfig(widths=args.widths, skips=args.skips, **({"arch": args.arch} if args.arch else {}))
    config = TrainConfig(
        model=model, data=DataConfig(store=str(store), channel=channel),
        optim=OptimConfig(lr=args.lr, step=args.lr_step, gamma=0.5, epochs=args.epochs, batch=args.batch),
        reg="weak", seed=args.seed, device=args.device)
    triplets = triplet_set(args.triplets) if args.triplets else {}
    config = override(config, {**triplets, "deblur_weight": args.deblur_weight}).check()
    t0 = time.perf_counter()
    result = train(config, args.out / "runs" / channel, progress=sys.stderr.isatty(), force=args.force)
    training = {"arch": config.model.arch, "widths": config.model.widths, "skips": config.model.skips, "reg": "weak",
                "deblur_weight": config.deblur_weight, "triplets": triplets_name(config),
                "epochs": args.epochs,
                "lr": args.lr, "lr_halved_every": args.lr_step, "batch": args.batch, "seed": args.seed,
                "best_epoch": result.best_epoch, "best_val": round(result.best_val, 5),
                "seconds": round(time.perf_counter() - t0, 1), "machine": machine()}
    return result.out / "best.pt", training


def machine() -> str:
    """The device that trained: the GPU's name, else the CPU's model name and core count."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    return f"{names[0] if names else platform.processor()}, {torch.get_num_threads()} threads"


def probe_pairs(store: Path, channel: str) -> np.ndarray:
    """Validation crops (plane 0, plane 8) in [0, 1]: what the precision check deblurs."""
    data = np.asarray(Store(store).array(channel, "val")[:16])  # uint8 [N, planes, H, W]
    index = [PLANES.index(0), PLANES.index(8)]
    return data[:, index].astype(np.float32) / 255.0


def benchmark(args, checkpoint: Path, channel: str) -> dict:
    """bench_quality.py on this model as it is: its bench_quality.json (the card's figures, ``below_input``)."""
    out = args.out / "bench" / channel
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_quality.py"), "--out", str(out), "--archs", "none",
           "--checkpoint", f"builtin={checkpoint}", "--channel", channel, "--device", args.device, "--force"]
    cmd += ["--smoke"] if args.smoke else []
    subprocess.run(cmd, check=True)
    return json.loads((out / "bench_quality.json").read_text())


def below_input(result: dict) -> list[str]:
    """The pairs (0,k) of bench_quality.json where the model ("builtin") scores a lower PSNR than the less-blurry
    input: a built-in model must never be worse than doing nothing, so ``--install`` refuses it."""
    model, identity = result["methods"]["builtin"]["deblur"], result["methods"]["identity"]["deblur"]
    return [f"(0,{k})" for k in sorted(model, key=int) if model[k]["psnr"] < identity[k]["psnr"]]


def benchmark_card(result: dict) -> dict:
    """The card's "benchmark" entry from bench_quality.json (the model scored as "builtin")."""
    methods = result["methods"]

    def deblur(name: str) -> dict:
        return {f"(0,{k})": [round(methods[name]["deblur"][str(k)][m], 3) for m in ("psnr", "ssim")]
                for k in (4, 8, 12, 14)}

    def mean_blur(name: str) -> float:
        return round(float(np.mean(list(methods[name]["blur"].values()))), 2)

    return {
        "test_set": f"{result['test_fields']} whole synthetic fields {result['image_size']} made with seed "
                    f"{result['eval_seed']} and other optics {result['eval_optics']}",
        "metric": result["metrics"] + "; [PSNR dB, SSIM] per pair (0,k) -> 16",
        "deblur": {"this model": deblur("builtin"), "less-blurry input": deblur("identity"),
                   "Richardson-Lucy (PSF fitted)": deblur("rl"), "Wiener (PSF fitted)": deblur("wiener")},
        "blur_synthesis_db": {"this model": mean_blur("builtin"), "Gaussian (sigma fitted)": mean_blur("gaussian")},
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    synthesize(args.out / "synth", fields=args.fields, channels=channels, planes=PLANES, size=args.size,
               seed=args.seed, force=args.force)
    store = prepare(args.out / "synth", args.out / "store", channels=channels, planes=PLANES, crop=args.crop,
                    split=(80, 20, 0), force=args.force).path
    (args.out / "models").mkdir(exist_ok=True)
    for channel in channels:
        best, training = train_channel(args, store, channel)
        shipped = args.out / "models" / f"{channel}.pt"
        facts = slim_checkpoint(best, shipped, probe_pairs(store, channel), force=True)
        what = "nuclei (Hoechst)" if channel == "w1" else "actin (phalloidin)"
        result = benchmark(args, shipped, channel)
        card = {
            "name": channel, "channel": channel, "file": shipped.name, **facts, "arch": training["arch"],
            "summary": f"synthetic training, widefield {what}, arch {training['arch']}",
            "authors": AUTHORS, "synthetic": True,  # `export` takes both into the package (bioimage.io asks)
            # the scale it was trained at: inference resamples inputs to it, and warns beyond its defocus
            "pixel_size_um": PIXEL_SIZE_UM, "z_step_um": PLANE_STEP_UM,
            "defocus_um": [0.0, (max(PLANES) - min(PLANES)) * PLANE_STEP_UM],
            "trained_on": f"{args.fields} synthetic widefield fields of {what}, planes 0..16 step 2 (z16 in focus), "
                          f"default optics (NA 0.45, 2 µm per plane), seed {args.seed}, {args.crop} px crops",
            "training": training, "benchmark": benchmark_card(result), "limits": LIMITS,
            "reproduce": f"python examples/train_default_model.py --out build/default-models --channels {channel} "
                         f"--arch {training['arch']} --widths {','.join(map(str, training['widths']))} "
                         f"--skips {training['skips']} --triplets {training['triplets']} --epochs {args.epochs} "
                         f"--lr-step {args.lr_step} --install",
        }
        write_json(args.out / "models" / f"{channel}.json", card)  # atomic, like every file blurlatent writes
        print(f"{channel}: {shipped} ({facts['precision']}, {facts['bytes'] / 1e6:.2f} MB, max |Δ| "
              f"{facts['max_abs_diff']:.1e}); card {shipped.with_suffix('.json')}", flush=True)
        worse = below_input(result)
        if args.install and worse:
            print(f"{channel}: not installed, below the less-blurry input at {', '.join(worse)} (other-optics "
                  f"test set); the model and its card stay in {args.out / 'models'}", flush=True)
        elif args.install:
            MODELS_DIR.mkdir(exist_ok=True)
            for suffix in (".pt", ".json"):
                shutil.copyfile(shipped.with_suffix(suffix), MODELS_DIR / f"{channel}{suffix}")


if __name__ == "__main__":
    main()
