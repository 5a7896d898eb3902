"""The run folder ``train`` writes, the rules for resuming it, and the per-epoch report on stderr.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one line per epoch),
``last.pt`` (every epoch, and on Ctrl-C), ``best.pt`` (lowest validation loss) and ``strips/``. A new
run writes an empty ``metrics.jsonl`` first, so a folder with ``last.pt`` or ``metrics.jsonl`` is a run;
any other non-empty folder is not, and is never replaced, even with ``force`` (``files.check_output_folder``,
the one output policy). Resuming continues ``last.pt`` with the run's own config; only
``config.RESUMABLE_CHANGES`` may differ.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .checkpoint import load_checkpoint
from .config import RESUMABLE_CHANGES, TrainConfig, from_dict, override, to_dict
from .errors import UsageError
from .files import check_output_folder

# What a run writes into its folder; replacing a run (force) removes these and nothing else.
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "config.yaml")
RUN_FOLDERS = ("strips",)


def is_run_folder(out: Path) -> bool:
    """True when ``out`` holds a run ``train`` started: it has ``last.pt`` or ``metrics.jsonl``."""
    return (out / "last.pt").is_file() or (out / "metrics.jsonl").is_file()


def _stranger(out: Path) -> str | None:
    return None if is_run_folder(out) else sorted(out.iterdir())[0].name


def require_checkpoint(run: Path) -> Path:
    """``run``/last.pt, or UsageError saying why the folder cannot be resumed."""
    last = run / "last.pt"
    if last.is_file():
        return last
    if is_run_folder(run):
        why = "the run stopped before its first checkpoint: rerun its `blurlatent train` command with force=True"
    else:
        why = "pass a run folder written by `blurlatent train`"
    raise UsageError(f"resume {run}: no last.pt there; {why}")


def open_run_folder(out: Path, resume: bool, force: bool) -> Path | None:
    """Check (resume: ``last.pt`` is there) or create (a new run) the run folder ``out``; returns the
    topmost folder this call created, for ``discard_unstarted`` (None: it existed).

    A new run replaces an earlier run only with ``force``, and then removes only what a run writes; a
    folder ``train`` did not write is never replaced. Raises UsageError.
    """
    if resume:
        require_checkpoint(out)
        return None
    option = "another run folder, or continue this run with resume=True"
    if check_output_folder(out, force, _stranger, "a training run", option):
        _remove_run_files(out)
    created = None
    if not out.exists():
        created = out.absolute()
        while not created.parent.exists():
            created = created.parent
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").touch()  # marks the folder as a run's before anything else is written
    return created


def _remove_run_files(out: Path) -> None:
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        shutil.rmtree(out / name, ignore_errors=True)


def discard_unstarted(out: Path, created: Path | None) -> None:
    """A run that fails before its first checkpoint leaves nothing to resume: remove what it wrote, and the
    folders it created (``created``, from ``open_run_folder``), so the corrected rerun needs no force.
    Runs with a ``last.pt`` are kept."""
    if (out / "last.pt").exists():
        return
    _remove_run_files(out)
    folder = out.absolute()
    while created is not None:
        try:
            folder.rmdir()
        except OSError:  # not empty: something else was put there meanwhile, leave it
            break
        if folder == created:
            break
        folder = folder.parent


def append_metrics(out: Path, metrics: dict) -> None:
    """Add one epoch's line to ``out``/metrics.jsonl."""
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(metrics) + "\n")


def trim_metrics(path: Path, epochs_done: int, last: dict | None = None) -> None:
    """Make ``metrics.jsonl`` end at the checkpoint's epoch: drop lines of later epochs (redone on resume)
    and restore the checkpoint's own line (``last``) when a kill came between the checkpoint and the line."""
    lines = path.read_text().splitlines() if path.is_file() else []
    keep = [line for line in lines if line.strip() and json.loads(line)["epoch"] <= epochs_done]
    if last and last.get("epoch") == epochs_done and not any(json.loads(line)["epoch"] == epochs_done for line in keep):
        keep.append(json.dumps(last))
    path.write_text("".join(line + "\n" for line in keep))


# --- resuming ----------------------------------------------------------------------------------------------


def resume_config(run: str | Path, changes: dict[str, Any] | None = None, out: str | Path | None = None) -> TrainConfig:
    """The config that continues the run in folder ``run``: its ``last.pt``'s, with ``changes`` applied.

    ``changes``: dotted config keys (``{"optim.epochs": 60}``); None values are ignored. Only
    ``RESUMABLE_CHANGES`` may change. ``out``, when given, must be ``run`` itself. Raises UsageError
    otherwise, or when ``run`` holds no ``last.pt``.
    """
    run = Path(run)
    if out is not None and Path(out).resolve() != run.resolve():
        raise UsageError(f"out {out} and resume {run} differ; give only the run folder to resume")
    last = require_checkpoint(run)
    refused = [key for key, value in (changes or {}).items() if value is not None and key not in RESUMABLE_CHANGES]
    if refused:
        raise UsageError(f"resume continues a run with its own settings; drop {', '.join(refused)} "
                         f"(only {', '.join(RESUMABLE_CHANGES)} may change)")
    config = from_dict(TrainConfig, load_checkpoint(last)["config"], f"{last}: config")
    return override(config, changes or {})


def check_resume_config(saved: dict, config: TrainConfig, run: Path) -> None:
    """UsageError naming the first key, outside ``RESUMABLE_CHANGES``, where ``config`` differs from ``saved``
    (a checkpoint's config)."""
    a, b = dict(_flat(saved)), dict(_flat(to_dict(config)))
    for key in sorted(set(a) | set(b)):
        if key not in RESUMABLE_CHANGES and a.get(key) != b.get(key):
            raise UsageError(f"resume {run}: {key} was {a.get(key)!r} in that run, now {b.get(key)!r}; resume with "
                             f"the run's settings (only {', '.join(RESUMABLE_CHANGES)} may change) or start a new run "
                             "with init")


def _flat(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v
