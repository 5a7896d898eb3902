"""Train the CARE baseline (CAREamics) on (z_k -> in-focus) pairs: ONE 2-D UNet for every k. Run it with the
CARE env's python (benchmarks/care/make_env.sh), not blurlatent's:

    benchmarks/care/.venv/bin/python benchmarks/care/care_train.py --data pairs.npz --out care-model/ --steps 4000

--data: the training .npz of ``care_io.write_training_npz`` (patches are normalized here, see care_io).
--out:  a folder; it gets ``care_best.ckpt`` (the checkpoint with the lowest val loss, CAREamics' own format:
        weights + configuration), ``care_train.json`` (settings, steps, val losses, seconds) and CAREamics'
        ``checkpoints/`` and ``csv_logs/``.
The run makes exactly --steps optimizer steps (Lightning's max_steps) unless early stopping ends it first; it
validates after every epoch, an epoch being --val-every steps (or one pass over the training patches if that is
shorter).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch
from careamics import CAREamist
from careamics.config import create_advanced_care_config
from lightning.pytorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).resolve().parent))

from care_io import PERCENTILES, read_training_npz

EXPERIMENT = "care_defocus"


class StepTimer(Callback):
    """Wall and CPU (this process, all threads) seconds spent in training batches (forward, backward, optimizer
    step), validation left out; CPU seconds / threads is roughly what a step costs on an idle machine."""

    def __init__(self) -> None:
        self.seconds, self.cpu_seconds, self.steps, self._start = 0.0, 0.0, 0, (0.0, 0.0)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds += time.perf_counter() - self._start[0]
        self.cpu_seconds += time.process_time() - self._start[1]
        self.steps += 1


def care_configuration(args: argparse.Namespace, patch: int, n_train: int):
    """The CAREamics Configuration (algorithm 'care', 2-D UNet, no n2v) for ``args``; the settings the README
    freezes. The data are normalized already, so CAREamics' own normalization is off."""
    epoch_steps = max(1, min(args.val_every, math.ceil(n_train / args.batch_size)))
    return create_advanced_care_config(
        experiment_name=EXPERIMENT,
        data_type="array",
        axes="SYX",
        patch_size=[patch, patch],
        batch_size=args.batch_size,
        num_epochs=args.steps,  # an upper bound only: max_steps ends the run
        num_steps=epoch_steps,  # batches per epoch (Lightning's limit_train_batches): one validation each
        augmentations=["x_flip", "y_flip", "rotate_90"],
        normalization="none",
        num_workers=0,
        model_params={"depth": args.depth, "num_channels_init": args.channels, "residual": True},
        optimizer="Adam",
        optimizer_params={"lr": args.lr},
        lr_scheduler="ReduceLROnPlateau",
        lr_scheduler_params={"factor": 0.5, "patience": 5},
        trainer_params={"max_steps": args.steps, "accelerator": args.accelerator, "devices": 1,
                        "num_sanity_val_steps": 0, "enable_model_summary": False,
                        "log_every_n_steps": max(1, min(50, epoch_steps))},
        checkpoint_params={"monitor": "val_loss", "mode": "min", "save_top_k": 1, "save_last": False,
                           "auto_insert_metric_name": False},
        early_stopping_params={"monitor": "val_loss", "mode": "min", "patience": args.patience},
        logger="none",
        seed=args.seed,
    )


def train_care(args: argparse.Namespace) -> dict:
    """Train, copy the best checkpoint to OUT/care_best.ckpt, write OUT/care_train.json; returns its dict."""
    torch.set_num_threads(args.threads)
    data = read_training_npz(args.data)
    n_train, patch = data["train_x"].shape[0], data["train_x"].shape[1]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = care_configuration(args, patch, n_train)
    timer = StepTimer()
    careamist = CAREamist(config, work_dir=out, callbacks=[timer], enable_progress_bar=False)
    start = time.perf_counter()
    careamist.train(train_data=data["train_x"], train_data_target=data["train_y"],
                    val_data=data["val_x"], val_data_target=data["val_y"])
    seconds = time.perf_counter() - start
    best = careamist.trainer.checkpoint_callback.best_model_path
    if not best:
        raise RuntimeError("CAREamics saved no best checkpoint (no validation ran?)")
    shutil.copyfile(best, out / "care_best.ckpt")
    losses = careamist.get_losses()
    summary = {
        "careamics": __import__("careamics").__version__, "torch": torch.__version__,
        "data": str(args.data), "n_train": int(n_train), "n_val": int(data["val_x"].shape[0]), "patch": int(patch),
        "settings": {key: getattr(args, key) for key in ("steps", "batch_size", "depth", "channels", "lr",
                                                          "val_every", "patience", "seed", "threads")},
        "normalization": {"percentiles": list(PERCENTILES), "map": "from the input, applied to input and target"},
        "steps_per_epoch": config.training_config.trainer_params["limit_train_batches"],
        "optimizer_steps": int(careamist.trainer.global_step), "epochs": int(careamist.trainer.current_epoch),
        "stopped_early": int(careamist.trainer.global_step) < args.steps,
        "best_val_loss": float(careamist.trainer.checkpoint_callback.best_model_score),
        "val_loss": [float(v) for v in losses.val_loss.value],  # one per epoch
        "seconds": round(seconds, 3), "train_step_seconds": round(timer.seconds / max(timer.steps, 1), 5),
        "train_step_cpu_seconds": round(timer.cpu_seconds / max(timer.steps, 1), 5),
        "checkpoint": "care_best.ckpt",
    }
    (out / "care_train.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="training .npz (care_io.write_training_npz)")
    parser.add_argument("--out", required=True, type=Path, help="output folder for the model")
    parser.add_argument("--steps", required=True, type=int, help="optimizer steps in all")
    parser.add_argument("--batch-size", type=int, default=16, help="patches per step (CSBDeep: 16)")
    parser.add_argument("--depth", type=int, default=2, help="UNet depth (poolings; CSBDeep CARE: 2)")
    parser.add_argument("--channels", type=int, default=32, help="UNet channels at the first level (CSBDeep: 32)")
    parser.add_argument("--lr", type=float, default=4e-4, help="Adam learning rate (CSBDeep CARE's default)")
    parser.add_argument("--val-every", type=int, default=100, help="steps per epoch = between validations")
    parser.add_argument("--patience", type=int, default=10, help="early stopping: validations without progress")
    parser.add_argument("--seed", type=int, default=1, help="CAREamics' seed (>= 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the 2 shared cores)")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.seed < 1 or args.val_every < 1:
        parser.error("--steps, --seed and --val-every must be >= 1")
    return args


if __name__ == "__main__":
    print(json.dumps(train_care(parse_args()), indent=2))
