"""`blurlatent blur` and `blurlatent deblur` in-process: outputs, pairing, α from paths, refusals, how
errors map to exit codes, ``stack``-normalized checkpoints, and a --help that imports no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from helpers.cli_output import one_line_error
from helpers.infer_model import smooth_field, tiny_checkpoint
from helpers.stack_data import make_stack
from PIL import Image
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from blurlatent.cli import app
from blurlatent.errors import RuntimeFailure
from blurlatent.inference import jobs as batch
from blurlatent.inference.predictor import load_model
from blurlatent.intensity import from_unit, intensity_range, to_unit

runner = CliRunner()
UUIDS = ["a571d43d-5554-47fd-bb54-5db68290e5a7", "2703a47b-7574-461a-85e2-afc38bc0adae",
         "2e721516-a202-4647-9f19-fd73ff016ce6", "26875e94-8541-482c-8aea-09f2e0b1e2ce"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(tiny_checkpoint(tmp_path_factory))


@pytest.fixture(scope="module")
def stack_ckpt(tmp_path_factory):
    """The tiny model in a checkpoint whose config.data.normalize is ``stack``."""
    return str(tiny_checkpoint(tmp_path_factory, "stack"))


def planes(seed: int, shape=(45, 61), dtype=np.uint16):
    """A sharp and a blurry 16-bit plane of one field, BBBC006-like counts (background ~110)."""
    sharp = smooth_field(np.random.default_rng(seed), shape, 1.0)
    blurry = gaussian_filter(sharp, 3.0)
    scale = 900 if dtype == np.uint16 else 200
    return (110 + scale * sharp).astype(dtype), (110 * (dtype == np.uint16) + scale * blurry).astype(dtype)


def write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array)
    return str(path)


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_blur_levels_as_multipage_tiff(tmp_path, ckpt):
    s, b = planes(0)
    out = tmp_path / "out.tif"
    result = run("blur", write(tmp_path / "s.tif", s), write(tmp_path / "b.tif", b), "-c", ckpt,
                 "--alpha", 0.25, "--alpha", 0.5, "-o", out)
    assert result.exit_code == 0, result.output
    levels = tifffile.imread(out)
    assert levels.shape == (2,) + s.shape and levels.dtype == np.uint16
    assert "alpha = 0.25, 0.5" in result.output
    result = run("blur", tmp_path / "s.tif", tmp_path / "b.tif", "-c", ckpt, "--steps", 7, "-o", tmp_path / "steps.tif",
                 "--out-dtype", "float32")
    assert result.exit_code == 0, result.output
    steps = tifffile.imread(tmp_path / "steps.tif")
    assert steps.shape == (7,) + s.shape and steps.dtype == np.float32
    # --steps 7 is α = 1/8 .. 7/8, so its pages 2 and 4 are the α = 0.25 and 0.5 levels above
    np.testing.assert_allclose(steps[[1, 3]], levels.astype(np.float32), atol=0.51)


def test_blur_png_levels_are_numbered_files(tmp_path, ckpt):
    s, b = planes(1, dtype=np.uint8)
    Image.fromarray(s).save(tmp_path / "s.png")
    Image.fromarray(b).save(tmp_path / "b.png")
    result = run("blur", tmp_path / "s.png", tmp_path / "b.png", "-c", ckpt, "--steps", 3, "-o", tmp_path / "lv.png")
    assert result.exit_code == 0, result.output
    for a in ("0.250", "0.500", "0.750"):
        level = np.asarray(Image.open(tmp_path / f"lv_a{a}.png"))
        assert level.dtype == np.uint8 and level.shape == s.shape


def test_blur_extrapolation_needs_flag(tmp_path, ckpt):
    s, b = planes(2)
    args = ["blur", write(tmp_path / "s.tif", s), write(tmp_path / "b.tif", b), "-c", ckpt, "--alpha", 1.5,
            "-o", tmp_path / "x.tif"]
    one_line_error(run(*args), "--alpha 1.5", "--extrapolate")
    assert not (tmp_path / "x.tif").exists()
    assert run(*args, "--extrapolate").exit_code == 0


def test_existing_output_needs_force(tmp_path, ckpt):
    s, b = planes(3)
    out = tmp_path / "out.tif"
    out.write_bytes(b"keep me")
    args = ["deblur", write(tmp_path / "z0.tif", b), write(tmp_path / "z8.tif", s), "-c", ckpt, "--alpha", 0.5,
            "-o", out]
    one_line_error(run(*args), str(out), "--force")
    assert out.read_bytes() == b"keep me"
    result = run(*args, "--force")
    assert result.exit_code == 0, result.output
    assert tifffile.imread(out).shape == s.shape


@pytest.mark.parametrize("case", ["rgb", "shape", "missing", "corrupt", "checkpoint"])
def test_bad_inputs_one_line_exit_2_nothing_written(tmp_path, ckpt, case):
    s, b = planes(4)
    first = write(tmp_path / "z0.tif", b)
    second = write(tmp_path / "z8.tif", s)
    ck = ckpt
    if case == "rgb":
        bad = write(tmp_path / "rgb.tif", np.stack([s] * 3, axis=-1))
    elif case == "shape":
        bad = write(tmp_path / "small.tif", s[:-8])
    elif case == "missing":
        bad = str(tmp_path / "nope.tif")
    elif case == "corrupt":
        bad = tmp_path / "bad.tif"
        bad.write_bytes((tmp_path / "z8.tif").read_bytes()[:60])
        bad = str(bad)
    else:
        bad, ck = second, str(tmp_path / "missing.pt")
    out = tmp_path / "out.tif"
    result = run("deblur", first, bad, "-c", ck, "--alpha", 0.5, "-o", out)
    one_line_error(result, "missing.pt" if case == "checkpoint" else bad)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_deblur_alpha_from_planes_options_and_paths(tmp_path, ckpt):
    s, b = planes(5)
    z0 = write(tmp_path / "BBBC006_v1_images_z_00" / f"mcf-z-stacks-03212011_a01_s1_w1{UUIDS[0]}.tif", b)
    z8 = write(tmp_path / "BBBC006_v1_images_z_08" / f"mcf-z-stacks-03212011_a01_s1_w1{UUIDS[1]}.tif", s)
    from_paths = run("deblur", z0, z8, "-c", ckpt, "-o", tmp_path / "a.tif")
    assert from_paths.exit_code == 0, from_paths.output
    assert "alpha = 0.5 from planes 0, 8 toward 16" in from_paths.output
    explicit = run("deblur", z0, z8, "-c", ckpt, "--planes", 0, 8, "--target", 16, "-o", tmp_path / "b.tif")
    assert explicit.exit_code == 0, explicit.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"), tifffile.imread(tmp_path / "b.tif"))
    far, near = write(tmp_path / "flat" / "far.tif", b), write(tmp_path / "flat" / "near.tif", s)
    other_side = run("deblur", far, near, "-c", ckpt, "--planes", 32, 24, "--target", 16, "-o", tmp_path / "c.tif")
    assert "alpha = 0.5" in other_side.output
    one_line_error(run("deblur", far, near, "-c", ckpt, "--planes", 8, 0, "--target", 16, "-o", tmp_path / "d.tif"),
                   "between")
    one_line_error(run("deblur", z0, z8, "-c", ckpt, "--alpha", 1.0, "-o", tmp_path / "e.tif"), "--alpha 1.0")
    one_line_error(run("deblur", z0, z8, "-c", ckpt, "--alpha", 0.5, "--planes", 0, 8, "-o", tmp_path / "f.tif"),
                   "not both")
    plain = write(tmp_path / "flat" / "x.tif", b)
    one_line_error(run("deblur", plain, z8, "-c", ckpt, "-o", tmp_path / "g.tif"), "--planes")
    assert not any((tmp_path / n).exists() for n in ("d.tif", "e.tif", "f.tif", "g.tif"))


def test_deblur_sweep_writes_each_alpha(tmp_path, ckpt):
    s, b = planes(6)
    result = run("deblur", write(tmp_path / "z0.tif", b), write(tmp_path / "z8.tif", s), "-c", ckpt, "--sweep",
                 "-o", tmp_path / "sw.tif", "--tile", 0)
    assert result.exit_code == 0, result.output
    pages = tifffile.imread(tmp_path / "sw.tif")
    assert pages.shape == (7,) + s.shape
    assert len({p.tobytes() for p in pages}) == 7  # the α really differ


def test_folder_mode_pairs_bbbc_fields_across_uuids(tmp_path, ckpt):
    sharp_dir, blurry_dir = tmp_path / "z16", tmp_path / "z00"
    fields = ["a01_s1_w1", "b02_s2_w1", "c03_s1_w2"]
    for i, field in enumerate(fields):
        well, site, ch = field.split("_")
        s, b = planes(10 + i)
        write(sharp_dir / f"00_mcf-z-stacks-03212011_{well}_{site}_w{ch[1]}{UUIDS[i]}.tif", s)
        write(blurry_dir / f"mcf-z-stacks-03212011_{well}_{site}_w{ch[1]}{UUIDS[3 - i]}.tif", b)
    write(sharp_dir / f"mcf-z-stacks-03212011_p24_s1_w1{UUIDS[0]}.tif", s)  # no partner
    out = tmp_path / "aug"
    result = run("blur", "--sharp-dir", sharp_dir, "--blurry-dir", blurry_dir, "-c", ckpt, "--steps", 3, "-o", out,
                 "--batch-size", 2)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{f}_a{a}.tif" for f in fields for a in ("0.250", "0.500", "0.750"))
    assert "skipped 1" in result.output
    # batching does not change a pair's result
    s0 = next(sharp_dir.glob("*a01_s1*"))
    b0 = next(blurry_dir.glob("*a01_s1*"))
    single = run("blur", s0, b0, "-c", ckpt, "--alpha", 0.5, "-o", tmp_path / "one.tif")
    assert single.exit_code == 0, single.output
    np.testing.assert_allclose(tifffile.imread(out / "a01_s1_w1_a0.500.tif").astype(float),
                               tifffile.imread(tmp_path / "one.tif").astype(float), atol=1)
    # a second run refuses to overwrite anything
    before = (out / "a01_s1_w1_a0.250.tif").stat().st_mtime_ns
    again = run("blur", "--sharp-dir", sharp_dir, "--blurry-dir", blurry_dir, "-c", ckpt, "--steps", 3, "-o", out)
    one_line_error(again, "--force")
    assert (out / "a01_s1_w1_a0.250.tif").stat().st_mtime_ns == before


def test_folder_mode_falls_back_to_file_names(tmp_path, ckpt):
    s, b = planes(20)
    write(tmp_path / "A" / "cellX.tif", s)
    write(tmp_path / "B" / "cellX.tif", b)
    write(tmp_path / "B" / "cellY.tif", b)
    result = run("blur", "--sharp-dir", tmp_path / "A", "--blurry-dir", tmp_path / "B", "-c", ckpt, "--alpha", 0.5,
                 "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["cellX_a0.500.tif"]
    one_line_error(run("blur", "--sharp-dir", tmp_path / "A", "--blurry-dir", tmp_path / "nope", "-c", ckpt,
                       "--alpha", 0.5, "-o", tmp_path / "p"), "nope")
    one_line_error(run("blur", "-c", ckpt, "--alpha", 0.5, "-o", tmp_path / "q.tif"), "SHARP")


# --- errors: flag names, exit codes, --debug -------------------------------------------------------


def test_tile_too_small_names_the_flag(tmp_path, ckpt):
    s, b = planes(30)
    result = run("deblur", write(tmp_path / "z0.tif", b), write(tmp_path / "z8.tif", s), "-c", ckpt, "--alpha", 0.5,
                 "-o", tmp_path / "out.tif", "--tile", 8, "--device", "cpu")
    one_line_error(result, "--tile 8", "too small")
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.parametrize("error, code, kind", [(ValueError("boom"), 1, "internal error:"),
                                               (KeyError("boom"), 1, "internal error:"),
                                               (RuntimeFailure("boom"), 1, "error:")])
def test_exceptions_inside_a_command_map_to_exit_codes(tmp_path, ckpt, monkeypatch, error, code, kind):
    """A bug (any exception but UsageError and the file errors) is exit 1 and "internal error", never 2,
    even a bare ValueError; a RuntimeFailure is exit 1 as a plain error."""
    s, b = planes(31)
    args = ["deblur", write(tmp_path / "z0.tif", b), write(tmp_path / "z8.tif", s), "-c", ckpt, "--alpha", 0.5,
            "-o", tmp_path / "out.tif", "--device", "cpu"]

    def fail(*a, **k):
        raise error

    monkeypatch.setattr(batch, "run_files", fail)
    result = run(*args)
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(kind), result.output
    assert "boom" in result.output and "--debug" in result.output and "Traceback" not in result.output
    if kind == "error:":
        assert "internal" not in result.output
    debug = run("--debug", *args)  # --debug lets the very exception through
    assert debug.exit_code != 0 and debug.exception is error


# --- stack normalization ---------------------------------------------------------------------------


def test_stack_checkpoint_deblurs_and_blurs_on_the_scale_nearer_focus(tmp_path, stack_ckpt):
    """A ``stack`` checkpoint works through the CLI, and both inputs share the scale of the input nearer
    focus: the less-blurry one for deblur, the sharp one for blur (its 0.1/99.9 percentiles)."""
    s, b = planes(32)
    sharp_path, blurry_path = write(tmp_path / "s.tif", s), write(tmp_path / "b.tif", b)
    options = ["-c", stack_ckpt, "--device", "cpu", "--intensity", "minmax", "--out-dtype", "float32"]
    deblurred = run("deblur", blurry_path, sharp_path, "--alpha", 0.5, "-o", tmp_path / "d.tif", *options)
    assert deblurred.exit_code == 0, deblurred.output
    blurred = run("blur", sharp_path, blurry_path, "--alpha", 0.25, "--alpha", 0.75, "-o", tmp_path / "l.tif", *options)
    assert blurred.exit_code == 0, blurred.output

    predictor = load_model(stack_ckpt, "cpu")
    assert predictor.normalize == "stack"
    lo, hi = intensity_range(s, "percentile")  # the sharp plane is nearer focus in both commands
    assert intensity_range(b, "percentile") != pytest.approx((lo, hi))
    for first, second, rule in ((b, s, "deblur"), (s, b, "blur")):
        for scale in predictor.pair_scales(first, second, rule):
            assert (scale.lo, scale.hi) == pytest.approx((lo, hi)), rule
    unit = predictor.combine(to_unit(b, lo, hi)[None], to_unit(s, lo, hi)[None], [0.5], "deblur")[0, 0]
    np.testing.assert_allclose(tifffile.imread(tmp_path / "d.tif"), from_unit(unit, lo, hi, np.float32),
                               rtol=1e-5, atol=1e-2)
    levels = predictor.combine(to_unit(s, lo, hi)[None], to_unit(b, lo, hi)[None], [0.25, 0.75], "blur")[0]
    np.testing.assert_allclose(tifffile.imread(tmp_path / "l.tif"), from_unit(levels, lo, hi, np.float32),
                               rtol=1e-5, atol=1e-2)
    # the default (conserve, the inputs' dtype) runs too, and is the Python API's answer to the bit
    conserved = run("deblur", blurry_path, sharp_path, "--alpha", 0.5, "-o", tmp_path / "c.tif", "-c", stack_ckpt,
                    "--device", "cpu")
    assert conserved.exit_code == 0, conserved.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "c.tif"), predictor.deblur(b, s, 0.5))


# --- --help stays light ----------------------------------------------------------------------------


def test_help_imports_no_torch():
    """`blurlatent --help` (and each inference command's --help) must not pay for importing torch."""
    code = ("import sys; from typer.testing import CliRunner; from blurlatent.cli import app; "
            "args = (['--help'], ['blur', '--help'], ['deblur', '--help']); "
            "codes = [CliRunner().invoke(app, a).exit_code for a in args]; "
            "print(codes, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[0, 0, 0] False"


# --- z-stacks: --z, --channel, --series; metadata out; folder mode for deblur ------------------------------


def field_stack(seed: int, shape=(40, 48)) -> np.ndarray:
    """Three uint16 planes of one field, blurriest first: z0 (sigma 3), z1 (sigma 1.5), z2 (sharp)."""
    sharp, blurry = planes(seed, shape)
    mid = (110 + gaussian_filter(sharp.astype(np.float32) - 110, 1.5)).astype(np.uint16)
    return np.stack([blurry, mid, sharp])


def zstack(path, data):
    """A plain multi-page TIFF z-stack (pages, never RGB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, data, photometric="minisblack")
    return str(path)


def ome_stack(path, data, axes="ZYX", **meta):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, data, ome=True, photometric="minisblack",
                     metadata={"axes": axes, "PhysicalSizeX": 0.645, "PhysicalSizeY": 0.645, "PhysicalSizeZ": 2.0,
                               **meta})
    return str(path)


def test_stack_deblur_equals_two_file_deblur(tmp_path, ckpt):
    """`deblur STACK --z 0 1 --target 2` is the two-file deblur of the same planes with --planes 0 1, to the bit;
    `blur STACK --z 2 0` the two-file blur of planes 2 and 0."""
    data = field_stack(40)
    stack = zstack(tmp_path / "stack.tif", data)
    z0, z1, z2 = (write(tmp_path / f"z{i}.tif", data[i]) for i in range(3))
    result = run("deblur", stack, "--z", 0, 1, "--target", 2, "-c", ckpt, "-o", tmp_path / "s.tif")
    assert result.exit_code == 0, result.output
    assert "alpha = 0.5 from planes 0, 1 toward 2" in result.output
    assert run("deblur", z0, z1, "--planes", 0, 1, "--target", 2, "-c", ckpt, "-o", tmp_path / "f.tif").exit_code == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "s.tif"), tifffile.imread(tmp_path / "f.tif"))
    assert run("blur", stack, "--z", 2, 0, "--steps", 3, "-c", ckpt, "-o", tmp_path / "bs.tif").exit_code == 0
    assert run("blur", z2, z0, "--steps", 3, "-c", ckpt, "-o", tmp_path / "bf.tif").exit_code == 0
    levels = tifffile.imread(tmp_path / "bs.tif")
    assert levels.shape == (3,) + data.shape[1:]
    np.testing.assert_array_equal(levels, tifffile.imread(tmp_path / "bf.tif"))


def test_ome_in_ome_out_with_pixel_sizes_and_alpha_labels(tmp_path, ckpt):
    from blurlatent.files.stacks import read_stack

    stack = ome_stack(tmp_path / "cells.ome.tif", field_stack(41))
    result = run("deblur", stack, "--z", 0, 1, "--target", 2, "-c", ckpt, "-o", tmp_path / "sharp.tif")
    assert result.exit_code == 0, result.output
    out = read_stack(tmp_path / "sharp.tif")
    assert out.kind == "ome" and out.pixel_size[:2] == pytest.approx((0.645, 0.645))
    assert out.labels == ("alpha=0.500",)
    with tifffile.TiffFile(tmp_path / "sharp.tif") as tif:
        assert tif.is_ome and "cells.ome.tif" in tif.ome_metadata  # the source file in the description
    sweep = run("deblur", stack, "--z", 0, 1, "--target", 2, "--sweep", "-c", ckpt, "-o", tmp_path / "sweep.ome.tif")
    assert sweep.exit_code == 0, sweep.output
    with tifffile.TiffFile(tmp_path / "sweep.ome.tif") as tif:  # levels are no focal planes: T, not Z (issue 26)
        assert tif.is_ome and tif.series[0].axes == "TYX" and tif.series[0].shape == (7, 40, 48)
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        assert (pixels["PhysicalSizeX"], pixels["PhysicalSizeZ"]) == (0.645, 2.0)  # the stack's z step kept
        assert all(f"alpha={k / 8:.3f}" in tif.ome_metadata for k in range(1, 8))


def test_imagej_in_imagej_out_and_plain_levels_get_labels(tmp_path, ckpt):
    from blurlatent.files.stacks import read_stack

    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, field_stack(42), imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "unit": "um", "spacing": 2.0})
    result = run("blur", path, "--z", 2, 0, "--alpha", 0.25, "--alpha", 0.75, "-c", ckpt, "-o", tmp_path / "l.tif")
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:  # levels are ImageJ frames, not slices (issue 26)
        assert tif.is_imagej and tif.series[0].axes == "TYX" and tif.series[0].dtype == np.uint16
        assert tif.imagej_metadata["Labels"] == ["alpha=0.250", "alpha=0.750"] and tif.imagej_metadata["frames"] == 2
        assert tif.pages[0].tags["XResolution"].value == (2, 1)  # 0.5 µm pixels
    s, b = planes(43)  # plain TIFFs in: one level stays a plain TIFF, several become labelled pages
    pair = (write(tmp_path / "s.tif", s), write(tmp_path / "b.tif", b))
    assert run("blur", *pair, "--alpha", 0.5, "-c", ckpt, "-o", tmp_path / "one.tif").exit_code == 0
    assert read_stack(tmp_path / "one.tif").kind == "tiff"
    assert run("blur", *pair, "--steps", 2, "-c", ckpt, "-o", tmp_path / "two.tif").exit_code == 0
    with tifffile.TiffFile(tmp_path / "two.tif") as tif:
        assert tif.is_imagej and tif.imagej_metadata["Labels"] == ["alpha=0.333", "alpha=0.667"]


def test_ome_name_never_gets_a_plain_tiff(tmp_path, ckpt):
    from blurlatent.files.stacks import read_stack

    s, b = planes(44)
    result = run("deblur", write(tmp_path / "b.tif", b), write(tmp_path / "s.tif", s), "--alpha", 0.5, "-c", ckpt,
                 "-o", tmp_path / "out.ome.tif")
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(tmp_path / "out.ome.tif") as tif:
        assert tif.is_ome
    assert read_stack(tmp_path / "out.ome.tif").kind == "ome"


def test_channel_and_series_choose_the_stack(tmp_path, ckpt):
    data = field_stack(45)
    two = np.stack([data, data[:, ::-1]], axis=1)  # ZCYX
    path = ome_stack(tmp_path / "two.ome.tif", two, axes="ZCYX", Channel={"Name": ["DAPI", "GFP"]})
    zstack(tmp_path / "dapi.tif", data)
    one_line_error(run("deblur", path, "--z", 0, 1, "--target", 2, "-c", ckpt, "-o", tmp_path / "x.tif"),
                   "holds 2 channels", "pass --channel 0..1")
    by_name = run("deblur", path, "--z", 0, 1, "--target", 2, "--channel", "DAPI", "-c", ckpt, "-o", tmp_path / "n.tif")
    assert by_name.exit_code == 0, by_name.output
    assert run("deblur", tmp_path / "dapi.tif", "--z", 0, 1, "--target", 2, "-c", ckpt, "-o",
               tmp_path / "p.tif").exit_code == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "n.tif"), tifffile.imread(tmp_path / "p.tif"))
    with tifffile.TiffWriter(tmp_path / "series.tif") as tif:
        tif.write(data[:, ::-1], photometric="minisblack")
        tif.write(data, photometric="minisblack")
    one_line_error(run("deblur", tmp_path / "series.tif", "--z", 0, 1, "-c", ckpt, "-o", tmp_path / "y.tif"),
                   "holds 2 image series", "pass --series 0..1")
    second = run("deblur", tmp_path / "series.tif", "--series", 1, "--z", 0, 1, "--target", 2, "-c", ckpt,
                 "-o", tmp_path / "q.tif")
    assert second.exit_code == 0, second.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "q.tif"), tifffile.imread(tmp_path / "p.tif"))


@pytest.mark.parametrize("case", ["out-of-range", "negative", "single-plane", "stack-without-z", "z-and-two-files",
                                  "no-second", "equal"])
def test_bad_z_is_one_line_naming_what_to_pass(tmp_path, ckpt, case):
    data = field_stack(46)
    stack, plane = zstack(tmp_path / "stack.tif", data), write(tmp_path / "plane.tif", data[0])
    args, needles = {
        "out-of-range": ([stack, "--z", 0, 5], ("--z 0 5: plane 5 is out of range", "3 planes",
                                                "pass --z P1 P2 within 0..2")),
        "negative": ([stack, "--z", -1, 1], ("--z -1 1: plane -1 is out of range", "pass --z P1 P2 within 0..2")),
        "single-plane": ([plane, "--z", 0, 1], ("plane.tif: holds one plane", "without --z P1 P2")),
        "stack-without-z": ([stack, plane], ("stack.tif: holds 3 planes", "pass --z P1 P2 with this one file")),
        "z-and-two-files": ([stack, plane, "--z", 0, 1], ("--z chooses two planes", "two single-plane files")),
        "no-second": ([plane], ("give BLURRIEST and LESS_BLURRY", "--z P1 P2")),
        "equal": ([stack, "--z", 1, 1], ("--z 1 1", "must differ")),
    }[case]
    one_line_error(run("deblur", *args, "--alpha", 0.5, "-c", ckpt, "-o", tmp_path / "out.tif"), *needles)
    assert not (tmp_path / "out.tif").exists()


def test_deblur_folder_mode_pairs_fields_or_stacks(tmp_path, ckpt):
    """Two folders paired by BBBC006 field (alpha from the folder names), or a folder of stacks with --z: each
    field or stack gives one output, equal to the single-file deblur of its planes."""
    low, high = tmp_path / "BBBC006_v1_images_z_00", tmp_path / "BBBC006_v1_images_z_08"
    stacks = tmp_path / "stacks"
    for i, field in enumerate(["a01_s1_w1", "b02_s2_w1"]):
        data = field_stack(50 + i)
        write(low / f"mcf-z-stacks-03212011_{field}{UUIDS[i]}.tif", data[0])
        write(high / f"mcf-z-stacks-03212011_{field}{UUIDS[3 - i]}.tif", data[1])
        zstack(stacks / f"cell{i}.tif", data) if i == 0 else ome_stack(stacks / f"cell{i}.ome.tif", data)
    by_field = run("deblur", "--blurriest-dir", low, "--less-blurry-dir", high, "-c", ckpt, "-o", tmp_path / "f")
    assert by_field.exit_code == 0, by_field.output
    assert "alpha = 0.5 from planes 0, 8 toward 16" in by_field.output
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["a01_s1_w1_a0.500.tif", "b02_s2_w1_a0.500.tif"]
    by_stack = run("deblur", "--stack-dir", stacks, "--z", 0, 1, "--target", 2, "-c", ckpt, "-o", tmp_path / "s")
    assert by_stack.exit_code == 0, by_stack.output
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["cell0_a0.500.tif", "cell1_a0.500.ome.tif"]
    single = run("deblur", stacks / "cell1.ome.tif", "--z", 0, 1, "--target", 2, "-c", ckpt, "-o", tmp_path / "1.tif")
    assert single.exit_code == 0, single.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "s" / "cell1_a0.500.ome.tif"),
                                  tifffile.imread(tmp_path / "1.tif"))
    one_line_error(run("deblur", "--stack-dir", stacks, "-c", ckpt, "--alpha", 0.5, "-o", tmp_path / "t"),
                   "stacks", "pass --z P1 P2")
    one_line_error(run("deblur", "--stack-dir", stacks, "--blurriest-dir", low, "--z", 0, 1, "-c", ckpt,
                       "-o", tmp_path / "u"), "--stack-dir, or --blurriest-dir and --less-blurry-dir")


def test_deblur_target_auto_finds_each_stacks_focus(tmp_path, ckpt):
    """--target auto, the default for stacks (issue 26): the focus found (z5 of 12 planes, not BBBC006's 16) and
    said, the output that of --target 5; in a folder of stacks each stack's own focus, alpha and output name."""
    stack = zstack(tmp_path / "f5.tif", make_stack(5, planes=12, channels=1, size=(64, 64))[0])
    auto = run("deblur", stack, "--z", 0, 3, "-c", ckpt, "-o", tmp_path / "auto.tif")
    assert auto.exit_code == 0, auto.output
    lines = auto.output.splitlines()  # the tiny model's output may also get the self-check's warning
    said = lines.index("target = z5 (focus found by normvar)")
    assert lines[said + 1] == "alpha = 0.4 from planes 0, 3 toward 5"
    assert run("deblur", stack, "--z", 0, 3, "--target", 5, "-c", ckpt, "-o", tmp_path / "five.tif").exit_code == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "auto.tif"), tifffile.imread(tmp_path / "five.tif"))
    stacks = tmp_path / "stacks"
    zstack(stacks / "a.tif", make_stack(5, planes=12, channels=1, size=(64, 64), seed=1)[0])
    zstack(stacks / "b.tif", make_stack(6, planes=12, channels=1, size=(64, 64), seed=2)[0])
    by_stack = run("deblur", "--stack-dir", stacks, "--z", 0, 3, "-c", ckpt, "-o", tmp_path / "s")
    assert by_stack.exit_code == 0, by_stack.output
    assert "a: target = z5 (focus found by normvar); alpha = 0.4 from planes 0, 3 toward 5" in by_stack.output
    assert "b: target = z6 (focus found by normvar); alpha = 0.5 from planes 0, 3 toward 6" in by_stack.output
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["a_a0.400.tif", "b_a0.500.tif"]
    single = run("deblur", stacks / "b.tif", "--z", 0, 3, "--target", 6, "-c", ckpt, "-o", tmp_path / "b.tif")
    assert single.exit_code == 0, single.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "s" / "b_a0.500.tif"), tifffile.imread(tmp_path / "b.tif"))


