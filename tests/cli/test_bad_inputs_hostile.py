"""The bad-input matrix, hostile and unlucky inputs (issue 28): two jobs aimed at one output, pixel types a
format cannot hold, pixel sizes of 0, checkpoints export cannot describe, an OME-Zarr output replaced with
--force, user paths that look like Rich markup, SIGTERM between two writes, a failed export's folders, and the
Python API given arguments of the wrong type.

The rows run through ``badinput.run_case``; what a row cannot express (a second process, a file that appears
while a job runs, a signal, the pixel type or metadata of what was written) is a dedicated test below.
``{h}`` holds this module's inputs (``hostile_files``).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from helpers.badinput import PREP, SETUPS, TRAIN, Case, build_paths, listing, run_case
from typer.testing import CliRunner

from blurlatent.cli import app
from blurlatent.errors import RuntimeFailure, UsageError
from blurlatent.nets.checkpoint import load_checkpoint, save_checkpoint

EXPORT_MISSING = [n for n in ("bioimageio", "onnx", "onnxruntime") if importlib.util.find_spec(n) is None]
needs_export = pytest.mark.skipif(bool(EXPORT_MISSING), reason=f"blurlatent[export] lacks {EXPORT_MISSING}")
needs_zarr = pytest.mark.skipif(importlib.util.find_spec("zarr") is None, reason="blurlatent[zarr] is not installed")
ZARR_OUT = "deblur {bad}/sharp.tif {bad}/blurry.tif -c {ckpt} --alpha 0.5 -o {work}/out.ome.zarr --device cpu --force"
LONG_REG = "weak" + "x" * 300  # past the 128 characters bioimage.io allows in a model name
STACKS_PREP = "--focus 1 --planes -1:0 --crop 32 --workers 1 --channels w1"
LOW_MEMORY = "-c {ckpt} -o {work}/out.tif --device cpu"

CASES = [
    Case("blur-imagej-int32-levels", "an ImageJ image beside an int32 one, two levels (ImageJ holds no int32; was: "
         "written as float32)", "blur {h}/ij.tif {h}/int32.tif --alpha 0.3 --alpha 0.6 -c {ckpt} -o {work}/out.tif "
         "--device cpu", 2, ("out.tif: an ImageJ TIFF", "not int32; pass --out-dtype float32, or write a .ome.tif")),
    Case("deblur-imagej-resolution-1-over-0", "ImageJ stack whose resolution is 1/0 and z spacing 0 (was: internal "
         "error)", "deblur {h}/ij_zero.tif --z 0 1 --alpha 0.5 -c {ckpt} -o {work}/out.tif --device cpu", 0, (),
         makes=("{work}/out.tif", (48, 64))),
    Case("export-long-reg", "export of a checkpoint whose config.reg is 304 characters (was: internal error)",
         "export {h}/long_reg.pt -o {work}/m.zip --alpha 0.5", 2, ("long_reg.pt: config: reg weakxxx",
                                                                    "use one of none, weak, strong")),
    Case("export-optim-list", "export of a checkpoint whose config.optim is a list (was: internal error)",
         "export {h}/optim_list.pt -o {work}/m.zip --alpha 0.5", 2, ("optim_list.pt: config",
                                                                     "expected a mapping for OptimConfig")),
    Case("deblur-zarr-force-foreign", "--force onto an OME-Zarr folder blurlatent did not write",
         ZARR_OUT, 2, ("out.ome.zarr: exists and is not an OME-Zarr written by blurlatent", "choose another output"),
         setup="foreign_zarr"),
    Case("deblur-zarr-force-with-notes", "--force onto blurlatent's OME-Zarr that also holds the user's notes",
         ZARR_OUT.replace("--alpha 0.5", "--alpha 0.25"), 2,
         ("out.ome.zarr: holds 'notes.txt'", "never replaced (even with --force)"), setup="zarr_with_notes"),
    Case("train-store-fewer-planes", "train on a store of planes 0..8, fewer than the default triplets need (was: "
         "only 'prepare with --planes', never the triplets the docs give for it)",
         f"train {{store_no16}} --out {{work}}/run {TRAIN}", 2,
         ("store_no16: the training triplets need planes 10, 12, 14, 16",
          "give data.triplets of its planes in a --config file, e.g. `data: ")),
    Case("train-init-other-arch", "--init of a multiscale model (the built-in w1, by its name) for a paper run "
         "(was: 'checkpoint not found' for the name, and the widths blamed)",
         f"train {{store}} --init w1 --out {{work}}/run {TRAIN}", 2,
         ("w1.pt: a multiscale model, another architecture than this run's --arch paper",
          "fine-tune it with --arch multiscale")),
    Case("train-deblur-weight-alpha-0", "a run config of data.alpha 0 with the default deblur loss (was: "
         "'deblur_weight needs alpha > 0', not the flag)", f"train {{store}} --config {{h}}/alpha0.yaml --out "
         f"{{work}}/run {TRAIN}", 2, ("--deblur-weight 1 needs data.alpha > 0", "give --deblur-weight 0")),
    Case("deblur-model-empty", "--model '' (was: the default model)",
         "deblur {bad}/sharp.tif {bad}/blurry.tif --model= --alpha 0.5 -o {work}/out.tif --device cpu", 2,
         ("--model '' is empty", "leave --model out for the default")),
    Case("deblur-channel-name-twice", "--channel DAPI of a file whose channels 0 and 1 are both named DAPI (was: "
         "the first, silently)", "deblur {h}/dapi_twice.ome.tif --z 0 2 --channel DAPI --alpha 0.5 -c {ckpt} "
         "-o {work}/out.tif --device cpu", 2, ("--channel DAPI names channels 0, 1 of",
                                               "pass the index instead, --channel 0")),
    # cause 5: own stacks matched by channel name, one z step per store (was: w1 = channel 0 of every file)
    Case("prepare-stack-without-named-channel", "prepare on own stacks, one without the channel the first stack "
         "names w1 (was: its channel 0 taken as w1)", f"prepare {{h}}/stacks_missing {{work}}/store {STACKS_PREP}",
         2, ("b.ome.tif: has no channel named DAPI", "choose --channels that every stack names")),
    Case("prepare-stacks-two-z-steps", "prepare on own stacks of z steps 0.5 and 2 µm (was: mixed into one store)",
         f"prepare {{h}}/stacks_zsteps {{work}}/store {STACKS_PREP}", 2,
         ("a.ome.tif and", "b.ome.tif: z steps of 0.5 µm and 2 µm", "prepare stacks of one z step together")),
    # cause 10: memory estimated before work, and running out anyway said in one line (was: "a bug")
    Case("deblur-memory-over-limit", "a job whose memory estimate passes 80 % of what is available (test: 100 KiB "
         "available; was: no estimate)", f"deblur {{bad}}/sharp.tif {{bad}}/blurry.tif --alpha 0.5 {LOW_MEMORY}", 2,
         ("this job needs about", "more than 80 % of the 100 KiB available", "pass a smaller input")),
    Case("deblur-out-of-memory", "memory running out during inference anyway (test: MemoryError in the model's pass; "
         "was: internal error, a bug)", f"deblur {{bad}}/sharp.tif {{bad}}/blurry.tif --alpha 0.25 {LOW_MEMORY}", 1,
         ("out of memory during inference (MemoryError)", "pass a smaller --tile (e.g. --tile 256), --batch-size 1")),
]
MEMORY_ROWS = {"deblur-memory-over-limit": 100 * 1024, "deblur-out-of-memory": None}  # memory available, patched


# --- setups and inputs ------------------------------------------------------------------------------------------


def foreign_zarr(work: Path, paths: dict) -> None:
    import zarr

    group = zarr.open_group(str(work / "out.ome.zarr"), mode="w", zarr_format=2)
    group.create_array("0", data=np.ones((48, 64), np.uint16))
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": "y"}, {"name": "x"}],
                                   "datasets": [{"path": "0"}]}]


def zarr_with_notes(work: Path, paths: dict) -> None:
    from blurlatent.files.stacks import write_stack

    write_stack(work / "out.ome.zarr", np.ones((48, 64), np.uint16))
    (work / "out.ome.zarr" / "notes.txt").write_text("the user's own notes\n")


SETUPS.update(foreign_zarr=foreign_zarr, zarr_with_notes=zarr_with_notes)


def zero_resolution(path: Path) -> None:
    """Set the XResolution and YResolution tags of ``path`` to 1/0 (tifffile refuses to write that)."""
    with tifffile.TiffFile(path) as tif:
        offsets = [tif.pages[0].tags[name].valueoffset for name in ("XResolution", "YResolution")]
        order = tif.byteorder
    with open(path, "r+b") as handle:
        for offset in offsets:
            handle.seek(offset)
            handle.write(struct.pack(order + "II", 1, 0))


def hostile_files(root: Path, ckpt: Path) -> Path:
    h = root / "hostile"
    h.mkdir()
    rng = np.random.default_rng(28)
    plane = (100 + 900 * rng.random((48, 64))).astype(np.uint16)
    stack = np.stack([plane, plane[::-1], plane[:, ::-1]])
    tifffile.imwrite(h / "ij.tif", plane, imagej=True)
    tifffile.imwrite(h / "int32.tif", plane.astype(np.int32)[::-1] + (1 << 25))
    tifffile.imwrite(h / "ij_zero.tif", stack, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "unit": "um", "spacing": 0})
    zero_resolution(h / "ij_zero.tif")
    tifffile.imwrite(h / "ome_zero.ome.tif", stack, ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0, "PhysicalSizeY": -1, "PhysicalSizeZ": 2})
    tifffile.imwrite(h / "dapi_twice.ome.tif", np.stack([stack, stack[:, ::-1]], axis=1), ome=True,
                     metadata={"axes": "ZCYX", "Channel": {"Name": ["DAPI", "DAPI"]}})
    for folder, names, steps in (("stacks_missing", (["DAPI", "GFP"], ["GFP", "RFP"]), (2, 2)),
                                 ("stacks_zsteps", (["DAPI", "GFP"], ["DAPI", "GFP"]), (0.5, 2))):
        (h / folder).mkdir()
        for name, channels, step in zip("ab", names, steps, strict=True):
            tifffile.imwrite(h / folder / f"{name}.ome.tif", np.stack([stack, stack[:, ::-1]]), ome=True,
                             metadata={"axes": "CZYX", "Channel": {"Name": channels}, "PhysicalSizeZ": step})
    (h / "alpha0.yaml").write_text("version: 2\ndata:\n  alpha: 0.0\n")
    good = load_checkpoint(ckpt)
    for name, change in (("long_reg", {"reg": LONG_REG}), ("optim_list", {"optim": [1, 2]}),
                         ("w3", {"data": {"normalize": "minmax", "channel": "w3"}})):
        save_checkpoint(h / f"{name}.pt", {**good, "config": {**good["config"], **change}})
    return h


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    built = build_paths(tmp_path_factory)
    return {**built, "h": hostile_files(built["root"], built["ckpt"])}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, paths, tmp_path, monkeypatch):
    if case.argv.startswith("export") and EXPORT_MISSING:
        pytest.skip(f"blurlatent[export] is not installed ({EXPORT_MISSING})")
    if "zarr" in case.argv and importlib.util.find_spec("zarr") is None:
        pytest.skip("blurlatent[zarr] is not installed")
    if case.id in MEMORY_ROWS:  # what the machine has, and a pass that runs out of it anyway
        from blurlatent.inference import memory
        from blurlatent.inference.predictor import Predictor

        monkeypatch.setattr(memory, "available_bytes", lambda: MEMORY_ROWS[case.id])
        if MEMORY_ROWS[case.id] is None:
            monkeypatch.setattr(Predictor, "combine_pair", lambda *args, **kwargs: bytearray(1 << 62))
    run_case(case, paths, tmp_path, monkeypatch)


def test_rows_are_distinct():
    assert len({c.id for c in CASES}) == len(CASES) and len({c.argv for c in CASES}) == len(CASES)


def invoke(*argv) -> SimpleNamespace:
    result = CliRunner().invoke(app, [str(a) for a in argv])
    lines = [line for line in result.output.splitlines() if line.strip()]
    return SimpleNamespace(code=result.exit_code, output=result.output, lines=lines)


# --- cause 1: two jobs aimed at one output ------------------------------------------------------------------------

HOLD = ("import sys; from blurlatent.files.output_folders import FolderLock; "
        "lock = FolderLock(sys.argv[1], sys.argv[2]).acquire(); "
        "print('held', flush=True); sys.stdin.read(); lock.release()")


def stacks_folder(paths: dict, folder: Path) -> Path:
    folder.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(paths["bad"] / "pages.tif", folder / f"{name}.tif")
    return folder


def job(mode: str, paths: dict, out: Path, *more) -> list:
    """A deblur of one file pair (``mode`` "file") or of a folder of stacks ("folder") into ``out``."""
    if mode == "file":
        return ["deblur", paths["bad"] / "sharp.tif", paths["bad"] / "blurry.tif", "-c", paths["ckpt"], "--alpha",
                0.5, "-o", out, "--device", "cpu", *more]
    return ["deblur", "--stack-dir", paths["stacks"], "--z", 0, 1, "--alpha", 0.5, "-c", paths["ckpt"], "-o", out,
            "--device", "cpu", "--batch-size", 1, *more]


@pytest.fixture
def jobs_paths(paths, tmp_path):
    return {**paths, "stacks": stacks_folder(paths, tmp_path / "stacks")}


@pytest.mark.parametrize("mode", ["file", "folder"])
def test_a_second_job_on_one_output_is_refused_naming_the_pid(mode, jobs_paths, tmp_path):
    """blur/deblur lock their output (a file, or the folder of folder mode) as the other commands lock theirs."""
    out = tmp_path / ("out.tif" if mode == "file" else "out")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), "deblur"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = listing(tmp_path)
        result = invoke(*job(mode, jobs_paths, out))
        assert result.code == 2 and len(result.lines) == 1, result.output
        assert f"{out} is in use by pid {holder.pid} (blurlatent deblur); wait for it to end" in result.lines[0]
        assert listing(tmp_path) == before and not out.exists()
    finally:
        holder.stdin.close()
        holder.wait()
    assert invoke(*job(mode, jobs_paths, out)).code == 0  # the holder ended: the job runs, and leaves no lock
    assert not (tmp_path / f".{out.name}.lock").exists()


@pytest.mark.parametrize("mode", ["file", "folder"])
def test_an_output_written_meanwhile_is_not_replaced_without_force(mode, jobs_paths, tmp_path, monkeypatch):
    """The targets are checked again right before the rename: a file another job wrote while this one computed
    stays as it is (exit 2, one line, no temp left); with --force it is replaced."""
    from blurlatent.inference import jobs

    out = tmp_path / ("out.tif" if mode == "file" else "out")
    target = out if mode == "file" else out / "b_a0.500.tif"
    write_output = jobs.write_output

    def meanwhile(*args, **kwargs):  # after this job's first (staged) write, another job writes the target
        write_output(*args, **kwargs)
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(b"another job's output")

    monkeypatch.setattr(jobs, "write_output", meanwhile)
    result = invoke(*job(mode, jobs_paths, out))
    assert result.code == 2 and len(result.lines) == 1, result.output
    assert f"{target}: appeared while this job ran" in result.lines[0] and "pass --force" in result.lines[0]
    assert target.read_bytes() == b"another job's output"
    assert sorted(p.relative_to(tmp_path) for p in out.parent.rglob("*") if p != jobs_paths["stacks"]
                  and jobs_paths["stacks"] not in p.parents) == sorted({target.relative_to(tmp_path),
                                                                         out.relative_to(tmp_path)})
    assert invoke(*job(mode, jobs_paths, out, "--force")).code == 0
    assert tifffile.imread(target).shape == (48, 64)


# --- cause 6: the input's dtype kept ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "uint32", "float64"])
def test_multi_level_outputs_keep_the_input_dtype(dtype, paths, tmp_path):
    """Two blur levels of a plain-TIFF pair are written in the pair's dtype (OME-TIFF holds the labels then, ImageJ
    for int16), bit for bit what the Python API returns; int32 values above 2**24 keep their low bits."""
    from blurlatent.inference.predictor import blur, load_model

    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    top = min(info.max, (1 << 25) + 1000) if info else 1e9
    rng = np.random.default_rng(6)
    a = (top - rng.integers(0, 100, (48, 64))).astype(dtype)
    b = a[::-1].copy()
    tifffile.imwrite(tmp_path / "a.tif", a)
    tifffile.imwrite(tmp_path / "b.tif", b)
    result = invoke("blur", tmp_path / "a.tif", tmp_path / "b.tif", "-c", paths["ckpt"], "--alpha", 0.3, "--alpha", 0.6,
                    "-o", tmp_path / "out.tif", "--device", "cpu")
    assert result.code == 0, result.output
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:  # the levels on T (issue 26)
        written = tif.asarray()
        labels = tif.imagej_metadata["Labels"] if tif.is_imagej else tif.ome_metadata
    assert written.dtype == np.dtype(dtype) and all(f"alpha={a}00" in labels for a in (0.3, 0.6))
    expected = blur(load_model(paths["ckpt"], device="cpu"), a, b, [0.3, 0.6])
    assert np.array_equal(written, expected)


# --- cause 12: an OME-Zarr output replaced with --force -------------------------------------------------------------


@needs_zarr
def test_an_ome_zarr_blurlatent_wrote_is_replaced_with_force(paths, tmp_path):
    from blurlatent.files.stacks import read_stack

    out = tmp_path / "out.ome.zarr"
    pair = [paths["bad"] / "sharp.tif", paths["bad"] / "blurry.tif", "-c", paths["ckpt"], "-o", out, "--device", "cpu"]
    assert invoke("deblur", *pair, "--alpha", 0.5).code == 0
    first = read_stack(out).data
    again = invoke("deblur", *pair, "--alpha", 0.25)
    assert again.code == 2 and "out.ome.zarr: already exists; pass --force" in again.output
    assert invoke("deblur", *pair, "--alpha", 0.25, "--force").code == 0
    second = read_stack(out).data
    assert second.shape == first.shape and not np.array_equal(first, second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ome.zarr"]  # no temp, no old copy left


# --- cause 13: user paths are not Rich markup -------------------------------------------------------------------


def squeezed(text) -> str:
    return "".join(str(text).split())


def test_summaries_print_user_paths_verbatim(paths, tmp_path, monkeypatch):
    """A path holding "[bold]" printed as it is (not swallowed as markup) and "[/b]" printed, not raised after the
    work was done, in the summaries of synth, prepare, train, evaluate and demo."""
    import blurlatent.demo

    odd = tmp_path / "[bold]my data[/b]"  # a folder "b]" inside "[bold]my data[": its path reads [bold]…[/b]
    odd.mkdir(parents=True)
    monkeypatch.setenv("COLUMNS", "250")  # rich tables wide enough to show the column names whole
    store, run, report = odd / "store", odd / "run", odd / "[report]"
    synth = invoke("synth", odd / "synth", *"--fields 1 --planes 16 --size 32x32 --channels w1 --workers 1".split())
    prepare = invoke("prepare", paths["src"], store, *PREP.split())
    train = invoke("train", paths["store"], "--out", run, *TRAIN.split())
    (odd / "[bold]tiny[").mkdir()
    shutil.copy(paths["ckpt"], odd / "[bold]tiny[" / "b].pt")  # a column named after its parent and stem
    shutil.copy(paths["ckpt"], odd / "b].pt")
    evaluate = invoke("evaluate", paths["store"], "-c", odd / "[bold]tiny[" / "b].pt", "-c", odd / "b].pt", "--out",
                      report, "--device", "cpu", "--whole")
    for result, path in ((synth, odd / "synth"), (prepare, store), (train, run), (evaluate, report)):
        assert result.code == 0, result.output
        assert squeezed(path) in squeezed(result.output), result.output
    assert "[bold]tiny[/b]" in evaluate.output  # the report's column: the checkpoints share the stem "b]"
    fake = SimpleNamespace(seconds=1.0, report=odd / "demo" / "report.md", figures={"demo": odd / "demo.png"},
                           passed=True)
    monkeypatch.setattr(blurlatent.demo, "run_demo", lambda *args, **kwargs: fake)
    monkeypatch.setattr(blurlatent.demo, "verdict_rows", lambda result: [])
    demo = invoke("demo", "--out", odd / "demo", "--device", "cpu")
    assert demo.code == 0 and squeezed(fake.report) in squeezed(demo.output), demo.output


# --- cause 14: SIGTERM between two writes ---------------------------------------------------------------------------

TERM_AFTER = """import os, signal, sys
from blurlatent.inference import jobs
from blurlatent.inference.predictor import Predictor
where, real = sys.argv[1], (jobs.write_output if sys.argv[1] == "write" else Predictor.run_pairs)
def then_term(*args, **kwargs):
    result = real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)  # a scheduler's stop, after the first write (or the model's work)
    return result
