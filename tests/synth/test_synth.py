"""synth: the real BBBC006v1 layout, determinism, blur that grows away from focus, and the output policy."""

import itertools
import json
import re

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from blurlatent.bbbc006 import parse_bbbc_name
from blurlatent.cli import app
from blurlatent.errors import UsageError
from blurlatent.files.output_folders import MARKER
from blurlatent.synth import generator as synth
from blurlatent.synth import optics

NAME = re.compile(
    r"^mcf-z-stacks-03212011_[a-p]\d{2}_s[12]_w[12][0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.tif$"
)
TINY = dict(size=(64, 48), workers=1)


def _files(root):
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*.tif"))}


def test_layout_names_and_tiffs(tmp_path):
    out = tmp_path / "bbbc"
    synth.synthesize(out, fields=3, channels=["w1", "w2"], planes=[0, 16, 33], seed=1, **TINY)
    planes = ["BBBC006_v1_images_z_00", "BBBC006_v1_images_z_16", "BBBC006_v1_images_z_33"]
    assert sorted(p.name for p in out.iterdir()) == [MARKER, *planes, "synth.json"]  # MARKER: outputs
    uuids = {}
    for plane in ("00", "16", "33"):
        names = sorted(p.name for p in (out / f"BBBC006_v1_images_z_{plane}").iterdir())
        assert len(names) == 6
        for name in names:
            assert NAME.match(name), name  # no separator between the channel digit and the UUID
            key = parse_bbbc_name(name)
            uuids.setdefault(key, set()).add(name[-40:])
    fields = (("a01", 1), ("a01", 2), ("a02", 1))
    assert {k.name for k in uuids} == {f"{w}_s{s}_{c}" for w, s in fields for c in ("w1", "w2")}
    assert all(len(u) == 3 for u in uuids.values())  # a different UUID on every plane
    with tifffile.TiffFile(next(iter(_files(out).values()))) as tif:
        page = tif.pages[0]
        assert page.compression.name == "LZW" and page.dtype == np.uint16 and page.shape == (48, 64)
        image = page.asarray()
    assert 80 <= image.min() and image.max() <= optics.FULL_SCALE


def test_same_seed_same_bytes_and_plane_subsets_agree(tmp_path):
    a, b, c, d = (tmp_path / n for n in "abcd")
    synth.synthesize(a, fields=2, channels=["w1"], planes=[8, 16], seed=3, **TINY)
    synth.synthesize(b, fields=2, channels=["w1"], planes=[8, 16], seed=3, **TINY)
    synth.synthesize(c, fields=1, channels=["w1", "w2"], planes=[16], seed=3, **TINY)
    synth.synthesize(d, fields=2, channels=["w1"], planes=[8, 16], seed=4, **TINY)
    fa, fb, fc, fd = (_files(x) for x in (a, b, c, d))
    assert list(fa) == list(fb) and all(fa[k].read_bytes() == fb[k].read_bytes() for k in fa)
    # field 0's w1 on plane 16 is the same file whatever other fields, planes and channels were asked for
    w1 = [k for k in fc if "_w1" in k]
    assert len(w1) == 1 and fa[w1[0]].read_bytes() == fc[w1[0]].read_bytes()
    assert set(fa).isdisjoint(fd)  # another seed: other UUIDs ...
    first = (tifffile.imread(sorted(f.values())[0]) for f in (fa, fd))
    assert not np.array_equal(*first)  # ... other images


def test_blur_grows_monotonically_on_both_sides_of_focus():
    sigmas = [optics.equivalent_sigma_px(optics.plane_distance_um(z)) for z in range(34)]
    assert all(a > b for a, b in itertools.pairwise(sigmas[:17]))  # below focus: sharper towards z16
    assert all(a < b for a, b in itertools.pairwise(sigmas[16:]))  # above focus: blurrier away from z16
    # on rendered noise-free images: the peak of a field falls away from z16 on both sides
    stacks, _ = synth.render_field(5, 0, (64, 48), list(range(0, 34, 4)), ["w1"], noise=False)
    peaks = stacks["w1"].max(axis=(1, 2))
    focus = list(range(0, 34, 4)).index(16)
    assert np.all(np.diff(peaks[: focus + 1]) > 0) and np.all(np.diff(peaks[focus:]) < 0)


