"""Physical units (issue 26): the scale a model was trained at, inputs resampled to it and back, α from µm,
and the warnings for inputs far outside the model's training. The tiny checkpoint has no scale of its own, so it
is read as BBBC006's (0.645 µm/px, 2 µm per plane, planes 0..16: defocus up to 32 µm), as any old checkpoint."""

import json

import numpy as np
import pytest
import tifffile
import torch
from helpers.infer_model import smooth_field, tiny_checkpoint
from skimage.transform import resize
from typer.testing import CliRunner

import blurlatent
from blurlatent.cli import app
from blurlatent.config import DataConfig, TrainConfig, to_dict
from blurlatent.errors import UsageError
from blurlatent.files.stacks import read_stack
from blurlatent.inference.alphas import alpha_source
from blurlatent.inference.builtin import MODELS_DIR, builtin_model, builtin_path
from blurlatent.inference.predictor import load_model
from blurlatent.inference.scale import card_scale, resample, trained_scale

MODEL_UM = 0.645


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


def scene_stack(shape=(64, 48)) -> np.ndarray:
    """Three uint16 planes of one smooth random scene, blurrier toward plane 0 (focus at plane 2)."""
    from scipy.ndimage import gaussian_filter

    sharp = smooth_field(np.random.default_rng(26), shape, 3.0)
    planes = [gaussian_filter(sharp, s) for s in (4.0, 2.0, 0.5)]
    return np.stack([(1000 + 3000 * p).astype(np.uint16) for p in planes])


def write_ome(path, data, pixel_um=None, z_um=2.0, positions=None):
    meta = {"axes": "ZYX", "PhysicalSizeZ": z_um}
    if pixel_um is not None:
        meta |= {"PhysicalSizeX": pixel_um, "PhysicalSizeY": pixel_um}
    if positions is not None:
        meta["Plane"] = {"PositionZ": list(positions)}
    tifffile.imwrite(path, data, metadata=meta)
    return path


def deblur_cli(ckpt, stack, out, *extra):
    result = CliRunner().invoke(app, ["--verbose", "deblur", str(stack), "--z", "0", "1", "--target", "2", "-c",
                                      str(ckpt), "-o", str(out), "--device", "cpu", *extra])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split()), tifffile.imread(out)


def quiet(log: str) -> bool:
    """No warning in ``log`` but the deblur self-check's (issue 25; the tiny model's outputs are poor ones)."""
    return log.count("WARNING") == log.count("WARNING the output may be worse than the less-blurry input")


def psnr(a, b) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    mse = float(np.mean((a - b) ** 2))
    return float(10 * np.log10((b.max() - b.min()) ** 2 / mse)) if mse else float("inf")


def test_resample_is_2x2_mean_binning_at_one_half_and_linear_back():
    x = np.random.default_rng(0).random((2, 40, 48)).astype(np.float32)
    binned = resample(x, (20, 24))
    np.testing.assert_allclose(binned, x.reshape(2, 20, 2, 24, 2).mean(axis=(2, 4)), atol=1e-6)
    back = resample(binned, (40, 48))
    np.testing.assert_allclose(back, resize(binned, (2, 40, 48), order=1, mode="edge", anti_aliasing=False),
                               atol=1e-6)
    odd = resample(x, (17, 31))  # any factor: area means keep the mean
    assert odd.shape == (2, 17, 31) and abs(float(odd.mean()) - float(x.mean())) < 1e-5


def test_half_the_models_pixel_size_gives_its_binned_version_resampled_back(ckpt, tmp_path):
    """The done-when test: 0.3225 µm/px through --rescale auto = the 2x2-binned planes deblurred at 0.645 µm/px,
    resampled back (an independent binning and skimage's resize), and a log without a warning."""
    data = scene_stack()
    log, out = deblur_cli(ckpt, write_ome(tmp_path / "half.ome.tif", data, MODEL_UM / 2), tmp_path / "out.ome.tif",
                          "--rescale", "auto")
    assert "rescaled 0.3225 → 0.645 µm/px (×0.5) and back" in log and quiet(log), log
    binned = data.astype(np.float32).reshape(3, 32, 2, 24, 2).mean(axis=(2, 4))
    at_model = load_model(ckpt, device="cpu").deblur(binned[0], binned[1], 0.5)  # planes 0, 1 toward 2
    oracle = np.rint(resize(at_model, data.shape[1:], order=1, mode="edge", anti_aliasing=False))
    assert out.shape == data.shape[1:] and out.dtype == data.dtype
    assert psnr(out, oracle) >= 40.0
    # and it is not what the model makes of the planes at their own pixel size
    assert psnr(out, load_model(ckpt, device="cpu").deblur(data[0], data[1], 0.5)) < psnr(out, oracle)


def test_rescale_off_leaves_the_input_alone_and_warns(ckpt, tmp_path):
    data = scene_stack()
    log, out = deblur_cli(ckpt, write_ome(tmp_path / "half.ome.tif", data, MODEL_UM / 2), tmp_path / "off.ome.tif",
                          "--rescale", "off")
    np.testing.assert_array_equal(out, load_model(ckpt, device="cpu").deblur(data[0], data[1], 0.5))
    assert "WARNING" in log and "pixel size 0.3225 µm/px is 2× finer than the model's 0.645 µm/px" in log, log
    assert "leave --rescale at auto" in log and "rescaled" not in log


