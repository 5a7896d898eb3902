"""`blurlatent blur` and `blurlatent deblur` in-process: outputs, pairing, α from paths, refusals, how
errors map to exit codes, ``stack``-normalized checkpoints, and a --help that imports no torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile
from infer_model import smooth_field, tiny_checkpoint
from PIL import Image
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from blurlatent import batch
from blurlatent.cli import app
from blurlatent.errors import RuntimeFailure
from blurlatent.inference import load_model
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


def one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in " ".join(result.output.split()), result.output


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
    other_side = run("deblur", z0, z8, "-c", ckpt, "--planes", 32, 24, "-o", tmp_path / "c.tif")
    assert "alpha = 0.5" in other_side.output
    one_line_error(run("deblur", z0, z8, "-c", ckpt, "--planes", 8, 0, "-o", tmp_path / "d.tif"), "between")
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