def test_refuses_to_replace_without_force_and_foreign_folders_even_with_it(tmp_path):
    out = tmp_path / "s"
    synth.synthesize(out, fields=1, channels=["w1"], planes=[16], seed=0, **TINY)
    with pytest.raises(UsageError, match="force=True"):
        synth.synthesize(out, fields=1, channels=["w1"], planes=[16], seed=0, **TINY)
    synth.synthesize(out, fields=1, channels=["w1"], planes=[15], seed=0, force=True, **TINY)
    assert [p.name for p in out.iterdir() if p.is_dir()] == ["BBBC006_v1_images_z_15"]
    (out / "thesis.docx").write_text("precious")
    with pytest.raises(UsageError, match="thesis.docx"):
        synth.synthesize(out, fields=1, channels=["w1"], planes=[16], seed=0, force=True, **TINY)
    assert (out / "thesis.docx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_force_never_replaces_a_folder_without_an_output_marker(tmp_path):
    """Plane folders alone do not prove a synth output: they may be the real BBBC006 download. Without its
    marker not even a folder synth wrote (a blurlatent before markers) is replaced."""
    download = tmp_path / "BBBC006"
    synth.synthesize(download, fields=1, channels=["w1"], planes=[16], seed=0, **TINY)
    (download / MARKER).unlink()  # synth's files, its synth.json included, but no marker
    before = sorted(p.relative_to(download) for p in download.rglob("*"))
    with pytest.raises(UsageError, match="is not a synth output"):
        synth.synthesize(download, fields=1, channels=["w1"], planes=[16], seed=0, force=True, **TINY)
    (download / "synth.json").unlink()  # plane folders only, as downloaded
    with pytest.raises(UsageError, match="is not a synth output"):
        synth.synthesize(download, fields=1, channels=["w1"], planes=[16], seed=0, force=True, **TINY)
    assert sorted(p.relative_to(download) for p in download.rglob("*")) == [p for p in before
                                                                             if p.name != "synth.json"]


def test_bad_options_fail_before_anything_is_written(tmp_path):
    out = tmp_path / "s"
    for bad, match in (({"seed": -1}, "seed -1"), ({"fields": 0}, "fields 0"), ({"planes": [34]}, "planes"),
                       ({"channels": ["w3"]}, "'w3'"), ({"size": (8, 8)}, "size")):
        with pytest.raises(UsageError, match=match):
            synth.synthesize(out, **{"fields": 1, "channels": ["w1"], "planes": [16], **TINY, **bad})
    assert not any(tmp_path.iterdir())


def test_cli_synth_in_process(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["synth", str(out), "--fields", "2", "--channels", "w1", "--planes", "14:18:2", "--size", "64x48",
            "--seed", "2", "--workers", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(list(out.rglob("*.tif"))) == 6
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--force" in result.output and len(result.output.strip().splitlines()) == 1
    for bad in (["--planes", "18:14"], ["--size", "64by48"], ["--channels", "w3"], ["--fields", "0"], ["--seed", "-1"]):
        result = runner.invoke(app, ["synth", str(tmp_path / "bad"), "--size", "64x48", *bad])
        assert result.exit_code == 2, (bad, result.output)
        assert not (tmp_path / "bad").exists()


# --- other optics (synth --na/--wavelength/--z-step/--read-noise/--gain/--background) ----------------


def test_other_optics_image_the_same_cells_differently(tmp_path):
    planes = [0, 8, 16]
    base, _ = synth.render_field(6, 0, (64, 48), planes, ["w1"], noise=False)
    step, _ = synth.render_field(6, 0, (64, 48), planes, ["w1"], noise=False, optics=optics.Optics(z_step_um=1.0))
    wide, _ = synth.render_field(6, 0, (64, 48), planes, ["w1"], noise=False, optics=optics.Optics(na=0.7))
    # the in-focus plane is at distance 0 whatever the z step: the same cells give the same image
    np.testing.assert_array_equal(step["w1"][2], base["w1"][2])
    # a smaller step puts z0/z8 nearer focus (sharper: higher peaks); a higher NA blurs them more
    assert np.all(step["w1"][:2].max(axis=(1, 2)) > base["w1"][:2].max(axis=(1, 2)))
    assert np.all(wide["w1"][:2].max(axis=(1, 2)) < base["w1"][:2].max(axis=(1, 2)))
    # extra background: the same frame shifted by it (× vignetting), with more shot noise
    a, truth_a = synth.render_field(6, 0, (64, 48), [16], ["w1"])
    b, truth_b = synth.render_field(6, 0, (64, 48), [16], ["w1"], optics=optics.Optics(background=200.0))
    shift = b["w1"].astype(np.float64) - a["w1"]
    assert shift.mean() == pytest.approx(200.0 * synth.vignetting(48, 64).mean(), abs=3.0)
    assert truth_b["background_adu"]["w1"] == pytest.approx(truth_a["background_adu"]["w1"] + 200.0, abs=0.01)


def test_default_optics_record_is_unchanged_and_other_optics_are_recorded(tmp_path):
    synth.synthesize(tmp_path / "a", fields=1, channels=["w1"], planes=[16], seed=0, **TINY)
    synth.synthesize(tmp_path / "b", fields=1, channels=["w1"], planes=[16], seed=0, optics=optics.Optics(), **TINY)
    record = (tmp_path / "a" / synth.RECORD).read_text()
    assert record == (tmp_path / "b" / synth.RECORD).read_text() and '"changed"' not in record
    other = optics.Optics(na=0.6, wavelength_um=0.52, z_step_um=1.5, read_noise=3.0, gain=0.7, background=25.0)
    synth.synthesize(tmp_path / "c", fields=1, channels=["w1"], planes=[16], seed=0, optics=other, **TINY)
    rec = json.loads((tmp_path / "c" / synth.RECORD).read_text())
    assert rec["optics"]["na"] == 0.6 and rec["optics"]["z_step_um"] == 1.5
    assert rec["camera"]["gain_adu_per_e"] == 0.7 and rec["camera"]["read_noise_adu"] == 3.0
    assert rec["optics"]["changed"] == {"na": 0.6, "wavelength_um": 0.52, "z_step_um": 1.5, "read_noise": 3.0,
                                        "gain": 0.7, "background": 25.0}


def test_cli_optics_flags(tmp_path):
    runner = CliRunner()
    out = tmp_path / "other"
    result = runner.invoke(app, ["synth", str(out), "--fields", "1", "--channels", "w1", "--planes", "16",
                                 "--size", "64x48", "--workers", "1", "--na", "0.6", "--wavelength", "0.52",
                                 "--z-step", "1.5", "--read-noise", "3", "--gain", "0.7", "--background", "25"])
    assert result.exit_code == 0, result.output
    changed = json.loads((out / synth.RECORD).read_text())["optics"]["changed"]
    assert changed == {"na": 0.6, "wavelength_um": 0.52, "z_step_um": 1.5, "read_noise": 3.0, "gain": 0.7,
                       "background": 25.0}
    for flag, value in (("--na", "1.2"), ("--wavelength", "nan"), ("--z-step", "0"), ("--read-noise", "-1"),
                        ("--gain", "0"), ("--background", "5000")):
        result = runner.invoke(app, ["synth", str(tmp_path / "bad"), "--size", "64x48", flag, value])
        assert result.exit_code == 2, (flag, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {flag} ") and "must lie in" in lines[0], lines
        assert not (tmp_path / "bad").exists()
    helptext = runner.invoke(app, ["synth", "--help"], terminal_width=200).output
    for flag in ("--na", "--wavelength", "--z-step", "--read-noise", "--gain", "--background"):
        assert flag in helptext
    defaults = optics.Optics()  # the help states the defaults as text: it must say the real ones
    for value in (defaults.na, defaults.z_step_um, defaults.read_noise, defaults.gain, *optics.WAVELENGTH_UM.values()):
        assert f"{value:g}" in helptext
