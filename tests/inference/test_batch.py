"""batch: naming outputs, choosing α, pairing folders, batching pairs of one shape, and checking every
output before the model is loaded (the CLI runs these; ``test_infer_cli.py`` covers them end to end)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers.infer_model import tiny_checkpoint

from blurlatent.config import InferenceConfig
from blurlatent.errors import UsageError
from blurlatent.inference import jobs as batch
from blurlatent.inference.alphas import blur_alphas, deblur_alphas
from blurlatent.inference.inputs import read_inputs
from blurlatent.inference.predictor import load_model

UUIDS = ["a571d43d-5554-47fd-bb54-5db68290e5a7", "2703a47b-7574-461a-85e2-afc38bc0adae"]


def write(path: Path, array) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array)
    return path


def test_level_paths():
    assert batch.level_paths("out.tif", [0.25, 0.5]) == [Path("out.tif")]  # one multi-page TIFF
    assert batch.level_paths("lv.png", [0.5]) == [Path("lv.png")]
    assert batch.level_paths("d/lv.png", [0.25, 0.5]) == [Path("d/lv_a0.250.png"), Path("d/lv_a0.500.png")]
    with pytest.raises(UsageError, match=r"\.tif, \.tiff, \.png or \.ome\.zarr"):
        batch.level_paths("out.jpg", [0.5])


def test_level_names_stay_unique():
    """0.1 and 0.1004 are one name at three decimals: issue 11 wrote one file and reported two."""
    assert batch.level_paths("lv.png", [0.1, 0.1004]) == [Path("lv_a0.1000.png"), Path("lv_a0.1004.png")]
    assert len(set(batch.level_names([0.1, np.nextafter(0.1, 1.0)]))) == 2  # neighbouring floats: two names
    with pytest.raises(UsageError, match="alpha 0.3 is given twice"):
        batch.level_paths("lv.png", [0.3, 0.5, 0.3])
    assert batch.level_paths("lv.tif", [0.3, 0.3]) == [Path("lv.tif")]  # pages of one TIFF need no names
    pairs = [("f", Path("s/f.tif"), Path("b/f.tif"))]
    assert batch.folder_outputs("o", pairs, [0.1, 0.1004]) == [[Path("o/f_a0.1000.tif"), Path("o/f_a0.1004.tif")]]


def test_blur_alphas_from_values_or_steps():
    assert blur_alphas([0.25, 1.0], None) == [0.25, 1.0]
    assert blur_alphas(None, 3) == pytest.approx([0.25, 0.5, 0.75])
    assert blur_alphas([1.5], None, extrapolate=True) == [1.5]
    for alphas, steps in (([0.5], 3), (None, None), ([], None)):
        with pytest.raises(UsageError, match="alpha/steps"):
            blur_alphas(alphas, steps)
    with pytest.raises(UsageError, match="extrapolate"):
        blur_alphas([1.5], None)


def test_deblur_alphas_from_value_planes_or_folders(tmp_path):
    assert deblur_alphas(0.25, None, None, False) == ([0.25], None)
    assert deblur_alphas(None, (32, 24), 16, False) == ([0.5], (32, 24))
    z0 = tmp_path / "BBBC006_v1_images_z_00" / "a.tif"
    z8 = tmp_path / "BBBC006_v1_images_z_08" / "a.tif"
    assert deblur_alphas(None, None, None, False, (z0, z8)) == ([0.5], (0, 8))  # BBBC006 names: toward 16
    assert deblur_alphas(None, None, 12, False, (z0, z8)) == ([pytest.approx(1 / 3)], (0, 8))
    swept, _ = deblur_alphas(0.3, None, None, True)
    assert swept == sorted({0.3} | {k / 8 for k in range(1, 8)})
    with pytest.raises(UsageError, match="not both"):
        deblur_alphas(0.5, (0, 8), 16, False)
    with pytest.raises(UsageError, match="alpha or planes"):
        deblur_alphas(None, None, None, False, (tmp_path / "x.tif", tmp_path / "y.tif"))


def test_pair_folders_by_field_then_by_name(tmp_path):
    image = np.zeros((16, 16), np.uint16)
    write(tmp_path / "s" / f"00_mcf-z-stacks-03212011_a01_s1_w1{UUIDS[0]}.tif", image)
    write(tmp_path / "b" / f"mcf-z-stacks-03212011_a01_s1_w1{UUIDS[1]}.tif", image)
    write(tmp_path / "s" / "cellX.tif", image)
    write(tmp_path / "b" / "cellX.tif", image)
    lonely = write(tmp_path / "b" / "cellY.tif", image)
    pairs, unpaired = batch.pair_folders(tmp_path / "s", tmp_path / "b")
    assert [name for name, _, _ in pairs] == ["a01_s1_w1", "cellX"]
    assert unpaired == [lonely]
    write(tmp_path / "s" / f"mcf-z-stacks-03212011_a01_s1_w1{UUIDS[1]}.tif", image)
    with pytest.raises(UsageError, match="also appears"):
        batch.pair_folders(tmp_path / "s", tmp_path / "b")


def test_same_shape_batches_keep_order_and_split_on_shape(tmp_path):
    shapes = [(16, 16), (16, 16), (16, 24), (16, 16), (16, 16), (16, 16)]
    jobs = []
    for i, shape in enumerate(shapes):
        a = write(tmp_path / f"a{i}.tif", np.full(shape, i, np.uint16))
        b = write(tmp_path / f"b{i}.tif", np.full(shape, i, np.uint16))
        jobs.append(((f"f{i}", a, b), [tmp_path / f"o{i}.tif"]))
    batches = list(batch.same_shape_batches(jobs, 2))
    assert [[job[0][0] for _, job in group] for group in batches] == [["f0", "f1"], ["f2"], ["f3", "f4"], ["f5"]]
    assert all(len({images[0].shape for images, _ in group}) == 1 for group in batches)
    assert [int(images[0][0, 0]) for group in batches for images, _ in group] == list(range(6))


def test_run_files_checks_outputs_before_loading_the_model(tmp_path):
    a = write(tmp_path / "a.tif", np.ones((16, 16), np.uint16))
    b = write(tmp_path / "b.tif", np.ones((16, 16), np.uint16))
    (tmp_path / "out.tif").write_bytes(b"keep me")
    missing = tmp_path / "missing.pt"  # loading it would fail: the output check must come first
    with pytest.raises(UsageError, match="out.tif: already exists"):
        batch.run_files(missing, InferenceConfig(device="cpu"), a, b, [0.5], tmp_path / "out.tif", "deblur")
    assert (tmp_path / "out.tif").read_bytes() == b"keep me"


def test_run_files_refuses_inputs_and_png_pixel_types_before_loading_the_model(tmp_path):
    a = write(tmp_path / "a.tif", np.ones((16, 16), np.float32))
    b = write(tmp_path / "b.tif", np.ones((16, 16), np.float32))
    missing = tmp_path / "missing.pt"  # loading it would fail: every output check must come first
    with pytest.raises(UsageError, match="b.tif: is the input"):
        batch.run_files(missing, InferenceConfig(device="cpu"), a, b, [0.5], b, "deblur", force=True)
    with pytest.raises(UsageError, match="PNG holds 8- or 16-bit unsigned pixels, not float32; .* out_dtype uint16"):
        batch.run_files(missing, InferenceConfig(device="cpu"), a, b, [0.5], tmp_path / "o.png", "blur")
    with pytest.raises(UsageError, match="missing.pt"):  # uint16 output fits a PNG: the checks pass
        batch.run_files(missing, InferenceConfig(device="cpu", out_dtype="uint16"), a, b, [0.5], tmp_path / "o.png",
                        "blur")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]


def test_blur_folder_is_all_or_nothing(tmp_path_factory, tmp_path):
    """A pair that fails after others were done leaves no output of any pair: the rerun needs no force."""
    predictor = load_model(tiny_checkpoint(tmp_path_factory), "cpu").with_options(batch_size=1)
    image = np.random.default_rng(0).integers(100, 1000, (24, 32)).astype(np.uint16)
    pairs = [(name, write(tmp_path / "s" / f"{name}.tif", image), write(tmp_path / "b" / f"{name}.tif", image))
             for name in ("a", "m", "z")]
    write(pairs[2][2], image[:20])  # the last pair's images differ in size
    with pytest.raises(UsageError, match="z.tif: image is 32x20"):
        batch.predict_folder(predictor, pairs, [0.5], tmp_path / "out" / "deep", "blur")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "s"]  # no output, temp or folder made for them
    write(pairs[2][2], image)
    written = batch.predict_folder(predictor, pairs, [0.5], tmp_path / "out" / "deep", "blur")
    assert [p.name for p in written] == ["a_a0.500.tif", "m_a0.500.tif", "z_a0.500.tif"]
    assert all(p.is_file() for p in written)


def test_blur_folder_reports_progress_and_matches_single_pairs(tmp_path_factory, tmp_path):
    predictor = load_model(tiny_checkpoint(tmp_path_factory), "cpu").with_options(batch_size=2)
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(3):
        s, bl = (rng.integers(100, 1000, (24, 32)).astype(np.uint16) for _ in range(2))
        pairs.append((f"f{i}", write(tmp_path / "s" / f"f{i}.tif", s), write(tmp_path / "b" / f"f{i}.tif", bl)))
    seen = []
    written = batch.predict_folder(predictor, pairs, [0.25, 0.75], tmp_path / "out", "blur", progress=seen.append)
    assert sum(seen) == 3 and seen == [2, 1]
    assert sorted(p.name for p in written) == sorted(f"f{i}_a{a}.tif" for i in range(3) for a in ("0.250", "0.750"))
    s, bl = batch.read_pair(pairs[2][1], pairs[2][2])
    np.testing.assert_allclose(tifffile.imread(tmp_path / "out" / "f2_a0.750.tif").astype(float),
                               predictor.blur(s, bl, 0.75).astype(float), atol=1)


# --- z-stacks and deblur's folder modes (issue 12) -------------------------------------------------------------


def test_stack_folder_lists_stacks_by_name(tmp_path):
    stack = np.zeros((16, 16), np.uint16)  # listing reads no file
    for name in ("b.ome.tif", "a.tif", "notes.txt", ".hidden.tif"):
        write(tmp_path / "s" / name, stack)
    (tmp_path / "s" / "c.ome.zarr").mkdir()
    jobs = batch.stack_folder(tmp_path / "s")
    assert [(name, p.name, other) for name, p, other in jobs] == [("a", "a.tif", None), ("b", "b.ome.tif", None),
                                                                  ("c", "c.ome.zarr", None)]
    assert [paths[0].name for paths in batch.folder_outputs("o", jobs, [0.5])] == ["a_a0.500.tif", "b_a0.500.ome.tif",
                                                                                  "c_a0.500.ome.tif"]
    write(tmp_path / "s" / "a.ome.tif", stack)
    with pytest.raises(UsageError, match="stack a also appears"):
        batch.stack_folder(tmp_path / "s")
    with pytest.raises(UsageError, match="holds no z-stacks"):
        batch.stack_folder(write(tmp_path / "e" / "x.txt", stack).parent)


def test_deblur_folder_of_stacks_is_all_or_nothing_and_matches_single_runs(tmp_path_factory, tmp_path):
    predictor = load_model(tiny_checkpoint(tmp_path_factory), "cpu").with_options(batch_size=1)
    rng = np.random.default_rng(1)
    stacks = {name: rng.integers(100, 1000, (3, 24, 32)).astype(np.uint16) for name in ("a", "m", "z")}
    (tmp_path / "in").mkdir()
    for name, data in stacks.items():
        tifffile.imwrite(tmp_path / "in" / f"{name}.tif", data, photometric="minisblack")
    tifffile.imwrite(tmp_path / "in" / "z.tif", stacks["z"][:1])
    jobs = batch.stack_folder(tmp_path / "in")
    read = partial(read_inputs, z=(0, 1))
    with pytest.raises(UsageError, match="z.tif: holds one plane"):
        batch.predict_folder(predictor, jobs, [0.5], tmp_path / "out", "deblur", read=read)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    tifffile.imwrite(tmp_path / "in" / "z.tif", stacks["z"], photometric="minisblack")
    seen = []
    written = batch.predict_folder(predictor, jobs, [0.5], tmp_path / "out", "deblur", read=read, progress=seen.append)
    assert [p.name for p in written] == ["a_a0.500.tif", "m_a0.500.tif", "z_a0.500.tif"] and seen == [1, 1, 1]
    np.testing.assert_array_equal(tifffile.imread(written[1]), predictor.deblur(stacks["m"][0], stacks["m"][1], 0.5))


def test_run_files_shows_a_tile_bar_only_for_a_tiled_image(tmp_path_factory, tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path_factory)
    rng = np.random.default_rng(2)
    a = write(tmp_path / "a.tif", rng.integers(100, 1000, (64, 160)).astype(np.uint16))
    b = write(tmp_path / "b.tif", rng.integers(100, 1000, (64, 160)).astype(np.uint16))
    tiled = InferenceConfig(device="cpu", tile=48)
    batch.run_files(ckpt, tiled, a, b, [0.5], tmp_path / "t.tif", "deblur", progress_enabled=True)
    err = capsys.readouterr().err
    assert "deblur (tiles)" in err
    batch.run_files(ckpt, tiled, a, b, [0.5], tmp_path / "u.tif", "deblur", progress_enabled=False)
    batch.run_files(ckpt, InferenceConfig(device="cpu", tile=0), a, b, [0.5], tmp_path / "w.tif", "deblur",
                    progress_enabled=True)  # whole image: one "tile", no bar
    assert "tiles" not in capsys.readouterr().err
    np.testing.assert_allclose(tifffile.imread(tmp_path / "t.tif").astype(float),
                               tifffile.imread(tmp_path / "w.tif").astype(float), atol=1)