def test_deblur_folder_of_stacks_is_all_or_nothing(tmp_path, ckpt):
    stacks = tmp_path / "stacks"
    zstack(stacks / "a.tif", field_stack(60))
    zstack(stacks / "m.tif", field_stack(61))
    zstack(stacks / "z.tif", field_stack(62)[:1])  # sorted last: a single plane, so --z 0 1 fails there
    result = run("deblur", "--stack-dir", stacks, "--z", 0, 1, "--target", 2, "-c", ckpt, "-o", tmp_path / "out",
                 "--batch-size", 1)
    one_line_error(result, "z.tif: holds one plane")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stacks"]  # no output, temp or folder
    zstack(stacks / "z.tif", field_stack(62))
    again = run("deblur", "--stack-dir", stacks, "--z", 0, 1, "--target", 2, "-c", ckpt, "-o", tmp_path / "out")
    assert again.exit_code == 0, again.output
    assert "wrote 3 images for 3 stacks" in again.output


def test_ome_zarr_out_and_in(tmp_path, ckpt):
    """`-o x.ome.zarr` writes OME-Zarr with the pixel sizes and α labels; an OME-Zarr stack in gives OME-TIFF out."""
    pytest.importorskip("zarr")
    from blurlatent.files.stacks import read_stack, write_stack

    stack = ome_stack(tmp_path / "cells.ome.tif", field_stack(47))
    result = run("blur", stack, "--z", 2, 0, "--steps", 3, "-c", ckpt, "-o", tmp_path / "levels.ome.zarr")
    assert result.exit_code == 0, result.output
    attrs = json.loads((tmp_path / "levels.ome.zarr" / ".zattrs").read_text())
    assert [a["name"] for a in attrs["multiscales"][0]["axes"]] == ["t", "y", "x"]  # levels on t (issue 26)
    assert attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.645, 0.645]
    assert attrs["blurlatent"]["labels"] == ["alpha=0.250", "alpha=0.500", "alpha=0.750"]
    write_stack(tmp_path / "cells.ome.zarr", field_stack(47), like=read_stack(stack))  # a z-stack in OME-Zarr
    deblurred = run("deblur", tmp_path / "cells.ome.zarr", "--z", 2, 0, "--alpha", 0.5, "-c", ckpt,
                    "-o", tmp_path / "from_zarr.tif")
    assert deblurred.exit_code == 0, deblurred.output
    out = read_stack(tmp_path / "from_zarr.tif")
    assert out.kind == "ome" and out.pixel_size[:2] == pytest.approx((0.645, 0.645))