def test_pixel_size_overrides_the_file_and_an_unknown_one_is_a_note(ckpt, tmp_path):
    data = scene_stack()
    _, auto = deblur_cli(ckpt, write_ome(tmp_path / "half.ome.tif", data, MODEL_UM / 2), tmp_path / "a.ome.tif")
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, data, photometric="minisblack")  # no pixel size at all
    log, kept = deblur_cli(ckpt, plain, tmp_path / "kept.tif")
    assert "pixel size is unknown (its file does not say), so it was not rescaled" in log and "--pixel-size" in log, log
    assert quiet(log)
    np.testing.assert_array_equal(kept, load_model(ckpt, device="cpu").deblur(data[0], data[1], 0.5))
    log, given = deblur_cli(ckpt, plain, tmp_path / "given.tif", "--pixel-size", str(MODEL_UM / 2))
    np.testing.assert_array_equal(given, auto)
    # over the file's own pixel size too: a 0.3225 file said to be at the model's is left alone
    _, same = deblur_cli(ckpt, tmp_path / "half.ome.tif", tmp_path / "same.ome.tif", "--pixel-size", str(MODEL_UM))
    np.testing.assert_array_equal(same, kept)


def test_the_api_takes_pixel_size_and_rescale(ckpt):
    data = scene_stack()
    model = load_model(ckpt, device="cpu")
    auto = blurlatent.deblur(model, data, z=(0, 1), target=2, axes="ZYX", pixel_size=MODEL_UM / 2)
    binned = data.astype(np.float32).reshape(3, 32, 2, 24, 2).mean(axis=(2, 4))
    oracle = resize(model.deblur(binned[0], binned[1], 0.5), data.shape[1:], order=1, mode="edge")
    assert auto.dtype == np.uint16 and psnr(auto, oracle) >= 40.0
    off = blurlatent.deblur(model, data, z=(0, 1), target=2, axes="ZYX", pixel_size=MODEL_UM / 2, rescale="off")
    np.testing.assert_array_equal(off, model.deblur(data[0], data[1], 0.5))
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(UsageError, match="pixel_size"):
            blurlatent.deblur(model, data[0], data[1], 0.5, pixel_size=bad)


def test_alpha_from_the_planes_z_in_um(tmp_path):
    """Unevenly spaced planes (OME PositionZ 0, 4, 6 µm): α = (6 − 4) / (6 − 0), not the indices' 0.5."""
    stack = read_stack(write_ome(tmp_path / "uneven.ome.tif", scene_stack(), MODEL_UM, positions=(0.0, 4.0, 6.0)))
    assert stack.z_um == (0.0, 4.0, 6.0)
    levels = alpha_source(None, None, 2, z=(0, 1)).levels(stack)
    assert levels.alphas == pytest.approx([1 / 3]) and levels.z_um == (0.0, 4.0, 6.0)
    assert levels.lines() == ["alpha = 0.3333 from planes 0, 1 toward 2 (z 0, 4, 6 µm)"]
    even = read_stack(write_ome(tmp_path / "even.ome.tif", scene_stack(), MODEL_UM, z_um=3.0))
    assert even.z_um is None and alpha_source(None, None, 2, z=(0, 1)).levels(even).alphas == [0.5]


def test_a_blurriest_plane_beyond_the_trained_defocus_warns(ckpt, tmp_path):
    near = write_ome(tmp_path / "near.ome.tif", scene_stack(), MODEL_UM, z_um=2.0)  # 4 µm from focus
    log, _ = deblur_cli(ckpt, near, tmp_path / "near_out.ome.tif")
    assert quiet(log), log
    far = write_ome(tmp_path / "far.ome.tif", scene_stack(), MODEL_UM, z_um=20.0)  # 40 µm > 32 µm
    log, _ = deblur_cli(ckpt, far, tmp_path / "far_out.ome.tif")
    assert "the blurriest plane lies 40 µm from focus, beyond the 32 µm the model was trained on" in log, log
    assert "choose a blurriest plane nearer focus (--z)" in log


def test_card_and_checkpoints_carry_the_scale(ckpt):
    card = json.loads((MODELS_DIR / "w1.json").read_text())
    assert (card["pixel_size_um"], card["z_step_um"], card["defocus_um"]) == (0.645, 2.0, [0.0, 32.0])
    shipped = torch.load(builtin_path(builtin_model("w1")), weights_only=True, map_location="cpu")
    assert trained_scale(shipped["config"]) == card_scale(card)  # an older checkpoint: BBBC006's scale
    assert load_model(ckpt, device="cpu").trained == card_scale(card)
    config = to_dict(TrainConfig(data=DataConfig(pixel_size_um=0.325, z_step_um=0.5, triplets=[(0, 8, 16)])))
    assert (trained_scale(config).pixel_size_um, trained_scale(config).defocus_um) == (0.325, 8.0)
    unknown = trained_scale(to_dict(TrainConfig()))  # own stacks without pixel sizes: never resampled
    assert unknown.pixel_size_um is None and unknown.words() == ""
