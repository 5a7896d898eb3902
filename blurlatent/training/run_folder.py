"""The run folder ``train`` writes and the rules for resuming it (its per-epoch logs: ``logs``).

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` and ``metrics.csv`` (``logs``),
``last.pt`` (every epoch, and on Ctrl-C), ``best.pt`` (lowest validation loss) and ``strips/``. A new
run writes its output marker first (``outputs``: the files a run writes); a folder holding anything else, or
without that marker, is never replaced, even with ``force``, and a second writer of the folder is refused (its
lock). Resuming
continues ``last.pt`` with the run's own config; only
``config.RESUMABLE_CHANGES`` may differ, and the store's location (``data.store``: saved absolute; an older
run's relative path is looked for from here and from the run folder's parents; ``store`` points at a moved
store, which must be the one the run trained on).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from blurlatent.config import RESUMABLE_CHANGES, TrainConfig, from_dict, model_config, override, to_dict, upgrade
from blurlatent.errors import Message, UsageError
from blurlatent.files.atomic import MB, disk_space, missing_folders, remove_empty_folders
from blurlatent.files.output_folders import FolderLock, check_output_folder, read_marker, remove_owned, write_marker
from blurlatent.inference.builtin import checkpoint_file
from blurlatent.nets.checkpoint import check_resumable, load_checkpoint, save_checkpoint, tensors_in
from blurlatent.prepare.store import MANIFEST, Store

log = logging.getLogger(__name__)

# What a run writes into its folder; replacing a run (force) removes these and nothing else.
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "metrics.csv", "config.yaml")
RUN_PATTERNS = ("strips/epoch_*.png", "tensorboard/events.out.tfevents.*")
COMMAND = "train"  # the run folder's output marker signature (``outputs``)
# Where the run's data lives, not how it trains: may differ on resume (a moved store; relative → absolute).
LOCATION_KEYS = ("data.store",)


def is_run_folder(out: Path) -> bool:
    """True when ``out`` holds a run ``train`` started: its output marker says so."""
    record = read_marker(out) if out.is_dir() else None
    return record is not None and record.get("command") == COMMAND


def mark_run(out: Path) -> None:
    """The run folder's output marker: the files a run writes (``outputs``)."""
    write_marker(out, COMMAND, RUN_FILES, patterns=RUN_PATTERNS)


def require_checkpoint(run: Path) -> Path:
    """``run``/last.pt, or UsageError saying why the folder cannot be resumed."""
    last = run / "last.pt"
    if last.is_file():
        return last
    if is_run_folder(run):
        why = "the run stopped before its first checkpoint: rerun its `blurlatent train` command with {force=True}"
    else:
        why = "pass a run folder written by `blurlatent train`"
    raise UsageError(f"{{resume}} {run}: no last.pt there; {why}", "resume", "force")


def open_run_folder(out: Path, resume: bool, force: bool, init: str | Path | None = None) -> list[Path]:
    """Check (resume: ``last.pt`` is there) or create (a new run) the run folder ``out``; returns the
    folders this call created, deepest first, for ``discard_unstarted`` (empty: it existed).

    A new run replaces an earlier run only with ``force``, and then removes only what a run writes; a
    folder ``train`` did not write, or holding anything else, is never replaced (``outputs``), nor one that
    holds the ``init`` checkpoint. Raises UsageError.
    """
    if resume:
        require_checkpoint(out)
        if is_run_folder(out):
            mark_run(out)  # a run of a version before metrics.csv/tensorboard: its marker lists them now
        return []
    option = Message("another run folder, or continue this run with {resume=True}", "resume")
    inputs = [checkpoint_file(init, "init")] if init else []  # a built-in model's name: its file
    if check_output_folder(out, COMMAND, force, "a training run", inputs=inputs, option=option):
        _remove_run_files(out)
    created = missing_folders(out)
    out.mkdir(parents=True, exist_ok=True)
    mark_run(out)  # the folder is a run's before anything else is written
    (out / "metrics.jsonl").touch()
    return created


