"""Eq. 2/3, α from planes, padding/tiling and intensity scales, on a tiny trained model."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from infer_model import TINY, smooth_field, train_tiny_checkpoint
from scipy.ndimage import gaussian_filter

from blurlatent import interpolate as I
from blurlatent.errors import UsageError
from blurlatent.intensity import from_unit, intensity_range, to_unit


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    train_tiny_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def model(ckpt):
    return I.load_model(ckpt, "cpu")


def recon(model, x: np.ndarray) -> np.ndarray:
    """G(E(x)) straight through the network, x a [0, 1] float image of a size divisible by 8."""
    with torch.inference_mode():
        return model(torch.from_numpy(x)[None, None])[0, 0].numpy()


def pair(seed: int, shape=(40, 48)):
    rng = np.random.default_rng(seed)
    sharp = smooth_field(rng, shape, 1.0)
    blurry = gaussian_filter(sharp, 3.0)
    blurry = (blurry - blurry.min()) / (blurry.max() - blurry.min())  # exactly [0, 1]: minmax is identity
    return sharp, blurry.astype(np.float32)


# --- Eq. 2 / Eq. 3 ----------------------------------------------------------------------------


def test_load_model_keeps_config_and_normalization(model):
    assert model.config.widths == TINY
    assert model.normalize == "minmax"
    assert not model.training


def test_fused_model_equals_unfused(ckpt, model):
    plain = I.load_model(ckpt, "cpu", fuse=False)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    sharp, blurry = pair(15)
    x = torch.from_numpy(np.stack([sharp, blurry]))[:, None]
    with torch.inference_mode():
        torch.testing.assert_close(model.encode(x), plain.encode(x), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(I.deblur(model, blurry, sharp, 0.5), I.deblur(plain, blurry, sharp, 0.5), atol=1e-5)


def test_load_model_honours_recorded_normalization(tmp_path):
    train_tiny_checkpoint(tmp_path / "p.pt", steps=1, normalize="percentile")
    assert I.load_model(tmp_path / "p.pt", "cpu").normalize == "percentile"
    train_tiny_checkpoint(tmp_path / "bad.pt", steps=1, normalize="zscore")
    with pytest.raises(UsageError, match="normalize"):
        I.load_model(tmp_path / "bad.pt", "cpu")


def test_alpha_endpoints_equal_reconstructions(model):
    sharp, blurry = pair(1)
    out = I.blur(model, sharp, blurry, [1.0, 0.0], intensity="minmax")
    np.testing.assert_allclose(out[0], recon(model, sharp), atol=1e-5)
    np.testing.assert_allclose(out[1], recon(model, blurry), atol=1e-5)
    # deblur with α = 0 is the less-blurry input's reconstruction
    np.testing.assert_allclose(I.deblur(model, blurry, sharp, 0.0, intensity="minmax"), recon(model, sharp), atol=1e-5)
    assert np.abs(out[0] - out[1]).max() > 0.05  # the two endpoints really differ


def test_blur_midpoint_decodes_the_mixed_latent(model):
    sharp, blurry = pair(2)
    with torch.inference_mode():
        z = model.encode(torch.from_numpy(np.stack([sharp, blurry]))[:, None])
        expected = model.decode(0.25 * z[:1] + 0.75 * z[1:])[0, 0].numpy()
    np.testing.assert_allclose(I.blur(model, sharp, blurry, 0.25, intensity="minmax"), expected, atol=1e-5)


def test_eq3_inverts_eq2_on_real_codes(model):
    """Eq. 3 undoes Eq. 2 with z1 = the blurriest code: α weighs the blurriest plane in deblurring.

    In blur synthesis (Fig. 2) α weighs the sharp code, so blur level a is undone by deblur α = 1 − a.
    """
    sharp, blurry = pair(3)
    with torch.inference_mode():
        z = model.encode(torch.from_numpy(np.stack([sharp, blurry]))[:, None]).double()
    zs, zb = z[0], z[1]
    for alpha in (0.0, 0.25, 0.5, 0.875):
        mixed = I.interpolate_latents(zb, zs, alpha)
        torch.testing.assert_close(I.extrapolate_sharp(zb, mixed, alpha), zs, rtol=0, atol=1e-12)
        blur_level = I.interpolate_latents(zs, zb, 1.0 - alpha)
        torch.testing.assert_close(I.extrapolate_sharp(zb, blur_level, alpha), zs, rtol=0, atol=1e-12)
    assert (zs - zb).abs().max() > 0.1


@settings(max_examples=60, deadline=None)
@given(alpha=st.floats(0.0, 0.99), seed=st.integers(0, 2**16))
def test_eq3_inverts_eq2_property(alpha, seed):
    g = torch.Generator().manual_seed(seed)
    z_sharp, z_blurriest = torch.randn(2, 8, 3, 3, generator=g, dtype=torch.float64)
    back = I.extrapolate_sharp(z_blurriest, I.interpolate_latents(z_blurriest, z_sharp, alpha), alpha)
    torch.testing.assert_close(back, z_sharp, rtol=0, atol=1e-12 / (1 - alpha))


@pytest.mark.parametrize(
    "planes, alpha",
    [((0, 8, 16), 0.5), ((32, 24, 16), 0.5), ((0, 2, 16), 14 / 16), ((0, 14, 16), 2 / 16), ((33, 17, 16), 1 / 17), ((0, 16, 16), 0.0)],
)
def test_alpha_from_planes(planes, alpha):
    assert I.alpha_from_planes(*planes) == pytest.approx(alpha)


@pytest.mark.parametrize("planes", [(8, 0, 16), (0, 0, 16), (16, 8, 16), (0, 24, 16), (32, 8, 16)])
def test_alpha_from_planes_refuses_wrong_order(planes):
    with pytest.raises(UsageError):
        I.alpha_from_planes(*planes)


@settings(max_examples=80, deadline=None)
@given(b=st.integers(0, 33), l=st.integers(0, 33), t=st.integers(0, 33))
def test_alpha_from_planes_property(b, l, t):
    between = (b < l < t) or (t < l < b) or (l == t != b)
    if not between:
        with pytest.raises(UsageError):
            I.alpha_from_planes(b, l, t)
        return
    alpha = I.alpha_from_planes(b, l, t)
    assert 0 <= alpha < 1
    # Eq. 2 read on the focal axis: the less-blurry plane is α of the way from the blurriest to focus.
    assert alpha * b + (1 - alpha) * t == pytest.approx(l)


def test_deblur_alpha_limits(model, caplog):
    sharp, blurry = pair(4)
    for bad in (1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(UsageError, match="alpha"):
            I.deblur(model, blurry, sharp, bad)
    with caplog.at_level(logging.WARNING, logger="blurlatent.interpolate"):
        I.deblur(model, blurry, sharp, 0.875)  # gain exactly 8: allowed silently
        assert not caplog.records
        I.deblur(model, blurry, sharp, 0.9)  # gain 10
    assert any("amplifies" in r.message for r in caplog.records)


def test_blur_alpha_outside_unit_needs_extrapolate(model):
    sharp, blurry = pair(5)
    with pytest.raises(UsageError, match="extrapolate"):
        I.blur(model, sharp, blurry, [0.5, 1.25])
    out = I.blur(model, sharp, blurry, [1.25, -0.5], extrapolate=True, intensity="minmax", out_dtype="float32")
    assert out.shape == (2,) + sharp.shape


def test_steps_to_alphas():
    assert I.steps_to_alphas(7) == pytest.approx([k / 8 for k in range(1, 8)])
    assert I.steps_to_alphas(1) == [0.5]
    with pytest.raises(UsageError):
        I.steps_to_alphas(0)


# --- padding and tiling -----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(h=st.integers(2, 70), w=st.integers(2, 70), m=st.sampled_from([1, 8, 32]), seed=st.integers(0, 99))
def test_pad_crop_round_trip(h, w, m, seed):
    image = np.random.default_rng(seed).random((2, h, w))
    padded, hw = I.pad_to_multiple(image, m)
    assert padded.shape[-2] % m == 0 and padded.shape[-1] % m == 0
    assert padded.shape[-2] - h < m and padded.shape[-1] - w < m
    np.testing.assert_array_equal(I.crop_to(padded, hw), image)
    if padded.shape[-1] > w and w >= 2:  # reflection, not repetition of the edge
        np.testing.assert_array_equal(padded[..., :h, w], image[..., w - 2])


def test_receptive_radius_bounds_the_gradient(model):
    """The tiling margin rests on this: an output pixel's gradient vanishes ≥ receptive_radius away."""
    m, r = model.multiple, I.receptive_radius(model)
    x = torch.full((1, 1, 12 * m, 12 * m), 0.5, requires_grad=True)
    reach = 0
    for d in range(m):  # every phase of the stride grid
        x.grad = None
        c = 6 * m + d
        model(x)[0, 0, c, c].backward()
        ys, xs = np.nonzero(x.grad[0, 0].abs().numpy() > 0)
        reach = max(reach, c - ys.min(), ys.max() - c, c - xs.min(), xs.max() - c)
    assert reach < r
    assert reach >= r // 2  # the bound is not loose by more than 2x


