"""Interruptions (issues 7, 11): a job killed with SIGKILL (a cluster's hard kill: no cleanup code runs), or
stopped with Ctrl-C or SIGTERM (``kill``, a scheduler's stop: treated like Ctrl-C), loses nothing, leaves no
half-written output under the name the user gave and no process behind, and a rerun or ``--resume`` ends
exactly where an uninterrupted run ends.

The killed runs are real ``python -m blurlatent`` processes; reruns and references run in-process.
Everything happens under ``tmp_path``: each command runs from an empty working folder, which must stay
empty, and the folder holding the output must end up holding only that output (no temp files).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from blurlatent.cli import app
from blurlatent.nets.checkpoint import load_checkpoint, state_digest

pytestmark = pytest.mark.slow

PLANES = list(range(0, 17, 2))
TRAIN_ARGS = [
    "--device",
    "cpu",
    "--arch",
    "paper",
    "--triplets",  # the paper's training: the quickest epoch
    "paper",
    "--deblur-weight",
    "0",
    "--epochs",
    "4",
    "--widths",
    "4,8,8",
    "--batch-size",
    "16",
    "--seed",
    "0",
    "--amp",
    "off",
    "--workers",
    "0",
]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """16 synthetic fields, 256x192: enough that prepare runs long enough to be killed half-way."""
    from blurlatent.synth.generator import synthesize

    root = tmp_path_factory.mktemp("interrupt") / "src"
    synthesize(root, fields=16, channels=["w1"], planes=PLANES, size=(256, 192), seed=0, workers=1)
    return root


@pytest.fixture(scope="module")
def store(source, tmp_path_factory):
    from blurlatent.prepare.builder import prepare

    return prepare(
        source, tmp_path_factory.mktemp("store") / "store", channels=["w1"], planes=PLANES, crop=32, workers=1
    ).path


@pytest.fixture(scope="module")
def reference(store, tmp_path_factory):
    """The uninterrupted training run every interrupted one must end up equal to."""
    out = tmp_path_factory.mktemp("reference") / "run"
    result = _invoke(["train", str(store), "--out", str(out), *TRAIN_ARGS])
    assert result.exit_code == 0, result.output
    return out


def _invoke(argv):
    return CliRunner().invoke(app, argv)


def _start(argv, cwd: Path) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")  # the same arithmetic as the in-process reference
    # a session of its own, so the prepare pool's workers can be found and ended after the kill
    return subprocess.Popen(
        [sys.executable, "-m", "blurlatent", *map(str, argv)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # a terminal's Ctrl-C as a user has it, even when pytest itself was started in the background (`make test &`,
        # `nohup`), where the shell hands every child SIGINT ignored and Python then installs no handler for it
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (exit {proc.returncode}) before it could be interrupted:\n{out}\n{err}")
        if time.monotonic() > deadline:
            _kill_group(proc)
            pytest.fail("timed out waiting for the command to get going")
        time.sleep(0.005)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL whatever is left of the process group we started (orphaned pool workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _leftovers(proc: subprocess.Popen, wait: float = 5.0) -> list[int]:
    """The processes of ``proc``'s group still alive after up to ``wait`` s (then killed, so none outlive the test)."""
    deadline = time.monotonic() + wait
    while _group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _group(proc.pid)
    _kill_group(proc)
    return left