@contextlib.contextmanager
def run_folder(out: Path, resume: bool, force: bool, init: str | Path | None = None) -> Iterator[list[Path]]:
    """``open_run_folder`` and hold the folder's lock for the block (``outputs.FolderLock``: a second writer
    is refused); a new run that fails before its first checkpoint leaves nothing (``discard_unstarted``)."""
    with FolderLock(out, COMMAND):
        created = open_run_folder(out, resume, force, init)
        try:
            yield created
        except BaseException:
            if not resume:
                discard_unstarted(out, created)
            raise


def _remove_run_files(out: Path) -> None:
    if read_marker(out) is not None:
        remove_owned(out)


def discard_unstarted(out: Path, created: list[Path]) -> None:
    """A run that fails before its first checkpoint leaves nothing to resume: remove what it wrote, and the
    folders it created (``created``, from ``open_run_folder``), so the corrected rerun needs no force.
    Runs with a ``last.pt`` are kept."""
    if (out / "last.pt").exists():
        return
    _remove_run_files(out)
    remove_empty_folders(created)


def append_metrics(out: Path, metrics: dict) -> None:
    """Add one epoch's line to ``out``/metrics.jsonl (a full disk: one RuntimeFailure naming it)."""
    with disk_space(out / "metrics.jsonl", 4096), open(out / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(metrics) + "\n")


def save_epoch(out: Path, payload: dict, best: bool = False, metrics: dict | None = None) -> None:
    """``last.pt`` (and ``best.pt``), then the metrics line. Checkpoint first: a kill between the two leaves a
    resumable run whose missing line the resume restores from the checkpoint (the reverse order left none)."""
    save_run_checkpoint(out / "last.pt", payload)
    if best:
        save_run_checkpoint(out / "best.pt", payload)
    if metrics is not None:
        append_metrics(out, metrics)


def save_run_checkpoint(path: Path, payload: dict) -> None:
    """``checkpoint.save_checkpoint`` after checking the disk holds it (its tensors' bytes and 1 MB of slack;
    the old file stays until the new one is whole); a full disk is one RuntimeFailure naming ``path``."""
    need = sum(t.numel() * t.element_size() for t in tensors_in(payload)) + MB
    with disk_space(path, need):
        save_checkpoint(path, payload)


