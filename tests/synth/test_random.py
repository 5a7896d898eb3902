"""synth --optics random: fixed output unchanged, per-field draws deterministic and inside their documented
ranges, the benchmark's held-out optics never drawn, light conserved and blur growing away from focus."""

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.fft as sfft
from typer.testing import CliRunner

from blurlatent.cli import app
from blurlatent.errors import UsageError
from blurlatent.synth import generator as synth
from blurlatent.synth import random_optics as ro
from blurlatent.synth import random_scene as rs

ROOT = Path(__file__).resolve().parents[2]
SMALL = (96, 80)


def _digest(stacks, channels):
    h = hashlib.sha256()
    for c in channels:
        h.update(stacks[c].tobytes())
    return h.hexdigest()[:16]


# checksums of render_field's uint16 output computed with the generator before --optics existed (x86-64, numpy's
# pocketfft): the fixed mode must stay bit for bit what it was
@pytest.mark.parametrize("args, digest", [((7, 0, SMALL, [0, 8, 16, 33], ["w1", "w2"]), "bab65617e7ae6e37"),
                                          ((3, 5, (64, 48), [16, 20], ["w1"]), "b354ffdfb3ef90a0")])
def test_fixed_mode_is_bit_for_bit_what_it_was(args, digest):
    assert _digest(synth.render_field(*args)[0], args[4]) == digest
    assert _digest(synth.render_field(*args, mode="fixed")[0], args[4]) == digest


def test_random_fields_are_deterministic_per_seed_and_differ_across_fields():
    a, ta = synth.render_field(1, 0, SMALL, [4, 16], ["w1"], mode="random")
    b, tb = synth.render_field(1, 0, SMALL, [16], ["w1"], mode="random")
    np.testing.assert_array_equal(a["w1"][1], b["w1"][0])  # a plane does not depend on the others asked for
    assert ta["drawn"] == tb["drawn"]
    drawn = [synth.render_field(1, i, SMALL, [16], ["w1"], noise=False, mode="random")[1]["drawn"] for i in (1, 2)]
    other_seed = synth.render_field(2, 0, SMALL, [16], ["w1"], noise=False, mode="random")[1]["drawn"]
    assert len({json.dumps(d, sort_keys=True) for d in (ta["drawn"], *drawn, other_seed)}) == 4
    fixed, _ = synth.render_field(1, 0, SMALL, [4, 16], ["w1"])
    assert not np.array_equal(fixed["w1"], a["w1"])


def _inside(value, bounds):
    return bounds[0] <= value <= bounds[1]


def test_every_drawn_value_lies_in_its_documented_range():
    r, s = ro.RANGES, rs.SCENE_RANGES
    families, cameras = set(), set()
    for k in range(300):
        rng = np.random.default_rng([k, 2000])
        fo = ro.draw(rng)
        style, extras = rs.draw_style(rng)
        families.add(fo.psf)
        cameras.add(fo.camera)
        for name in ("na", "z_step_um", "beta_scale", "asymmetry", "offset", "exposure", "background", "gradient",
                     "vignetting"):
            assert _inside(getattr(fo, name), getattr(r, name)), (k, name)
        assert all(_inside(fo.wavelength_um[c], r.wavelength_um[c]) for c in ("w1", "w2"))
        assert _inside(abs(fo.spherical_waves), r.spherical_waves)
        assert _inside(fo.read_noise, r.read_noise[fo.camera]) and _inside(fo.gain, r.gain[fo.camera])
        assert _inside(style.density, s.density) and _inside(style.scattered, s.scattered)
        assert _inside(style.radius_px[0], s.radius_px) and _inside(style.elongation, s.elongation)
        assert _inside(style.mitotic, s.mitotic) and _inside(style.texture, s.texture)
        assert _inside(style.nucleoli[0], s.nucleoli) and _inside(style.nucleoli[1], s.nucleoli_contrast)
        assert all(_inside(extras[k_], getattr(s, k_)) for k_ in ("dim", "dim_gain", "debris"))
        # the benchmark's held-out optics: never an NA in 0.55–0.65
        assert not _inside(fo.na, ro.HELD_OUT_NA)
    assert families == set(ro.PSF_FAMILIES) and cameras == {"scmos", "ccd"}


def test_the_benchmarks_held_out_optics_are_never_drawn():
    """benchmarks/real/degrade.py holds out a Born–Wolf family at NA 0.55–0.65 for its test split: no family
    here may be Born–Wolf, and the NA range must stay clear of it."""
    source = (ROOT / "benchmarks" / "real" / "degrade.py").read_text()
    line = re.search(r'Family\("born-wolf", "scalar", \("test",\), [\d.]+, \(([\d.]+), ([\d.]+)\)', source)
    assert line, "the benchmark's held-out family moved: update HELD_OUT_NA"
    assert (float(line[1]), float(line[2])) == ro.HELD_OUT_NA
    assert not any("born" in f or "wolf" in f for f in ro.PSF_FAMILIES) and "born-wolf" in ro.HELD_OUT_FAMILIES
    assert ro.RANGES.na[1] < ro.HELD_OUT_NA[0]
    with pytest.raises(ValueError, match="held-out"):
        ro.OpticsRanges(na=(0.3, 0.6)).check()
    # the pupil family always carries aberrations (unlike Born–Wolf's pure defocus)
    assert ro.RANGES.spherical_waves[0] > 0 and ro.RANGES.beta_scale[0] > 0