def test_non_multiple_size_equals_explicit_reflect_padding(model):
    sharp, blurry = pair(6, (45, 61))
    out = I.infer_unit(model, sharp[None], blurry[None], [0.5], I.interpolate_latents, tile=0)[0, 0]
    pad = ((0, 3), (0, 3))
    with torch.inference_mode():
        z = model.encode(torch.from_numpy(np.stack([np.pad(sharp, pad, "reflect"), np.pad(blurry, pad, "reflect")]))[:, None])
        expected = model.decode(0.5 * z[:1] + 0.5 * z[1:])[0, 0, :45, :61].numpy()
    assert out.shape == (45, 61)
    np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("combine, alphas", [(I.interpolate_latents, [0.0, 0.5, 1.0]), (I.extrapolate_sharp, [0.25, 0.75])])
def test_tiled_equals_whole(model, combine, alphas):
    sharp, blurry = pair(7, (101, 133))
    whole = I.infer_unit(model, sharp[None], blurry[None], alphas, combine, tile=0)
    smallest = 5 * model.multiple + model.multiple  # 2 margins + ramp + one grid cell
    for tile in (smallest, 64, 80):
        plan = I.plan_tiles((104, 136), model.multiple, I.receptive_radius(model), tile)
        assert len(plan) > 2  # really tiled
        tiled = I.infer_unit(model, sharp[None], blurry[None], alphas, combine, tile=tile)
        assert np.abs(tiled - whole).max() < 1e-3
        assert np.abs(tiled - whole).max() < 1e-5  # in fact equal to float rounding