def metric_lines(path: Path) -> list[dict]:
    """The epochs logged in ``metrics.jsonl``. A torn last line (killed while writing it) is dropped with a
    notice; any other unreadable line is a UsageError naming the file and line."""
    lines = [line for line in (path.read_text().splitlines() if path.is_file() else []) if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            rows.append({**row, "epoch": int(row["epoch"])})  # "epoch": "3" must compare as 3
        except (ValueError, KeyError, TypeError, OverflowError):  # OverflowError: int(Infinity)
            if number == len(lines):
                log.warning("%s: dropped a partial last line (the run was stopped while writing it)", path)
                break
            raise UsageError(f"{path}: line {number} is not a metrics record ({line[:40]!r}); delete that line "
                             "or restore the file, then resume") from None
    return rows


def trim_metrics(path: Path, epochs_done: int, last: dict | None = None) -> None:
    """Make ``metrics.jsonl`` end at the checkpoint's epoch: drop lines of later epochs (redone on resume)
    and restore the checkpoint's own line (``last``) when a kill came between the checkpoint and the line."""
    keep = [row for row in metric_lines(path) if row["epoch"] <= epochs_done]
    if last and last.get("epoch") == epochs_done and not any(row["epoch"] == epochs_done for row in keep):
        keep.append(last)
    path.write_text("".join(json.dumps(row) + "\n" for row in keep))


# --- resuming ----------------------------------------------------------------------------------------------


def resume_config(run: str | Path, changes: dict[str, Any] | None = None, out: str | Path | None = None) -> TrainConfig:
    """The config that continues the run in folder ``run``: its ``last.pt``'s, with ``changes`` applied.

    ``changes``: dotted config keys (``{"optim.epochs": 60}``); None values are ignored. Only
    ``RESUMABLE_CHANGES`` may change, and ``data.store``: where the run's store is now (``run_store``).
    ``out``, when given, must be ``run`` itself. Raises UsageError otherwise, or when ``run`` holds no ``last.pt``.
    """
    run = Path(run)
    if out is not None and Path(out).resolve() != run.resolve():
        raise UsageError(f"{{out}} {out} and {{resume}} {run} differ; give only the run folder to resume", "out",
                         "resume")
    last = require_checkpoint(run)
    changes = {key: value for key, value in (changes or {}).items() if value is not None}
    refused = [key for key in changes if key not in RESUMABLE_CHANGES + LOCATION_KEYS]
    if refused:
        raise UsageError(f"{{resume}} continues a run with its own settings; drop {', '.join(refused)} "
                         f"(only {', '.join(RESUMABLE_CHANGES)} may change, and the store's location)", "resume")
    ckpt = load_checkpoint(last)
    check_resumable(ckpt, str(last))  # before anything is written into the run folder
    config = override(from_dict(TrainConfig, ckpt["config"], f"{last}: config"), changes)
    config.data.store = run_store(run, config.data.store, "data.store" in changes, ckpt.get("store"))
    return config


def init_model(path: str | Path) -> dict[str, Any]:
    """The model config of checkpoint ``path`` as dotted keys (``{"model.widths": [...]}``): a run started from
    it (``init``) builds the same model unless told otherwise; ``path`` may name a built-in model ("w1"). Raises
    UsageError (missing or unreadable file)."""
    path = checkpoint_file(path, "init")
    if not path.is_file():
        raise UsageError(f"{{init}} {path}: checkpoint not found; pass a .pt written by `blurlatent train` or a "
                         "built-in model's name (`blurlatent models`)", "init")
    # a checkpoint of an older version (no ``arch``: the paper's model) gets the meaning it was written with
    ckpt = load_checkpoint(path)
    try:
        model = to_dict(model_config(ckpt["config"], str(path), "model."))
    except UsageError as exc:  # the init's own config is at fault: name the parameter that brought it
        raise UsageError(f"{{init}} {exc}", "init") from None
    return {f"model.{key}": value for key, value in model.items()}


def store_argument(positional: str | Path | None, option: str | Path | None) -> str | None:
    """The store given as an argument or an option (either; both only when they agree). Raises UsageError."""
    if positional is not None and option is not None and Path(positional).absolute() != Path(option).absolute():
        raise UsageError(f"store {positional} and store {option} differ; give the store once")
    given = positional if positional is not None else option
    return None if given is None else str(given)


def run_store(run: Path, saved: str, moved: bool, recorded: dict | None) -> str:
    """The absolute path of run ``run``'s store: ``saved`` (or, when ``moved``, the store the user gave). A
    relative path from an older run is tried from the working folder, then from the run folder's parents.
    A store whose manifest fingerprint differs from the one the run ``recorded`` is refused."""
    path = Path(saved)
    candidates = [path] if path.is_absolute() or moved else [path, *(p / path for p in run.absolute().parents)]
    found = next((c for c in candidates if (c / MANIFEST).is_file()), None)
    if found is None:
        where = "" if path.is_absolute() or moved else " (saved relative to the folder the run started in)"
        raise UsageError(f"{{resume}} {run}: its store {saved} is not found{where}; pass the store's current "
                         "location with {data.store=PATH}", "resume", "data.store")
    fingerprint = recorded.get("fingerprint") if isinstance(recorded, dict) else None  # a hand-edited file: no check
    if fingerprint and Store(found).manifest.get("fingerprint") != fingerprint:
        raise UsageError(f"store {found}: not the store run {run} trained on (its manifest fingerprint differs); "
                         "pass the run's own store")
    return str(found.absolute())


def check_resume_config(saved: dict, config: TrainConfig, run: Path) -> None:
    """UsageError naming the first key, outside ``RESUMABLE_CHANGES``, where ``config`` differs from ``saved``
    (a checkpoint's config, of its version: ``upgrade``)."""
    a, b = dict(_flat(upgrade(saved, str(run)))), dict(_flat(to_dict(config)))
    for key in sorted(set(a) | set(b)):
        if key not in RESUMABLE_CHANGES + LOCATION_KEYS and a.get(key) != b.get(key):
            raise UsageError(f"{{resume}} {run}: {key} was {a.get(key)!r} in that run, now {b.get(key)!r}; resume "
                             f"with the run's settings (only {', '.join(RESUMABLE_CHANGES)} may change) or start a "
                             "new run with {init}", "resume", "init")


def _flat(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v