if where == "write":
    jobs.write_output = then_term
else:
    Predictor.run_pairs = then_term
from blurlatent.cli import app
app(sys.argv[2:], prog_name="blurlatent")
"""


@pytest.mark.parametrize("mode", ["folder", "file"])
def test_sigterm_during_blur_or_deblur_is_ctrl_c(mode, jobs_paths, tmp_path):
    """SIGTERM in folder mode between two writes (or during a file job): exit 130 with one line, as Ctrl-C, and no
    output, temp folder or lock left (was: killed by the signal, exit 143, staged temps left)."""
    out = tmp_path / "work" / ("out.tif" if mode == "file" else "out")
    out.parent.mkdir()
    argv = [str(a) for a in job(mode, jobs_paths, out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", TERM_AFTER, "write" if mode == "folder" else "model", *argv],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert [line for line in proc.stderr.splitlines() if line.strip()] == ["interrupted"], proc.stderr
    assert list(out.parent.iterdir()) == []


# --- cause 16: pixel sizes that are not positive ---------------------------------------------------------------


def test_pixel_sizes_that_are_not_positive_are_dropped_with_a_warning_and_never_written(paths, tmp_path, caplog):
    from blurlatent.files.stacks import read_stack, write_stack

    caplog.set_level(logging.WARNING)
    ome = read_stack(paths["h"] / "ome_zero.ome.tif")
    assert ome.pixel_size == (None, None, 2.0)
    assert "ome_zero.ome.tif: pixel size x '0' is not a positive number; ignored" in caplog.text
    write_stack(tmp_path / "out.ome.tif", ome.data, like=ome)
    with tifffile.TiffFile(tmp_path / "out.ome.tif") as tif:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
    assert "PhysicalSizeX" not in pixels and "PhysicalSizeY" not in pixels and pixels["PhysicalSizeZ"] == 2.0
    assert read_stack(paths["h"] / "ij_zero.tif").pixel_size == (None, None, None)
    write_stack(tmp_path / "given.tif", ome.data, pixel_size=(0.0, float("nan"), -1.0))  # the caller's own sizes
    assert read_stack(tmp_path / "given.tif").pixel_size == (None, None, None)
    if importlib.util.find_spec("zarr") is not None:
        write_stack(tmp_path / "out.ome.zarr", ome.data, pixel_size=(0.0, -2.0, 3.0))
        assert read_stack(tmp_path / "out.ome.zarr").pixel_size == (None, None, 3.0)
        multiscale = json.loads((tmp_path / "out.ome.zarr" / ".zattrs").read_text())["multiscales"][0]
        assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"] == [3.0, 1.0, 1.0]
        assert [a.get("unit") for a in multiscale["axes"]] == ["micrometer", None, None]  # no unit: no size


# --- causes 9, 15: export of any channel; a failed export leaves nothing ---------------------------------------------


@needs_export
def test_a_failed_export_removes_the_folders_it_made_and_only_those(paths, tmp_path, monkeypatch):
    from blurlatent.bmz import package

    def fail(*args, **kwargs):
        raise RuntimeFailure("exported weights differ; nothing was written")

    monkeypatch.setattr(package, "build", fail)
    (tmp_path / "mine").mkdir()
    for out in (tmp_path / "new" / "deeper" / "m.zip", tmp_path / "mine" / "m.zip"):
        result = invoke("export", paths["ckpt"], "-o", out, "--alpha", 0.5)
        assert result.code == 1 and "exported weights differ" in result.output, result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["mine"]


@needs_export
def test_export_of_an_own_stack_channel(paths, tmp_path):
    """Own-stack prepare names channels w1 … w16: a w3 model exports (its test field rendered as w1's)."""
    import zipfile

    import yaml

    from blurlatent.bmz.package import export_package

    result = export_package(paths["h"] / "w3.pt", tmp_path / "w3.zip", alpha=0.5)
    with zipfile.ZipFile(result.path) as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        readme = archive.read("README.md").decode()
    assert rdf["name"] == "blurlatent deblur w3 none" and "nuclei" not in rdf["tags"]
    assert "Channel w3" in readme


# --- cause 21: the Python API given the wrong types ---------------------------------------------------------------


def test_the_api_names_an_argument_of_the_wrong_type(paths):
    from blurlatent.inference.predictor import blur, deblur, load_model

    model = load_model(paths["ckpt"], device="cpu")
    a = np.random.default_rng(21).random((32, 32)).astype(np.float32)
    b = a[::-1].copy()
    calls = {
        "model: got str": lambda: blur(str(paths["ckpt"]), a, b, 0.5),
        "model: got int": lambda: deblur(3, a, b, 0.5),
        "alpha: got ndarray": lambda: blur(model, a, b, np.full((2, 2), 0.5)),
        "alpha: got list [[0.5]]": lambda: deblur(model, a, b, [[0.5]]),
        "alpha: got str": lambda: deblur(model, a, b, "0.5"),
        "alpha: got list [0.5, None]": lambda: blur(model, a, b, [0.5, None]),
        "ckpt_path: got ndarray": lambda: load_model(a),
        "device: got int": lambda: load_model(paths["ckpt"], device=0),
        "tile: got str": lambda: blur(model, a, b, 0.5, tile="64"),
        "out_dtype: got str 'int9'": lambda: deblur(model, a, b, 0.5, out_dtype="int9"),
    }
    for needle, call in calls.items():
        with pytest.raises(UsageError) as caught:
            call()
        text = str(caught.value)
        assert needle in text and ("pass" in text or "give" in text) and "\n" not in text, (needle, text)