def test_tile_too_small_is_refused(model):
    sharp, blurry = pair(8, (101, 133))
    with pytest.raises(UsageError, match="too small"):
        I.infer_unit(model, sharp[None], blurry[None], [0.5], I.interpolate_latents, tile=40)


@settings(max_examples=40, deadline=None)
@given(length=st.integers(1, 60), tile=st.integers(6, 20))
def test_tiles_cover_with_weight_everywhere(length, tile):
    m, radius = 8, 16
    length *= m
    tile *= m
    plan = I.plan_tiles((length, 8 * m), m, radius, tile)
    wsum = np.zeros((length, 8 * m))
    for rows, cols, weight in plan:
        assert rows.start % m == 0 and rows.stop <= length
        wsum[rows, cols] += 1.0 if weight is None else weight
    assert wsum.min() > 0.05


def test_batched_pairs_equal_single(model):
    a1, b1 = pair(9)
    a2, b2 = pair(10)
    both = I.infer_unit(model, np.stack([a1, a2]), np.stack([b1, b2]), [0.3, 0.6], I.interpolate_latents, batch_size=3)
    one = I.infer_unit(model, a2[None], b2[None], [0.3, 0.6], I.interpolate_latents)
    np.testing.assert_allclose(both[1], one[0], atol=1e-6)


# --- intensity scales -------------------------------------------------------------------------


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
    assert I.background(sharp) == pytest.approx(110, abs=1)
    assert I.total_above_background(sharp) == pytest.approx(truth, rel=0.05)
    assert I.total_above_background(blurred) == pytest.approx(truth, rel=0.05)


