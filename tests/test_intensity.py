"""intensity: background and total signal, and the mapping of model outputs back to the inputs' scale
(``conserve`` and ``minmax``), through the tiny trained model."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from helpers.infer_model import pair, tiny_checkpoint
from scipy.ndimage import gaussian_filter

from blurlatent.errors import UsageError
from blurlatent.inference.predictor import blur, deblur, load_model
from blurlatent.intensity import (
    Scale,
    background,
    from_unit,
    intensity_range,
    plane_ranges,
    to_input_scale,
    to_unit,
    total_above_background,
    warn_hot_pixels,
)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return load_model(tiny_checkpoint(tmp_path_factory), "cpu")


def recon(predictor, x: np.ndarray) -> np.ndarray:
    """G(E(x)) straight through the network, x a [0, 1] float image of a size divisible by 8."""
    with torch.inference_mode():
        return predictor.model(torch.from_numpy(x)[None, None])[0, 0].numpy()


def test_total_above_background_is_conserved_by_blur_oracle():
    """Blobs on a noisy flat background, BBBC006-like (background 110, noise sigma 3): Gaussian defocus
    keeps Σ(x − background), the premise of intensity='conserve', and the estimate finds it within 5 %."""
    rng = np.random.default_rng(0)
    image = np.full((128, 128), 110.0)
    for y, x in rng.integers(15, 98, size=(6, 2)):
        image[y : y + 15, x : x + 15] += 300.0
    truth = (image - 110.0).sum()
    sharp = image + rng.normal(0, 3, image.shape)
    blurred = gaussian_filter(image, 6, mode="reflect") + rng.normal(0, 3, image.shape)
    assert background(sharp) == pytest.approx(110, abs=1)
    assert total_above_background(sharp) == pytest.approx(truth, rel=0.05)
    assert total_above_background(blurred) == pytest.approx(truth, rel=0.05)


@pytest.mark.parametrize("dtype, lo, hi", [(np.uint8, 10, 240), (np.uint16, 100, 1100), (np.float32, -2.0, 5.0)])
def test_dtype_and_minmax_scale_preserved(predictor, dtype, lo, hi):
    sharp, blurry = pair(11)
    s = (sharp * (hi - lo) + lo).astype(dtype)
    b = (blurry * (hi - lo) * 0.5 + lo).astype(dtype)  # the blurry plane has half the range
    out = blur(predictor, s, b, [1.0, 0.5], intensity="minmax")
    assert out.dtype == dtype
    slo, shi = intensity_range(s)
    blo, bhi = intensity_range(b)
    expected = from_unit(recon(predictor, to_unit(s, slo, shi)), slo, shi, dtype)
    np.testing.assert_allclose(out[0].astype(float), expected.astype(float), atol=1.0 if dtype != np.float32 else 1e-4)
    mid_lo, mid_hi = 0.5 * (slo + blo), 0.5 * (shi + bhi)
    assert out[1].min() >= mid_lo - 1e-3 and out[1].max() <= mid_hi + 1e-3
    deb = deblur(predictor, b, s, 0.5, intensity="minmax", out_dtype="float32")
    assert deb.dtype == np.float32 and deb.min() >= slo - 1e-3 and deb.max() <= shi + 1e-3


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_conserve_keeps_total_above_background(predictor, dtype):
    sharp, blurry = pair(12)
    scale = {np.uint8: 200, np.uint16: 1000, np.float32: 3.0}[dtype]
    offset = {np.uint8: 20, np.uint16: 100, np.float32: 0.5}[dtype]
    s = (sharp * scale + offset).astype(dtype)
    b = (blurry * scale * 0.6 + offset).astype(dtype)
    out = deblur(predictor, b, s, 0.5)  # conserve is the default
    assert out.dtype == dtype
    rel = 0.01 if dtype != np.float32 else 1e-6  # integer rounding of ~2000 pixels
    assert total_above_background(out) == pytest.approx(total_above_background(s), rel=rel)
    assert background(out) == pytest.approx(background(s), abs=0.02 * scale)
    levels = blur(predictor, s, b, [1.0, 0.5, 0.0])
    totals = [total_above_background(x) for x in (s, b)]
    for level, alpha in zip(levels, (1.0, 0.5, 0.0), strict=True):
        assert total_above_background(level) == pytest.approx(alpha * totals[0] + (1 - alpha) * totals[1], rel=rel)


def test_integer_output_clipped_with_warning(caplog):
    ref = np.zeros((40, 48), np.uint8)
    ref[:20, :24] = 200  # total above background 200 * 480
    unit = np.zeros((40, 48))
    unit[10:14, 10:14] = 1.0  # the same light in 16 pixels: 6000 each, past uint8
    scale = Scale.of(ref, *intensity_range(ref, "minmax"), need_total=True)
    with caplog.at_level(logging.WARNING, logger="blurlatent.intensity"):
        out = to_input_scale(unit, scale, "conserve", np.uint8)
    assert out.dtype == np.uint8 and out.max() == 255 and out.min() == 0
    assert any("clipped" in r.message for r in caplog.records)
    as_float = to_input_scale(unit, scale, "conserve", np.float32)
    assert as_float.max() == pytest.approx(200 * 480 / 16)


# --- extreme but finite inputs: normalized in float64, never NaN ---------------------------------------------


def test_to_unit_extremes_oracle():
    """Exact answers: the ends of the float32 range, and float64 values near the smallest normal number."""
    big = np.array([[-3e38, 0.0], [1.5e38, 3e38]], np.float32)
    lo, hi = intensity_range(big)
    expected = (big.astype(np.float64) - float(big.min())) / (float(big.max()) - float(big.min()))
    np.testing.assert_array_equal(to_unit(big, lo, hi), expected.astype(np.float32))
    tiny = np.array([[1e-307, 1.5e-307], [2e-307, 1.25e-307]])
    assert intensity_range(tiny) == (1e-307, 2e-307)
    np.testing.assert_allclose(to_unit(tiny, 1e-307, 2e-307), [[0, 0.5], [1, 0.25]], atol=1e-7)
    assert background(tiny * 1.0) == pytest.approx(background(tiny * 1e307) * 1e-307, rel=1e-6)
    for image in (big, tiny):
        assert np.isfinite(background(image)) and np.isfinite(total_above_background(image))


def test_to_unit_bitwise_equal_to_float32_for_integer_images():
    """The float64 path changes nothing for 8/16-bit data (prepare's stores stay byte for byte the same)."""
    image = np.random.default_rng(0).integers(0, 65536, (64, 64)).astype(np.uint16)
    lo, hi = intensity_range(image)
    reference = np.clip((image.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo), 0, 1)
    np.testing.assert_array_equal(to_unit(image, lo, hi), reference)


EXTREMES = [  # (intensity, dtype, k = 2**exponent, amplitude): inputs k * amplitude * [-1, 1]
    ("minmax", np.float32, 127, 1.75),  # up to ±3e38, the edge of float32
    ("conserve", np.float32, 127, 1.2),  # ±2e38: conserve raises peaks, which must stay inside float32
    ("minmax", np.float64, -1020, 1.0),  # ~1e-307, near the smallest normal float64
    ("conserve", np.float64, -1020, 1.0),
]


@pytest.mark.parametrize("intensity, dtype, exponent, amplitude", EXTREMES)
def test_extreme_inputs_scale_equivariant_oracle(predictor, intensity, dtype, exponent, amplitude):
    """Oracle: normalization removes scale, so blur(k·s, k·b) = k·blur(s, b) and likewise for deblur, for
    k = 2**exponent (exact in floating point). Before float64 normalization these gave NaN images."""
    sharp, blurry = pair(13)
    s, b = (amplitude * (2 * sharp - 1)).astype(dtype), (amplitude * (1.6 * blurry - 0.7)).astype(dtype)
    k = 2.0**exponent
    ks, kb = (np.ldexp(x, exponent).astype(dtype) for x in (s, b))
    assert np.abs(ks).max() > 8e37 or np.abs(ks).max() < 1e-306
    for got, ref in ((blur(predictor, ks, kb, [1.0, 0.5], intensity=intensity),
                      blur(predictor, s, b, [1.0, 0.5], intensity=intensity)),
                     (deblur(predictor, kb, ks, 0.5, intensity=intensity),
                      deblur(predictor, b, s, 0.5, intensity=intensity))):
        assert got.dtype == dtype and np.isfinite(got).all()
        scale = float(np.abs(ref).max())
        np.testing.assert_allclose(got.astype(np.float64) / k, ref, rtol=1e-5, atol=1e-6 * scale)


def test_values_beyond_the_normalizable_range_refused_in_one_line():
    huge = np.array([[0.0, 1.7e308], [-1e301, 5.0]])
    for run in (lambda: intensity_range(huge), lambda: plane_ranges([np.ones((4, 4)), huge], "stack", 0)):
        with pytest.raises(UsageError, match=r"image values reach 1.7e\+308, beyond ±1e\+300.*rescale the image"):
            run()


def test_float_output_clipped_to_its_range_not_infinite(caplog):
    ref = np.zeros((40, 48), np.float32)
    ref[:20, :24] = 3e38  # total above background 3e38 * 480
    unit = np.zeros((40, 48))
    unit[10:14, 10:14] = 1.0  # the same light in 16 pixels: 9e39 each, past float32
    scale = Scale.of(ref, *intensity_range(ref), need_total=True)
    with caplog.at_level(logging.WARNING, logger="blurlatent.intensity"):
        out = to_input_scale(unit, scale, "conserve", np.float32)
    assert np.isfinite(out).all() and out.max() == np.finfo(np.float32).max
    assert any("outside the float32 range" in r.message for r in caplog.records)


# --- hot pixels (issue 28, cause 7) -----------------------------------------------------------------------


def test_a_few_hot_pixels_setting_the_range_warn_and_a_lone_nucleus_does_not(caplog):
    from skimage.draw import disk

    rng = np.random.default_rng(7)
    field = (200 + 20 * rng.random((96, 96))).astype(np.uint16)
    nucleus = field.copy()
    nucleus[disk((48, 48), 6)] = 3000  # one small bright nucleus: ~110 px in the upper half of the range
    hot = nucleus.copy()
    hot[10, 10] = hot[80, 20] = 65535  # two hot pixels: the range now reaches 65535, the nucleus below its half
    for image, warns in ((field, False), (nucleus, False), (hot, True)):
        caplog.clear()
        lo, hi = intensity_range(image)
        assert warn_hot_pixels(image, lo, hi) is warns
        assert ("2 pixel(s) alone fill the upper half" in caplog.text) is warns


def test_deblur_of_a_pair_with_a_hot_pixel_says_so(tmp_path, tmp_path_factory):
    from helpers.infer_model import smooth_field, tiny_checkpoint
    from typer.testing import CliRunner

    from blurlatent.cli import app
    from blurlatent.files.images import write_image

    rng = np.random.default_rng(28)
    planes = [(500 + 3000 * smooth_field(rng, (40, 48))).astype(np.uint16) for _ in range(2)]
    planes[1][5, 5] = 65535
    paths = [tmp_path / f"z{i}.tif" for i in range(2)]
    for path, plane in zip(paths, planes, strict=True):
        write_image(path, plane)
    ckpt = tiny_checkpoint(tmp_path_factory)
    result = CliRunner().invoke(app, ["deblur", *map(str, paths), "--alpha", "0.5", "-c", str(ckpt), "-o",
                                      str(tmp_path / "out.tif"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "1 pixel(s) alone fill the upper half" in " ".join(result.output.split())
