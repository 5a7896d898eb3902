"""Output folders: which ones a command may replace, and one writer at a time (issue 11).

THE rule: a command replaces only what it can prove it wrote. Every output folder carries a marker,
``.blurlatent-output.json``, with the tool's signature (tool, version, command) and what the command wrote
there: exact paths, patterns for files it adds later (``strips/epoch_*.png``) and the output folders of other
commands inside it (``nested``, each with its own marker). ``check_output_folder`` refuses a folder holding
anything else, naming it, even with ``force``; with ``force`` an earlier output of the same command is
replaced — ``remove_owned`` deletes exactly what the marker lists, and a command that builds its folder in a
temp swaps it in whole, which is the same once nothing else is there. Callers check every argument first.
A folder without a marker (written by someone else, or by a blurlatent from before markers) is not ours: it is
refused unless it is empty.

Locks: ``lock_folder(out)`` holds ``.NAME.lock`` beside ``out`` (an flock, and the writer's pid inside)
while a command writes it; a second writer gets "OUT is in use by pid N" (exit 2). The kernel drops an
flock when its process dies, so the lock file of a dead pid is simply taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from blurlatent import __version__
from blurlatent.errors import Message, UsageError
from blurlatent.files.atomic import TEMP_TAIL, check_output_location, missing_folders, remove_empty_folders, write_json

if sys.platform != "win32":  # Windows has no flock: folders are then not locked
    import fcntl

MARKER = ".blurlatent-output.json"
TOOL = "blurlatent"
# what a killed writer leaves beside an entry NAME: its temps (files: .NAME.<pid>@<host>.<x>.tmp) and its lock
DEBRIS = re.compile(rf"^\.(?P<name>.+?)({TEMP_TAIL}|\.lock)$")


def write_marker(folder: str | Path, command: str, files: Sequence[str] | None = None, patterns: Sequence[str] = (),
                 nested: dict[str, str] | None = None) -> None:
    """Sign ``folder`` as the output of ``command``: ``files`` (paths relative to it; None: every file now
    under it, for a folder built in a temp), ``patterns`` (fnmatch, for files written later) and ``nested``
    ({subfolder: command} whose own marker says what is inside)."""
    folder = Path(folder)
    if files is None:
        files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MARKER]
    write_json(folder / MARKER, {"tool": TOOL, "version": __version__, "command": command, "files": sorted(files),
                                 "patterns": list(patterns), "nested": dict(nested or {})})


def read_marker(folder: str | Path) -> dict | None:
    """The marker of ``folder``: None when it has none, {} when it is not a readable marker of this tool."""
    path = Path(folder) / MARKER
    if not os.path.lexists(path):
        return None
    try:
        record = json.loads(path.read_text()) if path.is_file() and not path.is_symlink() else None
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) and record.get("tool") == TOOL else {}


@dataclass
class Owned:
    """What a marker says its command wrote."""

    files: frozenset = frozenset()
    patterns: tuple = ()
    nested: dict = field(default_factory=dict)

    @classmethod
    def of(cls, record: dict) -> Owned:
        return cls(frozenset(record.get("files") or ()), tuple(record.get("patterns") or ()),
                   dict(record.get("nested") or {}))

    def file(self, rel: str) -> bool:
        return rel in self.files or any(fnmatchcase(rel, p) for p in self.patterns)

    def folder(self, rel: str) -> bool:
        return any(p.startswith(rel + "/") for p in (*self.files, *self.patterns, *self.nested))

    def entry(self, rel: str) -> bool:
        return rel in self.nested or self.file(rel) or self.folder(rel)


def strangers(folder: str | Path, command: str) -> list[str]:
    """What in ``folder`` ``command`` did not provably write (relative paths, folders with a trailing /):
    [] for an empty folder or one that is all ``command``'s output (its marker says so)."""
    folder = Path(folder)
    entries = sorted(folder.iterdir())
    if not entries:
        return []
    record = read_marker(folder)
    if record is None:  # no marker: not ours
        return [entries[0].name]
    if record.get("command") != command:
        return [MARKER]
    return _unowned(folder, Owned.of(record), "")


def _unowned(folder: Path, owned: Owned, rel_dir: str) -> list[str]:
    found = []
    for entry in sorted(folder.iterdir()):
        rel, debris = rel_dir + entry.name, DEBRIS.match(entry.name)
        if rel == MARKER or (debris and owned.entry(rel_dir + debris["name"])):
            continue
        if entry.is_symlink():
            found.append(rel)
        elif entry.is_dir() and rel in owned.nested:
            found += [f"{rel}/{s}" for s in strangers(entry, owned.nested[rel])]
        elif entry.is_dir():
            found += _unowned(entry, owned, rel + "/") if owned.folder(rel) else [rel + "/"]
        elif not owned.file(rel):
            found.append(rel)
    return found


def remove_owned(folder: str | Path) -> None:
    """Delete what the marker of ``folder`` lists (with its temps and stale locks), the folders that leaves
    empty, then the marker; anything else stays. Call it after ``check_output_folder`` said the folder is ours."""
    folder = Path(folder)
    _remove(folder, Owned.of(read_marker(folder) or {}), "")
    (folder / MARKER).unlink(missing_ok=True)


