"""outputs: THE folder rule (replace only what the marker proves the command wrote; name anything else; a
folder of another command or without a marker is not ours) and the lock of
an output folder (one writer; a dead writer's lock is taken over). The commands' use of both, with real
second processes, is in ``test_bad_inputs_outputs.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from blurlatent import __version__
from blurlatent.errors import UsageError
from blurlatent.files.output_folders import (
    MARKER,
    FolderLock,
    check_output_folder,
    claim_output_folder,
    read_marker,
    remove_owned,
    strangers,
    write_marker,
)


def make(folder, *names):
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    return folder


def test_the_marker_signs_what_the_command_wrote(tmp_path):
    out = make(tmp_path / "out", "a.npy", "figures/x.png")
    write_marker(out, "prepare")
    record = json.loads((out / MARKER).read_text())
    assert record == {"tool": "blurlatent", "version": __version__, "command": "prepare",
                      "files": ["a.npy", "figures/x.png"], "patterns": [], "nested": {}}
    assert read_marker(out) == record and read_marker(tmp_path) is None
    (out / MARKER).write_text('{"tool": "something else"}')
    assert read_marker(out) == {}


def test_strangers_name_everything_the_marker_does_not_list(tmp_path):
    out = make(tmp_path / "run", "config.yaml", "strips/epoch_001.png", "sub/made.tif")
    write_marker(out, "train", ["config.yaml", "last.pt", "sub/made.tif"], patterns=["strips/epoch_*.png"],
                 nested={"report": "evaluate"})
    assert strangers(out, "train") == []
    make(out, ".last.pt.123@host.abc.tmp", ".report.lock", "strips/epoch_002.png")  # temps, a lock: ours
    make(out, "report/report.json")
    write_marker(out / "report", "evaluate")
    assert strangers(out, "train") == []
    make(out, "notes.txt", "strips/mine.png", "sub/deep/x", ".notes.txt.lock", "report/notes.md")
    (out / "link.pt").symlink_to(out / "config.yaml")
    assert strangers(out, "train") == [".notes.txt.lock", "link.pt", "notes.txt", "report/notes.md",
                                       "strips/mine.png", "sub/deep/"]
    assert strangers(out, "prepare") == [MARKER]  # another command's folder is not prepare's
    assert strangers(make(tmp_path / "plain", "x"), "train") == ["x"]  # no marker: not ours


def test_check_output_folder_replaces_only_an_earlier_output_of_the_same_command(tmp_path):
    out = make(tmp_path / "store", "w1_train.npy")
    write_marker(out, "prepare")
    with pytest.raises(UsageError, match="already exists and holds a store; pass force=True"):
        check_output_folder(out, "prepare", False, "a store")
    assert check_output_folder(out, "prepare", True, "a store") is True
    with pytest.raises(UsageError, match="holds the output of blurlatent prepare.*even with force=True"):
        check_output_folder(out, "synth", True, "a synth output")
    make(out, "a.txt", "b.txt", "c.txt", "d.txt")
    with pytest.raises(UsageError, match=r"\(it holds 'a.txt', 'b.txt', 'c.txt' and 1 more\); choose another output "
                                         "folder, nothing there is replaced even with force=True"):
        check_output_folder(out, "prepare", True, "a store")
    unmarked = make(tmp_path / "old", "w1_train.npy")  # no marker (a blurlatent before markers, or not ours)
    with pytest.raises(UsageError, match="'w1_train.npy'"):
        check_output_folder(unmarked, "prepare", True, "a store")
    assert check_output_folder(tmp_path / "new", "prepare", False, "a store") is False
    (tmp_path / "empty").mkdir()
    assert check_output_folder(tmp_path / "empty", "prepare", False, "a store") is False
    with pytest.raises(UsageError, match="is or holds the input"):
        check_output_folder(tmp_path, "prepare", True, "a store", inputs=[out / "w1_train.npy"])


def test_remove_owned_deletes_exactly_what_the_marker_lists(tmp_path):
    out = make(tmp_path / "demo", "demo.png", "run/last.pt", "run/strips/epoch_001.png", ".demo.png.1@h.x.tmp")
    write_marker(out / "run", "train", ["last.pt"], patterns=["strips/epoch_*.png"])
    write_marker(out, "demo", ["demo.png", "demo.json"], nested={"run": "train"})
    make(out, "mine.txt")
    remove_owned(out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["mine.txt"]


def test_a_second_lock_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with FolderLock(out, "train") as lock:
        assert lock.path == tmp_path / "a" / "b" / ".out.lock" and lock.path.read_text().split()[0] == str(os.getpid())
        with pytest.raises(UsageError, match=rf"out is in use by pid {os.getpid()} \(blurlatent train\); wait"):
            with claim_output_folder(out, "prepare", False, "a store"):
                pass
        assert lock.path.exists()  # the refused writer left the holder's lock alone
    assert not (tmp_path / "a").exists()  # released: the lock file and the folders it made are gone


def test_a_lock_that_cannot_be_written_is_given_back(tmp_path, monkeypatch):
    """A full disk while writing the holder's pid: the error propagates and the flock is released, or this
    process would refuse its own next writer until it exits."""
    def full(fd, length):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "ftruncate", full)
    with pytest.raises(OSError, match="No space left"):
        FolderLock(tmp_path / "out", "train").acquire()
    monkeypatch.undo()
    assert not (tmp_path / ".out.lock").exists()
    with FolderLock(tmp_path / "out", "train"):
        pass


def test_a_dead_writers_lock_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".out.lock").write_text(f"{dead.stdout.strip()} host train\n")  # killed: its file, no flock
    with claim_output_folder(tmp_path / "out", "train", False, "a run") as replacing:
        assert replacing is False
        assert (tmp_path / ".out.lock").read_text().split()[0] == str(os.getpid())
    assert not (tmp_path / ".out.lock").exists()
