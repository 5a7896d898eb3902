"""What a training run shows and keeps per epoch, beside its checkpoints: the logs people read.

``EpochLog`` (rank 0 only; a no-op elsewhere) writes, once per epoch,

    metrics.jsonl   one JSON line (``run.append_metrics``)
    metrics.csv     the same row under a header (spreadsheets, pandas), appended as it goes
    stderr          one plain line, when no progress bar draws it (``echo``: stderr is not a terminal, as
                    under SLURM or nohup, where a bar would be one unreadable line of carriage returns)
    tensorboard/    the scalars as TensorBoard events (``log="tensorboard"``, the optional extra
                    ``blurlatent[tensorboard]``)

On resume the run's logs are cut back to its checkpoint (``trim_logs``): the JSON lines first, then the CSV
rewritten from them, and TensorBoard events of later epochs purged, so all three always hold the same epochs.
``save_strip`` draws the paper's Fig. 2 strip of the model at an epoch.
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
from torch import nn

from blurlatent.config import TrainConfig
from blurlatent.errors import UsageError
from blurlatent.files.atomic import disk_space
from blurlatent.files.pictures import save_grid
from blurlatent.inference.predictor import Predictor
from blurlatent.prepare.store import Store
from blurlatent.training.run_folder import append_metrics, metric_lines, trim_metrics

CSV = "metrics.csv"
JSONL = "metrics.jsonl"
TENSORBOARD = "tensorboard"


def check_log(log: str) -> None:
    """UsageError when ``log`` is "tensorboard" and the tensorboard package is missing (before any folder)."""
    if log == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise UsageError("{log} tensorboard needs the tensorboard package: pip install 'blurlatent[tensorboard]'",
                         "log")


def epoch_line(m: dict, epochs: int) -> str:
    """One epoch's metrics (a ``metrics.jsonl`` row) as one readable line."""
    val = f"val {m['val_loss']:.4f}" if "val_loss" in m else "no val split"
    return (f"epoch {m['epoch']}/{epochs}: train {m['train_loss']:.4f}, {val}{' (best)' if m['best'] else ''}, "
            f"lr {m['lr']:.3g}, {m['triplets_per_s']:.1f} triplets/s, {m['seconds']:.1f} s")


def write_csv(path: Path, rows: list[dict]) -> None:
    """``rows`` under a header of their keys (first row's order, later keys after), replacing ``path``."""
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fields, restval="")
        writer.writeheader()
        writer.writerows(rows)


def append_csv(path: Path, row: dict) -> None:
    """Add ``row`` under the file's header (written from ``row`` when the file is new or empty)."""
    header = None
    if path.is_file():
        with open(path, newline="") as fh:
            header = next(csv.reader(fh), None)
    if not header:
        write_csv(path, [row])
        return
    with disk_space(path, 4096), open(path, "a", newline="") as fh:
        csv.DictWriter(fh, header, restval="", extrasaction="ignore").writerow(row)


def trim_logs(out: Path, epochs_done: int, last: dict | None = None) -> None:
    """End the run's logs at its checkpoint's epoch (``run.trim_metrics``), the CSV rewritten from the JSON lines."""
    trim_metrics(out / JSONL, epochs_done, last)
    write_csv(out / CSV, metric_lines(out / JSONL))


def scalar_tag(key: str) -> str:
    """``train_loss`` → ``loss/train`` (TensorBoard groups a term's train and val curves), else the key."""
    split, _, term = key.partition("_")
    return f"{term}/{split}" if split in ("train", "val") and term else key


class EpochLog:
    """The per-epoch logs of a run folder (see the module); a context manager that closes TensorBoard's writer.

    ``enabled``: this process logs (rank 0). ``echo``: print each epoch's line on stderr. ``resumed_at``: the
    epochs already done when resuming (TensorBoard events of later epochs are purged), None for a new run.
    """

    def __init__(self, out: Path, config: TrainConfig, enabled: bool, echo: bool, resumed_at: int | None = None):
        self.out, self.epochs, self.enabled, self.echo = Path(out), config.optim.epochs, enabled, echo
        self.writer = None
        if enabled and config.log == "tensorboard":
            check_log(config.log)
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when asked for

            purge = resumed_at + 1 if resumed_at is not None else None
            self.writer = SummaryWriter(str(self.out / TENSORBOARD), purge_step=purge)

    def write(self, metrics: dict) -> None:
        """One epoch's row in every log (after its checkpoint: see ``run.save_epoch``)."""
        if not self.enabled:
            return
        append_metrics(self.out, metrics)
        append_csv(self.out / CSV, metrics)
        if self.echo:
            print(epoch_line(metrics, self.epochs), file=sys.stderr, flush=True)
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                    self.writer.add_scalar(scalar_tag(key), value, metrics["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> EpochLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def save_strip(model: nn.Module, store: Store, config: TrainConfig, path: Path) -> None:
    """Paper Fig. 2 for the first crop: real planes lo..hi above, G(α z_hi + (1 − α) z_lo) below, with
    α = (p − lo)/(hi − lo) (Eq. 2, through ``inference.Predictor`` on an eval copy of ``model``)."""
    split = "val" if len(store.array(config.data.channel, "val")) else "train"
    crops = store.array(config.data.channel, split)
    lo = min(t[0] for t in config.data.triplets)
    hi = max(t[2] for t in config.data.triplets)
    planes = [p for p in store.planes if lo <= p <= hi]
    real = np.asarray(crops[0, [store.plane_index(p) for p in planes]], dtype=np.float32) / 255.0  # [P, H, W]
    alphas = [(p - lo) / (hi - lo) for p in planes]
    predictor = Predictor(model, config.data.normalize, fuse=False)
    decoded = predictor.combine(real[-1:], real[:1], alphas, "blur")[0]  # first = the sharper plane hi
    save_grid([list(real), list(decoded)], path, row_labels=["real", "interpolated"],
              col_labels=[f"z{p}" for p in planes], title=f"{config.reg}, {path.stem.replace('_', ' ')}")
