"""The bad-input matrix, outputs (issue 11): a command replaces only what it provably wrote, never an input
(also behind a symbolic or hard link), writes a job's files all or nothing, and one writer holds an output
folder at a time. The machinery is in ``badinput.py``; the lock tests below need a second, real process,
which a row cannot express.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.badinput import EVAL, PAIR, PREP, SYNTH, TRAIN, Case, listing, run_case
from typer.testing import CliRunner

from blurlatent.cli import app
from blurlatent.nets.checkpoint import load_checkpoint

FOLDERS = "--sharp-dir {work}/s --blurry-dir {work}/b -c {ckpt} --alpha 0.5 --device cpu"
NOT_REPLACED = "nothing there is replaced even with --force"

CASES = [
    # --- an output that is an input: refused even with --force ----------------------------------------
    Case(
        "blur-out-is-input",
        "-o is the first input, with --force",
        "blur {work}/in.tif {bad}/blurry.tif -c {ckpt} --alpha 0.5 -o {work}/in.tif --device cpu --force",
        2,
        ("in.tif: is the input", "choose another output"),
        setup="input_links",
    ),
    Case(
        "blur-out-hard-link",
        "-o is a hard link to an input, with --force",
        "blur {work}/in.tif {bad}/blurry.tif -c {ckpt} --alpha 0.5 -o {work}/hard.tif --device cpu --force",
        2,
        ("hard.tif: is the input", "never overwritten, even with --force"),
        setup="input_links",
    ),
    Case(
        "deblur-out-symlink",
        "-o is a symbolic link to an input, with --force",
        "deblur {bad}/blurry.tif {work}/in.tif -c {ckpt} --alpha 0.5 -o {work}/soft.tif --device cpu --force",
        2,
        ("soft.tif: is the input", "choose another output"),
        setup="input_links",
    ),
    Case(
        "blur-out-dangling-link",
        "-o is a symbolic link to nothing, without --force",
        f"blur {PAIR} -c {{ckpt}} --alpha 0.5 -o {{work}}/dangling.tif --device cpu",
        2,
        ("dangling.tif: already exists (a symbolic link", "pass --force"),
        setup="input_links",
    ),
    Case(
        "blur-folder-out-is-input",
        "folder mode: an output name is an input file of the output folder, with --force",
        f"blur {FOLDERS} -o {{work}}/b --force",
        2,
        ("a_a0.500.tif: is the input", "never overwritten"),
        setup="pairs_named_like_outputs",
    ),
    Case(
        "evaluate-out-holds-checkpoint",
        "--out is the run folder of the checkpoint evaluated, with --force",
        "evaluate {store} -c {work}/run/best.pt --out {work}/run --device cpu --force",
        2,
        ("is or holds the input", "never replaced, even with --force"),
        setup="finished_run",
    ),
    Case(
        "train-init-inside-out",
        "--init is a checkpoint inside the run folder --force would replace",
        f"train {{store}} --out {{work}}/run --init {{work}}/run/best.pt --reg strong {TRAIN} --force",
        2,
        ("is or holds the input", "best.pt"),
        setup="finished_run",
    ),
    # --- names and pixel types: refused before any work -----------------------------------------------
    Case(
        "blur-folder-level-names",
        "folder mode: --alpha 0.1 and 0.1004 (equal at three decimals)",
        f"blur {FOLDERS.replace('0.5', '0.1 --alpha 0.1004')} -o {{work}}/out",
        0,
        (),
        setup="pairs_named_like_outputs",
        makes=("{work}/out/a_a0.1004.tif", (48, 64)),
    ),
    Case(
        "blur-png-level-twice",
        "one level given twice for numbered PNGs",
        f"blur {PAIR} -c {{ckpt}} --alpha 0.3 --alpha 0.3 -o {{work}}/out.png --device cpu",
        2,
        ("--alpha 0.3 is given twice", "give each level once"),
    ),
    Case(
        "blur-png-float32",
        "PNG output of float32 pixels",
        f"blur {PAIR} -c {{ckpt}} --alpha 0.5 --out-dtype float32 -o {{work}}/out.png --device cpu",
        2,
        ("out.png: PNG holds 8- or 16-bit unsigned pixels, not float32", "pass --out-dtype uint16"),
    ),
    Case(
        "deblur-png-int32",
        "PNG output of int32 inputs",
        "deblur {work}/a.tif {work}/b.tif -c {ckpt} --alpha 0.5 -o {work}/out.png --device cpu",
        2,
        ("not int32", "write a .tif"),
        setup="int32_pair",
    ),
    # --- folder mode: all or nothing ------------------------------------------------------------------------
    Case(
        "blur-folder-later-pair-fails",
        "folder mode: the last pair's images differ in size (earlier pairs already done)",
        f"blur {FOLDERS} -o {{work}}/out --batch-size 1",
        2,
        ("z.tif: image is 64x40", "pass two planes of one field"),
        setup="pairs_bad_last",
    ),
    # --- folders: replace only what the command provably wrote ------------------------------------------
    Case(
        "synth-force-store",
        "--force on a folder another command (prepare) wrote",
        f"synth {{work}}/store {SYNTH} --force",
        2,
        ("holds the output of blurlatent prepare", NOT_REPLACED),
        setup="store_copy",
    ),
    Case(
        "prepare-force-manifest-lookalike",
        "--force on a folder with someone's manifest.json and README.md",
        f"prepare {{src}} {{work}}/store {PREP} --force",
        2,
        ("'README.md'", NOT_REPLACED),
        setup="manifest_lookalike",
    ),
    Case(
        "train-force-user-config",
        "--force on a folder with the user's config.yaml",
        f"train {{store}} --out {{work}}/run {TRAIN} --force",
        2,
        ("'config.yaml'", NOT_REPLACED),
        setup="user_config",
    ),
    Case(
        "train-force-config-beside-metrics",
        "--force on the user's config.yaml beside an empty metrics.jsonl",
        f"train {{store}} --out {{work}}/run {TRAIN} --seed 3 --force",
        2,
        ("'config.yaml'", NOT_REPLACED),
        setup="user_config_metrics",
    ),
    Case(
        "evaluate-force-user-notes",
        "--force on an earlier report holding the user's notes",
        f"evaluate {{store}} {EVAL} --force",
        2,
        ("'notes.md'", NOT_REPLACED),
        setup="report_with_notes",
    ),
    Case(
        "evaluate-force-report-lookalike",
        "--force on report.json ({}) and report.md that no report wrote",
        f"evaluate {{store}} {EVAL} --batch-size 2 --force",
        2,
        ("'report.json'", NOT_REPLACED),
        setup="report_lookalike",
    ),
    Case(
        "demo-force-user-data",
        "--force on an earlier demo whose synthetic/ holds the user's file",
        "demo --fast --out {work}/demo --device cpu --force",
        2,
        ("synthetic/mine.txt", NOT_REPLACED),
        setup="demo_user_data",
    ),
    Case(
        "demo-force-bad-seed",
        "--force on an earlier demo with a bad --seed (checked before anything is removed)",
        "demo --fast --out {work}/demo --device cpu --force --seed -1",
        2,
        ("--seed -1", "non-negative"),
        setup="demo_user_data",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, paths, tmp_path, monkeypatch):
    run_case(case, paths, tmp_path, monkeypatch)


# --- one writer per output folder: a second, real process ---------------------------------------------------

HOLD = ("import sys; from blurlatent.files.output_folders import FolderLock; "
        "lock = FolderLock(sys.argv[1], sys.argv[2]).acquire(); "
        "print('held', flush=True); sys.stdin.read(); lock.release()")


def hold_lock(out: Path, command: str) -> subprocess.Popen:
    """Another process holding the lock of ``out`` until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out), command], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