def _cells_image(shape=(320, 320)):
    """float32 [320, 320]: a dozen textured discs within 40 px of the centre (the blur's tails stay inside)."""
    rng = np.random.default_rng(0)
    image = np.zeros(shape, np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for _ in range(12):
        cy, cx, r = rng.uniform(130, 190), rng.uniform(130, 190), rng.uniform(6, 12)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += rng.uniform(500, 1500)
    return image * (1 + 0.3 * np.clip(rng.standard_normal(shape), -1, 1)).astype(np.float32)


def _through_focus(fo, image):
    """Each plane z00..z33 of ``image`` through ``fo``'s PSF, cropped 16 px from the (periodic) edges."""
    spectrum, otf = sfft.rfft2(image), ro.FieldOTF(image.shape, fo)
    return np.stack([sfft.irfft2(spectrum * otf(fo.z_step_um * (z - 16), "w1"), s=image.shape)[16:-16, 16:-16]
                     for z in range(34)])


@pytest.mark.parametrize("family", ro.PSF_FAMILIES)
def test_light_is_conserved_and_blur_grows_away_from_focus(family):
    image = _cells_image()
    total = image.sum()
    for k in range(3):
        fo = dataclasses.replace(ro.draw(np.random.default_rng([k, 2000])), psf=family)
        otf = ro.FieldOTF(image.shape, fo)
        assert all(abs(complex(otf(d, "w1")[0, 0]) - 1) < 1e-5 for d in (-40.0, -3.0, 0.0, 7.5, 40.0))
        planes = _through_focus(fo, image)
        sums = planes.sum(axis=(1, 2))
        assert np.all(np.abs(sums / total - 1) < 0.05), (fo, sums / total)  # z00 to z33: within 5 %
        nv = planes.var(axis=(1, 2)) / planes.mean(axis=(1, 2)) ** 2  # normalized variance: a focus measure
        # spherical aberration may move the pupil family's sharpest plane up to ~2.5 µm from nominal focus
        slack = 0 if family != "pupil" else int(2.5 // fo.z_step_um)
        assert abs(int(np.argmax(nv)) - 16) <= slack, (fo, nv)
        assert np.all(np.diff(nv[: 17 - slack]) > 0) and np.all(np.diff(nv[16 + slack :]) < 0), (fo, nv)


@pytest.mark.parametrize("camera", ro.CAMERAS)
def test_random_camera_is_poisson_gaussian_with_its_gain_offset_and_read_noise(camera):
    fo = dataclasses.replace(ro.draw(np.random.default_rng(0)), camera=camera, gain=0.5, read_noise=3.0, offset=150.0)
    read = ro.read_noise_map(fo, np.random.default_rng(1), (256, 256))
    frame = ro.random_camera(np.full((256, 256), 400.0), fo, read, np.random.default_rng(2)).astype(np.float64)
    assert frame.mean() == pytest.approx(550.0, abs=0.5)
    assert frame.var() == pytest.approx(0.5 * 400 + (read.astype(np.float64) ** 2).mean() + 1 / 12, rel=0.05)
    assert (read.std() > 0.3) == (camera == "scmos")  # sCMOS: a read noise per pixel; CCD: one amplifier


def test_random_fields_record_what_they_drew_and_noise_free_planes_hold_their_light():
    stacks, truth = synth.render_field(4, 3, SMALL, [0, 16], ["w1", "w2"], noise=False, mode="random")
    drawn = truth["drawn"]
    assert set(drawn) == {"optics", "scene"} and drawn["optics"]["psf"] in ro.PSF_FAMILIES
    assert {"density", "mitotic", "nucleoli", "dim_cells", "debris", "texture"} <= set(drawn["scene"])
    json.dumps(truth)  # plain data
    assert all(np.isfinite(s).all() and s.min() >= 0 for s in stacks.values())


def test_cli_optics_random_and_its_errors(tmp_path):
    runner = CliRunner()
    out = tmp_path / "rand"
    result = runner.invoke(app, ["synth", str(out), "--optics", "random", "--fields", "2", "--channels", "w1",
                                 "--planes", "0:16:16", "--size", "64x48", "--workers", "1"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / synth.RECORD).read_text())
    assert record["optics"]["mode"] == "random" and record["random_ranges"]["optics"]["na"] == list(ro.RANGES.na)
    assert [f["drawn"]["optics"]["na"] for f in record["fields"]] != [None, None]
    assert '"mode"' not in json.dumps(synth.synth_record(0, (64, 48), [16], ["w1"], []))  # fixed: as it was
    for bad in (["--optics", "rand"], ["--optics", "random", "--na", "0.4"]):
        result = runner.invoke(app, ["synth", str(tmp_path / "bad"), "--size", "64x48", *bad])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and "--optics" in lines[0], (bad, result.output)
        assert not (tmp_path / "bad").exists()
    with pytest.raises(UsageError, match="optics_mode"):
        synth.check_synth_options(1, ["w1"], [16], (64, 48), 0, mode="other")  # type: ignore[arg-type]
