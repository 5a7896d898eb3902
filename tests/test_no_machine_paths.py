"""Nothing the project ships holds a path, host or user name of the machine that made it (issue 26): every
tracked file outside tests/, and the member names inside every zip-based file (torch checkpoints)."""

from __future__ import annotations

import re
import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# build-machine folders, a host name the way torch writes it into zip members, and sibling-folder paths
LEAK = re.compile(rb"/(?:work|home|root|Users|mnt)/[A-Za-z0-9_.-]+|@vm\.[a-z0-9]+|\.\./shared/|/shared/data")


def shipped_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts]
    return [ROOT / n for n in names if not n.startswith(("tests/", ".git")) and (ROOT / n).is_file()]


def leaks(data: bytes) -> list[str]:
    return sorted({m.group().decode(errors="replace") for m in LEAK.finditer(data)})


def test_no_shipped_file_names_the_build_machine():
    found = {}
    for path in shipped_files():
        data = path.read_bytes()
        names = b""
        if zipfile.is_zipfile(path):
            names = "\n".join(zipfile.ZipFile(path).namelist()).encode()
        if hits := leaks(data) + leaks(names):
            found[str(path.relative_to(ROOT))] = hits
    assert not found, found


def test_the_scan_sees_what_torch_writes_when_given_a_path(tmp_path):
    """torch.save(obj, path) names the zip's folder after the file (our temp file holds pid and host); the
    checkpoint writer goes through a file object, whose archive folder is neutral."""
    import torch

    from blurlatent.nets.checkpoint import save_checkpoint

    planted = tmp_path / ".best.pt.123@vm.abc123.tmp"
    torch.save({"a": 1}, planted)
    assert leaks("\n".join(zipfile.ZipFile(planted).namelist()).encode())
    ours = tmp_path / "best.pt"
    save_checkpoint(ours, {"config": {}, "model": {}})
    assert all(n.startswith("archive/") for n in zipfile.ZipFile(ours).namelist())
