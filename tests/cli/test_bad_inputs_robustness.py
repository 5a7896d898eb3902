"""The bad-input matrix, robustness (issue 11): special files, crafted TIFFs and zips, and a store changed after
prepare are refused with one line instead of hanging, exhausting memory, reading half a file or being trusted.
The machinery is in ``badinput.py``. Below the rows: a full disk (a small tmpfs, mounted where the machine
allows it) ends prepare, train, evaluate and blur with one line "disk full writing PATH (needs ~N MB …)",
exit 1, no temp left — never SIGBUS; and evaluate's warnings (another channel, empty centre crops).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.badinput import BLUR, EVAL, PREP, TRAIN, Case, run_case
from typer.testing import CliRunner

import blurlatent.files.atomic as files
from blurlatent.cli import app

DAMAGED = ("w1_train.npy: store array is missing or damaged", "rerun `blurlatent prepare` with --force")
# the options {store} was prepared with (badinput.build_paths): a rerun with them finds it "up to date"
SAME_AS_STORE = "--planes 0:16:2 --crop 32 --workers 1 --channels w1"

CASES = [
    # --- special files: refused before a read that would block forever -----------------------------------
    Case(
        "blur-fifo-image",
        "a FIFO (named pipe) given as an image",
        "blur {work}/fifo.tif {bad}/blurry.tif -c {ckpt} --alpha 0.5 -o {work}/out.tif --device cpu",
        2,
        ("fifo.tif: is a FIFO (named pipe), not a regular file", "pass an image file"),
        setup="fifos",
    ),
    Case(
        "deblur-fifo-checkpoint",
        "a FIFO given as the checkpoint",
        "deblur {bad}/blurry.tif {bad}/sharp.tif -c {work}/fifo.pt --alpha 0.5 -o {work}/out.tif --device cpu",
        2,
        ("fifo.pt: is a FIFO (named pipe), not a regular file", "pass a .pt written by `blurlatent train`"),
        setup="fifos",
    ),
    Case(
        "train-fifo-config",
        "a FIFO given as the config",
        f"train {{store}} --config {{work}}/fifo.yaml --out {{work}}/run {TRAIN}",
        2,
        ("fifo.yaml: is a FIFO (named pipe), not a regular file", "pass a YAML config file"),
        setup="fifos",
    ),
    # --- crafted files ------------------------------------------------------------------------------------
    Case(
        "blur-tiff-two-series",
        "TIFF with a second image series (read the first, dropped the rest)",
        "blur {work}/two_series.tif {bad}/blurry.tif -c {ckpt} --alpha 0.5 -o {work}/out.tif --device cpu",
        2,
        ("two_series.tif: holds 2 image series", "pass --series 0..1"),
        setup="two_series",
    ),
    Case(
        "prepare-zip-bomb",
        "zip member that inflates 1000x (70 MiB of zeros)",
        f"prepare {{work}}/zips {{work}}/store {PREP}",
        2,
        ("BBBC006_v1_images_z_00.zip:", "zip member would inflate to 70 MB", "re-download the zip"),
        setup="zip_bomb",
    ),
    # --- a store changed after prepare wrote it (same size, same manifest) ------------------------------------
    Case(
        "prepare-changed-store",
        "rerun over a store with one changed byte (was: up to date)",
        f"prepare {{src}} {{work}}/store {SAME_AS_STORE}",
        2,
        DAMAGED,
        setup="changed_store",
    ),
    Case(
        "train-changed-store",
        "store with one changed byte",
        f"train {{work}}/store --out {{work}}/run {TRAIN}",
        2,
        DAMAGED,
        setup="changed_store",
    ),
    Case(
        "evaluate-changed-store",
        "store with one changed byte",
        f"evaluate {{work}}/store {EVAL}",
        2,
        DAMAGED,
        setup="changed_store",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, paths, tmp_path, monkeypatch):
    run_case(case, paths, tmp_path, monkeypatch)


# --- a full disk --------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (a real filesystem that fills up), or a skip saying why there is none."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("the full-disk tests mount a 2 MB tmpfs, which needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs here ({done.stderr.strip() or done.returncode})")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def free(disk: Path) -> int:
    st = os.statvfs(disk)
    return st.f_bavail * st.f_frsize


def fill(disk: Path, room: int) -> Path:
    """Fill ``disk`` until ``room`` bytes are left; the filler file."""
    filler = disk / "filler"
    filler.write_bytes(bytes(max(0, free(disk) - room)))
    assert free(disk) <= room + 4096
    return filler


def full_disk_line(output: str, path: Path) -> None:
    """One error line, naming the output the user gave (not a temp) and what it needs; nothing else but progress
    and warnings (evaluate's) on the way."""
    errors = [line for line in output.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in output, output
    assert errors[0].startswith(f"error: disk full writing {path} (needs ~"), output


def defeat_precheck(monkeypatch) -> None:
    """The disk looks roomy when checked and fills while writing (another job, a log): the write itself fails."""
    monkeypatch.setattr(files, "free_bytes", lambda path: 1 << 40, raising=False)


@pytest.mark.parametrize("checked", [True, False], ids=["checked-first", "fills-while-writing"])
def test_prepare_on_a_full_disk_says_so_and_leaves_nothing_never_sigbus(paths, small_disk, checked):
    """Memory-mapped arrays on a full tmpfs used to kill prepare with SIGBUS (rc -7), temp left behind. Run in a
    child process: a SIGBUS here would take pytest down with it."""
    filler = fill(small_disk, 64 * 1024)
    patch = "" if checked else "import blurlatent.files.atomic as f; f.free_bytes = lambda path: 1 << 40\n"
    code = patch + "import sys; from blurlatent.cli import app; sys.argv[0] = 'blurlatent'; app()\n"
    store = small_disk / "store"
    argv = ["prepare", str(paths["src"]), str(store), *PREP.split()]
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, (done.returncode, done.stderr)
    full_disk_line(done.stdout + done.stderr, store)
    assert sorted(small_disk.iterdir()) == [filler], "the temp folder must be removed"


@pytest.mark.parametrize("checked", [True, False], ids=["checked-first", "fills-while-writing"])
def test_train_on_a_full_disk_names_the_checkpoint_and_leaves_nothing(paths, small_disk, monkeypatch, checked):
    filler = fill(small_disk, 32 * 1024)  # room for config.yaml and metrics.jsonl, not for last.pt (~75 KB)
    if not checked:
        defeat_precheck(monkeypatch)  # torch's writer then fails with "unexpected pos …", no errno
    run = small_disk / "run"
    result = CliRunner().invoke(app, ["train", str(paths["store"]), "--out", str(run), *TRAIN.split()])
    assert result.exit_code == 1, result.output
    full_disk_line(result.output, run / "last.pt")
    assert sorted(small_disk.iterdir()) == [filler], "a run that never saved a checkpoint leaves nothing"


@pytest.mark.parametrize("checked", [True, False], ids=["checked-first", "fills-while-writing"])
def test_evaluate_on_a_full_disk_names_the_report_and_leaves_nothing(paths, small_disk, monkeypatch, checked):
    filler = fill(small_disk, 16 * 1024)  # room for a lock file, not for the report's figures
    if not checked:
        defeat_precheck(monkeypatch)
    report = small_disk / "report"
    argv = ["evaluate", str(paths["store"]), "-c", str(paths["ckpt"]), "--out", str(report), "--device", "cpu"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1, result.output
    full_disk_line(result.output, report)
    assert sorted(small_disk.iterdir()) == [filler], "the report's temp folder must be removed"


@pytest.mark.parametrize("checked", [True, False], ids=["checked-first", "fills-while-writing"])
def test_blur_on_a_full_disk_names_the_output_and_leaves_nothing(paths, small_disk, monkeypatch, checked, tmp_path):
    import tifffile

    pair = [tmp_path / "a.tif", tmp_path / "b.tif"]  # 256x256: its ~128 KB output cannot fit the room left
    for path, seed in zip(pair, (1, 2), strict=True):
        tifffile.imwrite(path, np.random.default_rng(seed).integers(0, 4096, (256, 256), dtype=np.uint16))
    filler = fill(small_disk, 16 * 1024)  # room for a lock or marker file, not for the output
    if not checked:
        defeat_precheck(monkeypatch)
    out = small_disk / "out.tif"
    argv = ["blur", *map(str, pair), *BLUR.format(ckpt=paths["ckpt"], work=small_disk).split()]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1, result.output
    full_disk_line(result.output, out)
    assert sorted(small_disk.iterdir()) == [filler], "the temp file must be removed"


# --- evaluate's warnings: numbers that would mean nothing -----------------------------------------------------


def eval_store(root: Path, test_max: int | None = None) -> Path:
    from helpers.eval_data import make_store

    from blurlatent.prepare.store import Store, write_store

    path = make_store(root)
    if test_max is not None:  # centre crops with (almost) nothing in them, as on a tiny test split
        store = Store(path)
        arrays = {f"w1_{s}": np.asarray(store.array("w1", s)) for s in ("train", "val", "test", "test_full")}
        arrays["w1_test"] = (arrays["w1_test"].astype(np.float64) * test_max / 255).round().astype(np.uint8)
        manifest = {k: v for k, v in store.manifest.items() if k not in ("checksums", "samples", "stamps")}
        shutil.rmtree(path)
        write_store(path, manifest, arrays)
    return path


def run_evaluate(store: Path, ckpt: Path, out: Path, caplog, **kw) -> str:
    from helpers.eval_data import stand_in_extractor

    from blurlatent.evaluation.loop import evaluate

    caplog.clear()
    with caplog.at_level("WARNING"):
        evaluate(store, [ckpt], "w1", out, device="cpu", progress=False, feature_extractor=stand_in_extractor, **kw)
    return caplog.text


def test_evaluate_warns_when_the_checkpoint_was_trained_on_another_channel(tmp_path, caplog):
    import torch

    from blurlatent.config import ModelConfig
    from blurlatent.nets.autoencoder import Autoencoder
    from blurlatent.nets.checkpoint import save_checkpoint

    store = eval_store(tmp_path / "store")
    torch.manual_seed(0)
    state = Autoencoder(ModelConfig(widths=[4, 8, 8])).state_dict()
    for channel in ("w2", "w1"):
        config = {"model": {"widths": [4, 8, 8]}, "data": {"normalize": "minmax", "channel": channel}}
        save_checkpoint(tmp_path / f"{channel}.pt", {"config": config, "model": state, "epoch": 0})
    text = run_evaluate(store, tmp_path / "w2.pt", tmp_path / "r2", caplog)
    assert "w2.pt was trained on channel w2 but is evaluated on w1" in text and "channel=w2" in text, text
    assert "trained on channel" not in run_evaluate(store, tmp_path / "w1.pt", tmp_path / "r1", caplog)


def test_evaluate_warns_when_the_centre_crops_are_nearly_empty_and_suggests_whole(tmp_path, caplog):
    from helpers.eval_data import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "tiny.pt")
    empty = eval_store(tmp_path / "empty", test_max=3)
    text = run_evaluate(empty, ckpt, tmp_path / "r1", caplog)
    assert "3 of 3 test centre crops are nearly empty (in-focus maximum <= 8/255)" in text, text
    assert "same score" in text and "whole=True" in text  # the CLI shows it as --whole
    assert "nearly empty" not in run_evaluate(empty, ckpt, tmp_path / "r2", caplog, whole=True)
    assert "nearly empty" not in run_evaluate(eval_store(tmp_path / "full"), ckpt, tmp_path / "r3", caplog)