WRITERS = {
    "synth": f"synth {{out}} {SYNTH}",
    "prepare": f"prepare {{src}} {{out}} {PREP}",
    "train": f"train {{store}} --out {{out}} {TRAIN}",
    "evaluate": "evaluate {store} -c {ckpt} --out {out} --device cpu",
    "demo": "demo --fast --out {out} --device cpu",
}


@pytest.mark.parametrize("command", list(WRITERS))
def test_a_second_writer_is_refused_naming_the_pid(command, paths, tmp_path):
    out = tmp_path / "out"
    holder = hold_lock(out, command)
    try:
        before = listing(tmp_path)
        argv = WRITERS[command].format(out=out, **{k: str(v) for k, v in paths.items()}).split()
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 2, result.output
        assert f"{out} is in use by pid {holder.pid} (blurlatent {command})" in result.output
        assert "wait for it to end" in result.output and len(result.output.strip().splitlines()) == 1
        assert listing(tmp_path) == before and not out.exists()
    finally:
        holder.stdin.close()
        holder.wait()
    assert not (tmp_path / ".out.lock").exists()  # the holder removed its lock when it ended


def test_a_killed_writers_lock_is_taken_over(paths, tmp_path):
    out = tmp_path / "out"
    holder = hold_lock(out, "synth")
    holder.kill()  # SIGKILL: no cleanup runs, the lock file (with its dead pid) stays
    holder.wait()
    assert str(holder.pid) in (tmp_path / ".out.lock").read_text()
    result = CliRunner().invoke(app, f"synth {out} {SYNTH}".split())
    assert result.exit_code == 0, result.output
    assert len(list(out.rglob("*.tif"))) == 1 and not (tmp_path / ".out.lock").exists()


def test_two_train_processes_into_one_folder(paths, tmp_path):
    """Two real `blurlatent train` processes: the second is refused while the first runs; once the first is
    killed, its stale lock is taken over by a resume."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "blurlatent", "train", str(paths["store"]), "--out", str(run), *TRAIN.split()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([*cmd[:-len(TRAIN.split())], *TRAIN.replace("--epochs 1", "--epochs 500").split()],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last.pt").exists():  # the first epoch is done: the run is resumable
            assert first.poll() is None and time.monotonic() < deadline, "the first train did not start"
            time.sleep(0.2)
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"is in use by pid {first.pid} (blurlatent train)" in " ".join(second.stderr.split())
    finally:
        first.kill()
        first.wait()
    done = load_checkpoint(run / "last.pt")["epoch"]
    resumed = subprocess.run([sys.executable, "-m", "blurlatent", "train", "--resume", str(run), "--epochs",
                              str(done + 1)], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert not (tmp_path / ".run.lock").exists()