def _group(pgid: int) -> list[int]:
    """The processes still in process group ``pgid`` (Linux /proc), zombies excluded."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _epochs_logged(run: Path) -> int:
    metrics = run / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.is_file() else 0


def _weights(path: Path) -> str:
    return state_digest(load_checkpoint(path)["model"])


def _losses(run: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["epoch"], r["train_loss"], r["val_loss"], r["best"]) for r in rows]


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def _assert_same_run(run: Path, reference: Path) -> None:
    assert _weights(run / "last.pt") == _weights(reference / "last.pt")
    assert _weights(run / "best.pt") == _weights(reference / "best.pt")
    assert _losses(run) == _losses(reference)  # the redone epochs saw the same batches in the same order


def test_kill9_during_prepare_then_rerun_gives_the_identical_store(source, tmp_path):
    from blurlatent.files.atomic import sha256_file as file_sha256
    from blurlatent.prepare.builder import prepare

    expected = prepare(source, tmp_path / "ref" / "store", channels=["w1"], planes=PLANES, crop=32, workers=1).path
    work, cwd = tmp_path / "work", tmp_path / "cwd"
    work.mkdir()
    # default --workers: the process-pool path, as a user runs it
    proc = _start(["prepare", source, work / "store", "--channels", "w1", "--crop", "32"], cwd)
    _wait_for(lambda: any(work.glob(".store.*.tmp/*.npy")), proc)  # its arrays are being filled
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    orphans = _leftovers(proc)
    assert not orphans, f"pool workers outlived their killed parent: {orphans}"
    assert proc.returncode == -signal.SIGKILL
    assert not (work / "store").exists(), "a killed prepare must not leave a store under the final name"
    assert _temps(work), "the killed run's temp folder should still be there (nothing can clean up after SIGKILL)"

    prepare(source, work / "store", channels=["w1"], planes=PLANES, crop=32, workers=1)
    assert sorted(p.name for p in work.iterdir()) == ["store"], "the rerun must remove the killed run's temp folder"
    got, want = (
        json.loads((work / "store" / "manifest.json").read_text()),
        json.loads((expected / "manifest.json").read_text()),
    )
    assert {k: v for k, v in got.items() if k != "stamps"} == {k: v for k, v in want.items() if k != "stamps"}
    assert sorted(p.name for p in (work / "store").iterdir()) == sorted(p.name for p in expected.iterdir())
    for name, digest in got["checksums"].items():
        assert file_sha256(work / "store" / name) == digest
        assert np.array_equal(np.load(work / "store" / name), np.load(expected / name))
    assert not any(cwd.iterdir()), "nothing may be written outside the output folder"


def test_ctrl_c_during_prepare_exits_130_and_leaves_nothing(source, tmp_path):
    work, cwd = tmp_path / "work", tmp_path / "cwd"
    work.mkdir()
    proc = _start(["prepare", source, work / "store", "--channels", "w1", "--crop", "32"], cwd)
    _wait_for(lambda: any(work.glob(".store.*.tmp/*.npy")), proc)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the pool's workers too
    out, err = proc.communicate(timeout=60)
    _kill_group(proc)
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err and len([line for line in err.splitlines() if line.strip()]) == 1, err
    assert not any(work.iterdir()), "an interrupted prepare must remove its temp folder"
    assert not any(cwd.iterdir())


@pytest.mark.parametrize("to", ["process", "group"])
def test_sigterm_during_prepare_ends_its_pool_workers_and_leaves_nothing(source, tmp_path, to):
    """``kill PID`` (the process only) or a scheduler's SIGTERM to the whole group, with two pool workers:
    like Ctrl-C, exit 130 with one line, the temp folder removed and no worker left running."""
    work, cwd = tmp_path / "work", tmp_path / "cwd"
    work.mkdir()
    proc = _start(["prepare", source, work / "store", "--channels", "w1", "--crop", "32", "--workers", "2"], cwd)
    _wait_for(lambda: any(work.glob(".store.*.tmp/*.npy")), proc)
    time.sleep(0.05)  # the workers are filling fields
    (os.kill if to == "process" else os.killpg)(proc.pid, signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=30)  # orphaned workers would hold the pipes open
    except subprocess.TimeoutExpired:
        left = _group(proc.pid)
        _kill_group(proc)
        pytest.fail(f"still running 30 s after SIGTERM: processes {left}")
    left = _leftovers(proc)
    assert not left, f"pool workers left running after SIGTERM: {left}"
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in out + err and len([line for line in err.splitlines() if line.strip()]) == 1, err
    assert not any(work.iterdir()), "a terminated prepare must remove its temp folder"
    assert not any(cwd.iterdir())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_during_synth_ends_its_pool_workers_and_leaves_nothing(tmp_path, signum):
    """synth renders fields in a pool (``files.workers``): Ctrl-C to the group or SIGTERM to the process exits 130
    with one line, the temp folder removed and no worker left running."""
    work, cwd = tmp_path / "work", tmp_path / "cwd"
    work.mkdir()
    proc = _start(["synth", work / "synth", "--fields", "24", "--channels", "w1", "--size", "256x192",
                   "--workers", "2"], cwd)
    _wait_for(lambda: any(work.glob(".synth.*.tmp/*/*.tif")), proc)
    (os.killpg if signum == signal.SIGINT else os.kill)(proc.pid, signum)
    try:
        out, err = proc.communicate(timeout=30)  # orphaned workers would hold the pipes open
    except subprocess.TimeoutExpired:
        left = _group(proc.pid)
        _kill_group(proc)
        pytest.fail(f"still running 30 s after the signal: processes {left}")
    left = _leftovers(proc)
    assert not left, f"pool workers left running: {left}"
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in out + err and len([line for line in err.splitlines() if line.strip()]) == 1, err
    assert not any(work.iterdir()), "a stopped synth must remove its temp folder"
    assert not any(cwd.iterdir())


def test_kill9_during_train_then_resume_gives_the_same_weights(store, reference, tmp_path):
    work, cwd = tmp_path / "work", tmp_path / "cwd"
    run = work / "run"
    proc = _start(["train", store, "--out", run, *TRAIN_ARGS], cwd)
    # once a checkpoint exists: before it there is nothing to resume (train --resume says so)
    _wait_for(lambda: (run / "last.pt").is_file(), proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _epochs_logged(run) < 4, "killed too late to test anything"

    result = _invoke(["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    _assert_same_run(run, reference)
    assert not _temps(work), "a temp checkpoint of the killed run was left behind"
    assert sorted(p.name for p in work.iterdir()) == ["run"]
    assert not any(cwd.iterdir())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_during_train_saves_a_resumable_checkpoint_and_exits_130(signum, store, reference, tmp_path):
    work, cwd = tmp_path / "work", tmp_path / "cwd"
    run = work / "run"
    proc = _start(["train", store, "--out", run, *TRAIN_ARGS], cwd)
    _wait_for(lambda: _epochs_logged(run) >= 1, proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    # not a TTY: a line per finished epoch (issue 12's cluster logs), then one line that says how to continue
    assert all(line.startswith("epoch ") for line in lines[:-1]) and len(lines) >= 2, err
    assert "interrupted" in lines[-1] and f"--resume {run}" in lines[-1], err
    saved = load_checkpoint(run / "last.pt")
    assert saved["partial"] is not None and saved["step"] >= 1, "a stop mid-epoch must save that epoch's progress"
    assert not _temps(work)

    result = _invoke(["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    _assert_same_run(run, reference)
    assert sorted(p.name for p in work.iterdir()) == ["run"]
    assert not any(cwd.iterdir())


def test_a_killed_writers_temp_file_is_removed_by_the_next_write_and_a_live_ones_is_kept(tmp_path):
    from blurlatent.files.atomic import atomic_write_bytes

    target = tmp_path / "out" / "last.pt"
    code = (
        "import sys, time; from blurlatent.files.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'half'); print(tmp, flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    stale = Path(proc.stdout.readline().strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert stale.is_file() and not target.exists()  # SIGKILL: no cleanup ran, and nothing took the final name
    live = stale.with_name(stale.name.replace(f".{proc.pid}@", f".{os.getpid()}@"))
    live.write_bytes(b"another writer, still running")

    atomic_write_bytes(target, b"whole")
    assert target.read_bytes() == b"whole"
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([target.name, live.name])