def _remove(folder: Path, owned: Owned, rel_dir: str) -> None:
    for entry in sorted(folder.iterdir()):
        rel, debris = rel_dir + entry.name, DEBRIS.match(entry.name)
        if entry.is_symlink() or rel == MARKER:
            continue
        if debris and owned.entry(rel_dir + debris["name"]):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        elif entry.is_dir() and (rel in owned.nested or owned.folder(rel)):
            remove_owned(entry) if rel in owned.nested else _remove(entry, owned, rel + "/")
            with contextlib.suppress(OSError):
                entry.rmdir()  # only when empty
        elif entry.is_file() and owned.file(rel):
            entry.unlink()


def check_not_input(out: str | Path, inputs: Sequence[str | Path]) -> None:
    """UsageError when the output folder ``out`` is, or holds, one of ``inputs`` (also through links)."""
    out = Path(out)
    if not out.exists():
        return
    real = out.resolve()
    for source in inputs:
        if source is None or not Path(source).exists():
            continue
        if os.path.samefile(out, source) or real in Path(source).resolve().parents:
            raise UsageError(f"{out}: is or holds the input {source}; choose another output folder (an input is "
                             "never replaced, even with {force=True})", "force")


def check_output_folder(out: str | Path, command: str, force: bool, what: str, inputs: Sequence[str | Path] = (),
                        option: str | Message = "another output folder") -> bool:
    """Check that ``command`` may write the folder ``out``; True when an earlier output of it gets replaced.

    A folder holding anything ``command`` did not provably write (``strangers``) is never replaced, even with
    ``force`` — ``--force`` on a mistyped path must not wipe a user's data — and the message names what is
    there. An earlier output of ``command`` (``what``, e.g. "a prepared store") is replaced only with
    ``force``. An output that is or holds one of ``inputs`` is refused. ``option``: what to choose instead, a
    ``Message`` where it names parameters. Raises UsageError.
    """
    out = Path(out)
    option = option if isinstance(option, Message) else Message(option)
    params = ("force", *option.names)  # the messages below name force, and what ``option`` names
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is a file; choose a folder name")
    check_output_location(out)
    check_not_input(out, inputs)
    if not out.is_dir() or not any(out.iterdir()):
        return False
    record = read_marker(out)
    if record and record.get("command") != command:
        raise UsageError(f"{out}: is not {what} (it holds the output of blurlatent {record.get('command')}); choose "
                         f"{option.template}, nothing there is replaced even with {{force=True}}", *params)
    found = strangers(out, command)
    if found:
        names = ", ".join(repr(n) for n in found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise UsageError(f"{out}: is not {what} (it holds {names}); choose {option.template}, nothing there is "
                         "replaced even with {force=True}", *params)
    if not force:
        raise UsageError(f"{out}: already exists and holds {what}; pass {{force=True}} to replace it or choose "
                         f"{option.template}", *params)
    return True


# --- one writer per output folder --------------------------------------------------------------------------


class FolderLock:
    """The lock of output ``out``, a folder or a file (``.NAME.lock`` beside it: blur and deblur lock their output
    file, or their folder in folder mode); ``with FolderLock(out, command):`` holds it."""

    def __init__(self, out: str | Path, command: str = ""):
        self.out = Path(out)
        real = self.out.resolve()  # one lock whatever path (or link) names the folder
        self.path, self.command = real.parent / f".{real.name}.lock", command
        self.fd: int | None = None
        self.created: list[Path] = []

    def acquire(self) -> FolderLock:
        check_output_location(self.out)  # below a file, or in a folder we cannot write: the usual one line
        self.created = missing_folders(self.path.parent)  # writers create missing parents; removed on release
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if sys.platform != "win32":
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held by a live process
                holder = (os.read(fd, 256).decode(errors="replace").split() or ["?"])
                os.close(fd)
                self._remove_created()
                where = f" on {holder[1]}" if len(holder) > 1 and holder[1] != socket.gethostname() else ""
                what = f" (blurlatent {holder[2]})" if len(holder) > 2 else ""
                raise UsageError(f"{self.out} is in use by pid {holder[0]}{where}{what}; wait for it to end or choose "
                                 "another output") from None
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            os.close(fd)  # its holder released and removed it between our open and flock: lock the new one
        self.fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()} {self.command or '-'}\n".encode())
        except BaseException:  # a full disk: give the lock back, or this process would hold it until it exits
            self.release()
            raise
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None
        self._remove_created()

    def _remove_created(self) -> None:
        remove_empty_folders(self.created)
        self.created = []

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def claim_output_folder(out: str | Path, command: str, force: bool, what: str, inputs: Sequence[str | Path] = (),
                        option: str | Message = "another output folder") -> Iterator[bool]:
    """Lock ``out`` for ``command`` and check it (``check_output_folder``) under the lock; yields whether an
    earlier output gets replaced. The lock is released when the block ends."""
    check_output_folder(out, command, force, what, inputs, option)  # fail fast, before the lock file
    with FolderLock(out, command):
        yield check_output_folder(out, command, force, what, inputs, option)
