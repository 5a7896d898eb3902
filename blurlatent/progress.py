"""Progress on stderr: one rich bar for every long job (synth, prepare, evaluate, folder inference, training)."""

from __future__ import annotations

import contextlib

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True):
    """A rich progress bar on stderr; yields ``advance(n=1)``. A no-op when ``enabled`` is False."""
    if not enabled:
        yield lambda n=1: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


@contextlib.contextmanager
def tile_progress(description: str, enabled: bool = True):
    """A bar over the tiles of one large image; yields ``update(done, total)`` (``Predictor.combine``'s
    ``progress``). The bar appears on the first update of an image cut into several tiles, so a whole image
    shows none; a no-op when ``enabled`` is False."""
    state: dict = {}
    if not enabled:
        yield None
        return

    def update(done: int, total: int) -> None:
        if total <= 1:
            return
        if "bar" not in state:
            state["bar"] = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                    transient=False)
            state["bar"].start()
            state["task"] = state["bar"].add_task(f"{description} (tiles)", total=total)
        state["bar"].update(state["task"], completed=done, total=total)

    try:
        yield update
    finally:
        if "bar" in state:
            state["bar"].stop()


class EpochProgress:
    """A rich progress bar on stderr with the running loss and triplets/s, and one summary line per epoch;
    a no-op when not ``enabled``."""

    def __init__(self, enabled: bool):
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        if enabled:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.1f} triplets/s"),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=False)
            self.bar.start()

    def start_epoch(self, epoch: int, epochs: int, total: int, done: int) -> None:
        """Epoch ``epoch`` of ``epochs`` (1-based) with ``total`` steps, ``done`` of them already."""
        if self.bar:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(f"epoch {epoch}/{epochs}", total=total, completed=done, loss=float("nan"),
                                          rate=0.0)

    def update(self, step: int, loss: float, rate: float) -> None:
        if self.bar and self.task is not None:
            self.bar.update(self.task, completed=step, loss=loss, rate=rate)

    def end_epoch(self, m: dict) -> None:
        """The summary line of an epoch's metrics (a ``metrics.jsonl`` line)."""
        if self.bar:
            val = f"val {m['val_loss']:.4f}" if "val_loss" in m else "no val split"
            self.bar.console.print(f"epoch {m['epoch']}: train {m['train_loss']:.4f}, {val}"
                                   f"{' (best)' if m['best'] else ''}, {m['triplets_per_s']:.1f} triplets/s",
                                   highlight=False)

    def close(self) -> None:
        if self.bar:
            self.bar.stop()
