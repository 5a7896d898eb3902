"""What every blur/deblur output says about how it was made (issue 26, item 3), read back with
``files.provenance.read_provenance``; α levels never on Z; the input's dtype kept or refused (issue 28, cause 6)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import tifffile
from helpers.infer_model import smooth_field, tiny_checkpoint
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from blurlatent import __version__
from blurlatent.cli import app
from blurlatent.files.provenance import read_provenance

try:
    import zarr
except ImportError:  # the optional extra blurlatent[zarr]
    zarr = None
runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


def field(seed: int, dtype=np.uint16) -> np.ndarray:
    """Three planes of one 40x48 field, blurriest first (sigma 3, 1.5, sharp), values 110..1010."""
    sharp = smooth_field(np.random.default_rng(seed), (40, 48), 1.0)
    planes = [gaussian_filter(sharp, s) for s in (3.0, 1.5)] + [sharp]
    return np.stack([110 + 900 * p for p in planes]).astype(dtype)


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def no_machine_path(path, tmp_path) -> None:
    """Neither the provenance nor any byte of the output names a folder of this machine (issue 26, item 4)."""
    record = read_provenance(path)
    assert record and "/" not in json.dumps(record)
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    assert not [p for p in files if str(tmp_path).encode() in p.read_bytes()]


@pytest.mark.parametrize("kind", ["ome", "imagej", "zarr"])
def test_deblur_of_a_stack_records_planes_z_target_channel_model_version(tmp_path, ckpt, kind):
    if kind == "zarr":
        pytest.importorskip("zarr")
    data = np.stack([field(1), field(1)[:, ::-1]], axis=1)  # ZCYX, channel 1 mirrored
    if kind == "imagej":
        source = tmp_path / "cells.tif"
        tifffile.imwrite(source, data, imagej=True, resolution=(2.0, 2.0),
                         metadata={"axes": "ZCYX", "spacing": 2.0, "unit": "um", "Labels": [""] * 6})
    else:
        source = tmp_path / "cells.ome.tif"
        tifffile.imwrite(source, data, ome=True, metadata={"axes": "ZCYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                                                           "PhysicalSizeZ": 2.0, "Channel": {"Name": ["a", "GFP"]}})
    out = tmp_path / ("out.ome.zarr" if kind == "zarr" else "out.tif")
    run("deblur", source, "--z", 0, 1, "--target", 2, "--channel", 1, "-c", ckpt, "-o", out)
    record = read_provenance(out)
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    check = record.pop("self_check")  # the deblur's self-check (issue 25; tests/inference/test_selfcheck.py)
    assert len(check) == 1 and check[0] > 0
    assert record == {"command": "deblur", "alphas": [0.5], "model": ckpt.name, "model_sha256": digest,
                      "version": __version__, "planes": [0.0, 1.0], "z_um": [0.0, 2.0], "target": 2.0, "channel": 1,
                      "channel_name": None if kind == "imagej" else "GFP", "inputs": [source.name]}
    no_machine_path(out, tmp_path)


def test_blur_of_two_files_and_folder_mode_record_their_inputs(tmp_path, ckpt):
    stack = field(2)
    for name, plane in (("s.tif", stack[2]), ("b.tif", stack[0])):
        for folder in ("sharp", "blurry"):
            (tmp_path / folder).mkdir(exist_ok=True)
            tifffile.imwrite(tmp_path / folder / name.replace(".", "_f."), plane)
        tifffile.imwrite(tmp_path / name, plane)
    run("blur", tmp_path / "s.tif", tmp_path / "b.tif", "--alpha", 0.5, "-c", ckpt, "-o", tmp_path / "one.tif")
    run("blur", tmp_path / "s.tif", tmp_path / "b.tif", "--steps", 3, "-c", ckpt, "-o", tmp_path / "three.tif")
    one, three = read_provenance(tmp_path / "one.tif"), read_provenance(tmp_path / "three.tif")
    assert one["command"] == "blur" and one["alphas"] == [0.5] and one["inputs"] == ["s.tif", "b.tif"]
    assert one["planes"] is None and one["target"] is None and one["z_um"] is None and one["channel"] == 0
    assert three["alphas"] == [0.25, 0.5, 0.75] and three["model"] == ckpt.name
    with tifffile.TiffFile(tmp_path / "three.tif") as tif:  # labelled ImageJ frames: Fiji's t slider, not depth
        assert tif.is_imagej and tif.series[0].axes == "TYX" and tif.imagej_metadata["frames"] == 3
    run("blur", "--sharp-dir", tmp_path / "sharp", "--blurry-dir", tmp_path / "blurry", "--alpha", 0.25, "--alpha",
        0.75, "-c", ckpt, "-o", tmp_path / "out")
    for name in ("s_f", "b_f"):
        for a in (0.25, 0.75):
            record = read_provenance(tmp_path / "out" / f"{name}_a{a:.3f}.tif")
            assert record["alphas"] == [a] and record["inputs"] == [f"{name}.tif"]  # each pair its own
    for path in (tmp_path / "one.tif", tmp_path / "three.tif"):
        no_machine_path(path, tmp_path)


def test_sweep_levels_are_frames_not_slices(tmp_path, ckpt):
    """`--sweep` on an ImageJ stack: a hyperstack of 7 frames and 1 slice (Fiji shows α as time, not depth)."""
    tifffile.imwrite(tmp_path / "ij.tif", field(3), imagej=True, metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um"})
    run("deblur", tmp_path / "ij.tif", "--z", 0, 1, "--target", 2, "--sweep", "-c", ckpt, "-o", tmp_path / "s.tif")
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        meta = tif.imagej_metadata
        assert tif.series[0].axes == "TYX" and meta["frames"] == 7 and meta.get("slices", 1) == 1
        assert meta["Labels"] == [f"alpha={k / 8:.3f}" for k in range(1, 8)] and meta["spacing"] == 2.0
    assert read_provenance(tmp_path / "s.tif")["alphas"] == [k / 8 for k in range(1, 8)]


# --- issue 28, cause 6: multi-level outputs keep the input's dtype, or refuse it in one line ------------------------


@pytest.mark.parametrize("dtype, imagej", [("int16", True), ("int16", False), ("uint32", False), ("float64", False)])
def test_sweep_outputs_keep_the_dtype(tmp_path, ckpt, dtype, imagej):
    """int16 ImageJ stacks stay int16 ImageJ (it used to be refused); plain stacks of any type give their type on
    T (ImageJ for int16, OME-TIFF where ImageJ cannot hold it, OME-Zarr always), bit for bit the API's levels."""
    from blurlatent.inference.predictor import deblur, load_model

    data = field(4, np.dtype(dtype)) - (500 if dtype == "int16" else 0)
    tifffile.imwrite(tmp_path / "in.tif", data, imagej=imagej, photometric="minisblack", metadata={"axes": "ZYX"})
    expected = deblur(load_model(str(ckpt), device="cpu"), data, alpha=[k / 8 for k in range(1, 8)], z=(0, 1))
    outputs = ["out.tif"] + (["out.ome.zarr"] if not imagej and zarr is not None else [])
    for name in outputs:
        run("deblur", tmp_path / "in.tif", "--z", 0, 1, "--alpha", 0.125, "--sweep", "-c", ckpt, "-o", tmp_path / name)
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert tif.series[0].axes == "TYX" and tif.is_imagej == (dtype == "int16") and tif.is_ome == (dtype != "int16")
        assert np.array_equal(tif.asarray(), expected) and tif.series[0].dtype == np.dtype(dtype)
    if "out.ome.zarr" in outputs:
        assert np.array_equal(zarr.open_array(str(tmp_path / "out.ome.zarr" / "0"), mode="r")[...], expected)


def test_what_imagej_cannot_hold_is_refused_in_one_line(tmp_path, ckpt):
    """An ImageJ uint16 plane and an int16 one give int32 levels: an ImageJ output cannot hold them."""
    tifffile.imwrite(tmp_path / "a.tif", field(5)[0], imagej=True)
    tifffile.imwrite(tmp_path / "b.tif", field(5)[2].astype(np.int16), imagej=True)
    args = ["blur", tmp_path / "a.tif", tmp_path / "b.tif", "--steps", 2, "-c", ckpt, "-o", tmp_path / "o.tif"]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    text = " ".join(result.output.split())
    assert "holds uint8, uint16, int16 or float32 pixels, not int32" in text and "--out-dtype" in text
    assert ".ome.tif" in text and not (tmp_path / "o.tif").exists()


def test_a_builtin_model_is_recorded_by_its_name_and_card_checksum(tmp_path):
    from blurlatent.inference.builtin import builtin_model, builtin_path, model_identity

    model = builtin_model()
    assert model_identity(builtin_path(model)) == (model.name, model.sha256)
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "mine.pt").write_bytes(b"weights")
    assert model_identity(tmp_path / "deep" / "mine.pt") == ("mine.pt", hashlib.sha256(b"weights").hexdigest())
