"""prepare: folders and zips, field matching by (well, site, channel), splits, crops, scaling, failures."""

import json
import logging
import shutil
import zipfile

import numpy as np
import pytest
import tifffile
import torch
from helpers.stack_data import write_stacks
from torchvision.transforms.functional import ten_crop
from typer.testing import CliRunner

from blurlatent.bbbc006 import parse_bbbc_name
from blurlatent.cli import app
from blurlatent.errors import UsageError
from blurlatent.prepare.builder import prepare
from blurlatent.prepare.crops import split_counts, ten_crop_boxes
from blurlatent.prepare.store import Store
from blurlatent.synth import generator as synth
from blurlatent.training.loader import TripletDataset

PLANES = list(range(0, 17, 2))
FAST = dict(channels=["w1", "w2"], planes=PLANES, crop=32, workers=1)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """10 tiny fields (64x48), planes 0..16 step 2, both channels: the real layout."""
    root = tmp_path_factory.mktemp("src") / "bbbc"
    synth.synthesize(root, fields=10, channels=["w1", "w2"], planes=PLANES, size=(64, 48), seed=7, workers=1)
    return root


@pytest.fixture
def zipped(source, tmp_path):
    """The same files as the 34-zip download: one zip per plane, members under the plane folder."""
    root = tmp_path / "zips"
    root.mkdir()
    for folder in sorted(source.glob("BBBC006_v1_images_z_*")):
        with zipfile.ZipFile(root / f"{folder.name}.zip", "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(folder.iterdir()):
                archive.write(file, f"{folder.name}/{file.name}")
    return root


def _copy(source, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(source, dst)
    return dst


def _field_images(source, field, channel):
    """uint16 [planes, H, W] of one field, found independently of prepare (by globbing the name)."""
    files = (next((source / f"BBBC006_v1_images_z_{p:02d}").glob(f"*_{field}_{channel}*.tif")) for p in PLANES)
    return np.stack([tifffile.imread(f) for f in files])


def _minmax8(image):
    image = image.astype(np.float64)
    return np.rint((image - image.min()) / (image.max() - image.min()) * 255).astype(np.uint8)


def test_folders_split_shapes_and_order(source, tmp_path):
    result = prepare(source, tmp_path / "store", **FAST)
    assert result.counts == {"test": 2, "val": 1, "train": 7} and not result.up_to_date
    store = Store(tmp_path / "store")
    for channel in ("w1", "w2"):
        assert store.array(channel, "train").shape == (70, 9, 32, 32)
        assert store.array(channel, "val").shape == (10, 9, 32, 32)
        assert store.array(channel, "test").shape == (2, 9, 32, 32)
        assert store.full_test(channel).shape == (2, 9, 48, 64) and store.full_test(channel).dtype == np.uint8
    # sorted by name, taken test → val → train; one split per field for every channel
    assert [r["field"] for r in store.fields("test", "w1")] == ["a01_s1", "a01_s2"]
    assert [r["field"] for r in store.fields("val", "w2")] == ["a02_s1"]
    train = ["a02_s2", "a03_s1", "a03_s2", "a04_s1", "a04_s2", "a05_s1", "a05_s2"]
    assert [r["field"] for r in store.fields("train", "w1")] == train
    assert store.manifest["planes"] == PLANES and store.manifest["normalization"]["method"] == "minmax"
    assert store.scale == {"pixel_size_um": 0.645, "z_step_um": 2.0, "optics": {"na": 0.45}}  # synth's record


def test_crops_are_torchvision_tencrop_of_the_same_boxes_on_every_plane(source, tmp_path):
    store = Store(prepare(source, tmp_path / "store", **FAST).path)
    record = store.fields("train", "w2")[3]
    images = _field_images(source, record["field"], "w2")
    eight = np.stack([_minmax8(im) for im in images])  # the paper's per-image min-max
    expected = ten_crop(torch.from_numpy(eight), 32)  # planes stacked as channels: one box for all planes
    got = store.array("w2", "train")[record["crops"][0] : record["crops"][1]]
    for k in range(10):
        np.testing.assert_array_equal(got[k], expected[k].numpy())
    # and the test field: full 8-bit image and its centre crop
    test = store.fields("test", "w1")[1]
    full = store.full_test("w1")[test["index"]]
    np.testing.assert_array_equal(full, np.stack([_minmax8(im) for im in _field_images(source, test["field"], "w1")]))
    np.testing.assert_array_equal(store.array("w1", "test")[test["index"]], full[:, 8:40, 16:48])


@pytest.mark.parametrize("height, width, crop", [(48, 64, 32), (47, 65, 20), (520, 696, 128)])
def test_ten_crop_boxes_match_torchvision(height, width, crop):
    image = torch.arange(height * width).reshape(1, height, width)
    expected = ten_crop(image, crop)
    for box, want in zip(ten_crop_boxes(height, width, crop), expected, strict=True):
        top, left, flip = box
        patch = image[0, top : top + crop, left : left + crop]
        torch.testing.assert_close(patch.flip(-1) if flip else patch, want[0])


def test_normalizations_record_their_scales(source, tmp_path):
    stack = Store(prepare(source, tmp_path / "stack", normalize="stack", **FAST).path)
    record = stack.fields("train", "w1")[0]
    images = _field_images(source, record["field"], "w1")
    lo, hi = np.percentile(images[-1], (0.1, 99.9))  # plane 16, the in-focus one
    assert all(p["lo"] == pytest.approx(lo) and p["hi"] == pytest.approx(hi) for p in record["planes"])
    crops = stack.array("w1", "train")[record["crops"][0] : record["crops"][1]]
    assert crops[:, 0].mean() < crops[:, -1].mean()  # z0 spreads the light: dimmer than z16 on one scale

    pct = Store(prepare(source, tmp_path / "pct", normalize="percentile", **FAST).path)
    record = pct.fields("val", "w2")[0]
    images = _field_images(source, record["field"], "w2")
    for plane, image in zip(record["planes"], images, strict=True):
        assert (plane["lo"], plane["hi"]) == pytest.approx(tuple(np.percentile(image, (0.1, 99.9))))

    minmax = Store(prepare(source, tmp_path / "mm", **FAST).path)
    full = np.asarray(minmax.full_test("w2"))
    assert (full.min(axis=(2, 3)) == 0).all() and (full.max(axis=(2, 3)) == 255).all()


def test_stack_store_records_normalize_stack_and_one_scale_per_field(source, tmp_path):
    """What training copies into a checkpoint (so blur/deblur/evaluate scale like the training data)."""
    store = Store(prepare(source, tmp_path / "stack", normalize="stack", **FAST).path)
    assert store.manifest["normalize"] == "stack" and store.normalize == "stack"
    assert store.manifest["normalization"] == {"method": "stack", "percentiles": [0.1, 99.9], "reference_plane": 16}
    for record in store.fields():
        scales = {(p["lo"], p["hi"]) for p in record["planes"]}
        assert len(scales) == 1, record["name"]  # one scale for every plane of the field ...
        in_focus = _field_images(source, record["field"], record["channel"])[PLANES.index(16)]
        assert scales.pop() == pytest.approx(tuple(np.percentile(in_focus, (0.1, 99.9))))  # ... from z16
    # without z16 the plane nearest focus is the reference
    other = Store(prepare(source, tmp_path / "no16", normalize="stack", **{**FAST, "planes": [0, 4, 10]}).path)
    assert other.manifest["normalization"]["reference_plane"] == 10
    record = other.fields("val", "w2")[0]
    z10 = tifffile.imread(next((source / "BBBC006_v1_images_z_10").glob(f"*_{record['field']}_w2*.tif")))
    first = record["planes"][0]
    assert (first["lo"], first["hi"]) == pytest.approx(tuple(np.percentile(z10, (0.1, 99.9))))
    assert Store(prepare(source, tmp_path / "mm", **FAST).path).normalize == "minmax"


def test_zips_give_the_same_store_as_folders(source, zipped, tmp_path):
    a = Store(prepare(source, tmp_path / "a", **FAST).path)
    b = Store(prepare(zipped, tmp_path / "b", workers=2, **{k: v for k, v in FAST.items() if k != "workers"}).path)
    assert a.manifest["checksums"] == b.manifest["checksums"]
    record = b.fields("test", "w1")[0]
    member = record["planes"][0]
    assert member["file"].endswith("BBBC006_v1_images_z_00.zip")
    assert member["member"].startswith("BBBC006_v1_images_z_00/")
    # the pointer to the 16-bit source works for zip members and for files alike
    for store in (a, b):
        np.testing.assert_array_equal(store.source_image(store.fields("test", "w1")[0], 8),
                                      _field_images(source, record["field"], "w1")[4])


def test_fields_are_matched_by_well_site_channel_not_by_name(source, tmp_path):
    src = _copy(source, tmp_path)
    # every plane already has its own UUID; scramble them further: prepare must not care
    for file in src.rglob("*_a03_s1_w1*.tif"):
        file.rename(file.with_name(file.name[:-40] + "0" * 8 + file.name[-32:]))
    names = {p.name for p in src.rglob("*_a03_s1_w1*.tif")}
    assert len(names) == len(PLANES) and all(parse_bbbc_name(n) is not None for n in names)
    assert prepare(src, tmp_path / "store", **FAST).counts == {"test": 2, "val": 1, "train": 7}


def test_missing_planes_warn_skip_or_fail_with_strict(source, tmp_path, caplog):
    src = _copy(source, tmp_path)
    next((src / "BBBC006_v1_images_z_04").glob("*_a02_s1_w2*.tif")).unlink()
    with caplog.at_level(logging.WARNING):
        result = prepare(src, tmp_path / "store", **FAST)
    assert "a02_s1" in caplog.text and "w2 planes 4" in caplog.text
    assert result.skipped == ["field a02_s1: missing w2 planes 4"]
    assert "a02_s1" not in [r["field"] for r in Store(result.path).fields()]
    with pytest.raises(UsageError, match="a02_s1: missing w2 planes 4"):
        prepare(src, tmp_path / "strict", strict=True, **FAST)
    assert not (tmp_path / "strict").exists()
    shutil.rmtree(src / "BBBC006_v1_images_z_06")
    with pytest.raises(UsageError, match="BBBC006_v1_images_z_06"):
        prepare(src, tmp_path / "noplane", **FAST)


def _fails_cleanly(src, out, match):
    result = CliRunner().invoke(app, ["prepare", str(src), str(out), "--crop", "32", "--workers", "2"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], result.output
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]  # no temp folder left


def test_corrupt_tiff_is_one_line_exit_2_nothing_written(source, tmp_path):
    src = _copy(source, tmp_path)
    bad = next((src / "BBBC006_v1_images_z_08").glob("*_a04_s2_w1*.tif"))
    bad.write_bytes(bad.read_bytes()[:300])  # truncated mid-strip
    _fails_cleanly(src, tmp_path / "store", bad.name)


def test_non_tiff_zip_member_is_one_line_exit_2(zipped, tmp_path):
    with zipfile.ZipFile(zipped / "BBBC006_v1_images_z_02.zip") as archive:
        names = archive.namelist()
        contents = {n: archive.read(n) for n in names}
    victim = [n for n in names if "_a05_s1_w2" in n][0]
    contents[victim] = b"<html>download quota exceeded</html>"
    with zipfile.ZipFile(zipped / "BBBC006_v1_images_z_02.zip", "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    _fails_cleanly(zipped, tmp_path / "store", victim)


def test_rerun_is_up_to_date_force_is_identical_other_options_need_force(source, tmp_path):
    out = tmp_path / "store"
    first = prepare(source, out, **FAST)
    manifest = (out / "manifest.json").read_text()
    again = prepare(source, out, **FAST)
    assert again.up_to_date and (out / "manifest.json").read_text() == manifest
    redo = prepare(source, out, force=True, **{**FAST, "planes": PLANES[::-1]})  # same input, rebuilt
    assert redo.path == first.path
    assert json.loads((out / "manifest.json").read_text())["checksums"] == json.loads(manifest)["checksums"]
    with pytest.raises(UsageError, match="force=True"):
        prepare(source, out, **{**FAST, "crop": 16})
    assert (out / "manifest.json").read_text() == manifest
    prepare(source, out, force=True, **{**FAST, "crop": 16})
    assert Store(out).array("w1", "train").shape[-1] == 16
    (tmp_path / "notastore").mkdir()
    (tmp_path / "notastore" / "data.txt").write_text("keep")
    with pytest.raises(UsageError, match="not a prepared store"):
        prepare(source, tmp_path / "notastore", force=True, **FAST)


def test_force_replaces_only_what_prepare_provably_wrote(source, tmp_path):
    store = tmp_path / "store"
    prepare(source, store, **FAST)
    (store / "notes.txt").write_text("mine")  # a user's file inside a store: the folder is no longer only ours
    with pytest.raises(UsageError, match="'notes.txt'"):
        prepare(source, store, force=True, **{**FAST, "crop": 16})
    assert (store / "notes.txt").read_text() == "mine"
    (store / "notes.txt").unlink()

    webapp = tmp_path / "webapp"  # someone else's manifest.json
    webapp.mkdir()
    (webapp / "manifest.json").write_text('{"name": "my app"}')
    with pytest.raises(UsageError, match="not a prepared store"):
        prepare(source, webapp, force=True, **FAST)
    assert (webapp / "manifest.json").read_text() == '{"name": "my app"}'

    (store / "manifest.json").write_text("{ damaged")  # a damaged store is still ours: force rebuilds it
    with pytest.raises(UsageError, match="corrupt manifest"):
        Store(store)
    prepare(source, store, force=True, **FAST)
    assert Store(store).array("w1", "train").shape == (70, 9, 32, 32)


def test_other_side_of_focus_and_triplets(source, tmp_path):
    top = tmp_path / "top"
    synth.synthesize(top, fields=3, channels=["w1"], planes=range(16, 33, 2), size=(64, 48), seed=7, workers=1)
    result = prepare(top, tmp_path / "store", channels=["w1"], planes=range(16, 33, 2), crop=32, workers=1)
    store = Store(result.path)
    assert store.planes == list(range(16, 33, 2)) and result.counts == {"test": 1, "val": 1, "train": 1}
    triplets = TripletDataset(store.array("w1", "train"), store.triplet_index([(16, 24, 32), (16, 18, 20)]))
    assert len(triplets) == 20
    left, target, right = triplets[3]
    crops = store.array("w1", "train")
    np.testing.assert_allclose(right.numpy()[0], crops[1, store.plane_index(20)] / 255.0)
    assert left.shape == (1, 32, 32) and target.dtype == torch.float32


def test_split_counts():
    # the paper's split of BBBC006's 768 fields per channel: 538 / 76 / 154
    assert split_counts(768, (70, 10, 20)) == {"test": 154, "val": 76, "train": 538}
    assert split_counts(30, (70, 10, 20)) == {"test": 6, "val": 3, "train": 21}  # exact tenths stay exact
    assert split_counts(3, (70, 10, 20)) == {"test": 1, "val": 1, "train": 1}
    assert split_counts(5, (100, 0, 0)) == {"test": 0, "val": 0, "train": 5}
    with pytest.raises(UsageError, match="cannot fill 3 splits"):
        split_counts(2, (70, 10, 20))


def test_cli_prepare_in_process(source, tmp_path):
    runner = CliRunner()
    out = tmp_path / "store"
    args = ["prepare", str(source), str(out), "--channels", "w1", "--planes", "0:16:4", "--crop", "24",
            "--split", "60:20:20", "--test-crops", "ten", "--workers", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    store = Store(out)
    assert store.planes == [0, 4, 8, 12, 16] and store.array("w1", "test").shape == (20, 5, 24, 24)
    assert "up to date" in runner.invoke(app, args).output
    bads = (["--split", "70:30"], ["--normalize", "zscore"], ["--crop", "100"], ["--planes", "0:40"],
            ["--channels", "w7"], ["--test-crops", "all"], ["--crop", "0"])
    for bad in bads:
        result = runner.invoke(app, ["prepare", str(source), str(tmp_path / "bad"), *bad])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, (bad, result.output)
        assert not (tmp_path / "bad").exists()


def test_empty_splits_are_valid_empty_arrays(source, tmp_path):
    result = prepare(source, tmp_path / "store", channels=["w1"], planes=[0, 16], crop=16, split=(100, 0, 0), workers=1)
    store = Store(result.path)
    assert store.array("w1", "train").shape == (100, 2, 16, 16)
    assert store.array("w1", "val").shape == (0, 2, 16, 16) and store.full_test("w1").shape == (0, 2, 48, 64)


def test_cli_own_stacks_focus_auto_then_train_then_evaluate(tmp_path):
    """Arbitrarily named OME-TIFF and ImageJ stacks → prepare --focus auto → train one epoch → evaluate, all
    through the command line; train and evaluate read the store as they read a BBBC006 one."""
    truth = write_stacks(tmp_path / "my stacks", [4, 5, 4, 6, 5, 4])
    runner = CliRunner()
    store = tmp_path / "store"
    args = ["prepare", str(tmp_path / "my stacks"), str(store), "--focus", "auto", "--planes", "-4:0:2", "--crop",
            "32", "--split", "4:1:1", "--workers", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "planes 12:16:2; focus (auto) cells 0 day7 ij z4, cells 1 day6 z5" in result.output
    assert Store(store).manifest["focus_planes"] == truth and Store(store).planes == [12, 14, 16]
    config = tmp_path / "run.yaml"
    config.write_text("data: {triplets: [[12, 14, 16]]}\nstrip_every: 0\n")
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(store), "--out", str(run), "--config", str(config), "--epochs", "1",
                                 "--arch", "paper", "--widths", "4,8", "--batch-size", "8", "--device", "cpu",
                                 "--amp", "off"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", str(store), "-c", str(run / "best.pt"), "--out", str(tmp_path / "rep"),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report and (tmp_path / "rep" / "report.md").is_file()
    bad = runner.invoke(app, ["prepare", str(tmp_path / "my stacks"), str(tmp_path / "bad"), "--planes", "-4:0:2"])
    assert bad.exit_code == 2 and bad.output.startswith("error: --focus: not given"), bad.output