@pytest.mark.parametrize("dtype, lo, hi", [(np.uint8, 10, 240), (np.uint16, 100, 1100), (np.float32, -2.0, 5.0)])
def test_dtype_and_minmax_scale_preserved(model, dtype, lo, hi):
    sharp, blurry = pair(11)
    s = (sharp * (hi - lo) + lo).astype(dtype)
    b = (blurry * (hi - lo) * 0.5 + lo).astype(dtype)  # the blurry plane has half the range
    out = I.blur(model, s, b, [1.0, 0.5], intensity="minmax")
    assert out.dtype == dtype
    slo, shi = intensity_range(s)
    blo, bhi = intensity_range(b)
    expected = from_unit(recon(model, to_unit(s, slo, shi)), slo, shi, dtype)
    np.testing.assert_allclose(out[0].astype(float), expected.astype(float), atol=1.0 if dtype != np.float32 else 1e-4)
    mid_lo, mid_hi = 0.5 * (slo + blo), 0.5 * (shi + bhi)
    assert out[1].min() >= mid_lo - 1e-3 and out[1].max() <= mid_hi + 1e-3
    deb = I.deblur(model, b, s, 0.5, intensity="minmax", out_dtype="float32")
    assert deb.dtype == np.float32 and deb.min() >= slo - 1e-3 and deb.max() <= shi + 1e-3


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_conserve_keeps_total_above_background(model, dtype):
    sharp, blurry = pair(12)
    scale = {np.uint8: 200, np.uint16: 1000, np.float32: 3.0}[dtype]
    offset = {np.uint8: 20, np.uint16: 100, np.float32: 0.5}[dtype]
    s = (sharp * scale + offset).astype(dtype)
    b = (blurry * scale * 0.6 + offset).astype(dtype)
    out = I.deblur(model, b, s, 0.5)  # conserve is the default
    assert out.dtype == dtype
    rel = 0.01 if dtype != np.float32 else 1e-6  # integer rounding of ~2000 pixels
    assert I.total_above_background(out) == pytest.approx(I.total_above_background(s), rel=rel)
    assert I.background(out) == pytest.approx(I.background(s), abs=0.02 * scale)
    levels = I.blur(model, s, b, [1.0, 0.5, 0.0])
    totals = [I.total_above_background(x) for x in (s, b)]
    for level, alpha in zip(levels, (1.0, 0.5, 0.0)):
        assert I.total_above_background(level) == pytest.approx(alpha * totals[0] + (1 - alpha) * totals[1], rel=rel)


def test_integer_output_clipped_with_warning(caplog):
    ref = np.zeros((40, 48), np.uint8)
    ref[:20, :24] = 200  # total above background 200 * 480
    unit = np.zeros((40, 48))
    unit[10:14, 10:14] = 1.0  # the same light in 16 pixels: 6000 each, past uint8
    scale = I._Scale(ref, "minmax", need_total=True)
    with caplog.at_level(logging.WARNING, logger="blurlatent.interpolate"):
        out = I.to_input_scale(unit, scale, "conserve", np.uint8)
    assert out.dtype == np.uint8 and out.max() == 255 and out.min() == 0
    assert any("clipped" in r.message for r in caplog.records)
    as_float = I.to_input_scale(unit, scale, "conserve", np.float32)
    assert as_float.max() == pytest.approx(200 * 480 / 16)


def test_bad_arrays_refused(model):
    sharp, blurry = pair(14)
    with pytest.raises(UsageError, match="shape"):
        I.blur(model, np.stack([sharp] * 3, axis=-1), blurry, 0.5)
    with pytest.raises(UsageError, match="blurry"):
        I.blur(model, sharp, blurry[:-8], 0.5)
    with pytest.raises(UsageError, match="intensity"):
        I.deblur(model, blurry, sharp, 0.5, intensity="percentile")
    with pytest.raises(UsageError, match="precision"):
        I.deblur(model, blurry, sharp, 0.5, precision="fp8")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_is_opt_in_and_close(model, precision):
    sharp, blurry = pair(16)
    exact = I.deblur(model, blurry, sharp, 0.5, intensity="minmax")
    assert np.array_equal(I.deblur(model, blurry, sharp, 0.5, intensity="minmax", precision="auto"), exact)
    low = I.deblur(model, blurry, sharp, 0.5, intensity="minmax", precision=precision)
    assert low.dtype == exact.dtype
    assert 0 < np.abs(low - exact).max() < 0.1  # autocast really ran, and stays near fp32
