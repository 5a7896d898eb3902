"""tiling: reflect padding to 2**depth, the receptive radius, and tiles that agree with whole-image inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.infer_model import pair, tiny_checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st

from blurlatent.config import ModelConfig
from blurlatent.errors import UsageError
from blurlatent.inference.predictor import Predictor, load_model
from blurlatent.nets.autoencoder import build_autoencoder
from blurlatent.nets.tiling import crop_to, pad_to_multiple, plan_tiles, receptive_radius


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return load_model(tiny_checkpoint(tmp_path_factory), "cpu")


@settings(max_examples=60, deadline=None)
@given(h=st.integers(2, 70), w=st.integers(2, 70), m=st.sampled_from([1, 8, 32]), seed=st.integers(0, 99))
def test_pad_crop_round_trip(h, w, m, seed):
    image = np.random.default_rng(seed).random((2, h, w))
    padded, hw = pad_to_multiple(image, m)
    assert padded.shape[-2] % m == 0 and padded.shape[-1] % m == 0
    assert padded.shape[-2] - h < m and padded.shape[-1] - w < m
    np.testing.assert_array_equal(crop_to(padded, hw), image)
    if padded.shape[-1] > w and w >= 2:  # reflection, not repetition of the edge
        np.testing.assert_array_equal(padded[..., :h, w], image[..., w - 2])


def test_receptive_radius_bounds_the_gradient(predictor):
    """The tiling margin rests on this: an output pixel's gradient vanishes ≥ receptive_radius away."""
    model, m = predictor.model, predictor.multiple
    r = receptive_radius(m)
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


def test_non_multiple_size_equals_explicit_reflect_padding(predictor):
    sharp, blurry = pair(6, (45, 61))
    out = predictor.with_options(tile=0).combine(sharp[None], blurry[None], [0.5], "blur")[0, 0]
    pad = ((0, 3), (0, 3))
    with torch.inference_mode():
        x = torch.from_numpy(np.stack([np.pad(sharp, pad, "reflect"), np.pad(blurry, pad, "reflect")]))[:, None]
        z = predictor.model.encode(x)
        expected = predictor.model.decode(0.5 * z[:1] + 0.5 * z[1:])[0, 0, :45, :61].numpy()
    assert out.shape == (45, 61)
    np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("rule, alphas", [("blur", [0.0, 0.5, 1.0]), ("deblur", [0.25, 0.75])])
def test_tiled_equals_whole(predictor, rule, alphas):
    sharp, blurry = pair(7, (101, 133))
    whole = predictor.with_options(tile=0).combine(sharp[None], blurry[None], alphas, rule)
    m = predictor.multiple
    smallest = 5 * m + m  # 2 margins + ramp + one grid cell
    for tile in (smallest, 64, 80):
        plan = plan_tiles((104, 136), m, receptive_radius(m), tile)
        assert len(plan) > 2  # really tiled
        tiled = predictor.with_options(tile=tile).combine(sharp[None], blurry[None], alphas, rule)
        assert np.abs(tiled - whole).max() < 1e-3
        assert np.abs(tiled - whole).max() < 1e-5  # in fact equal to float rounding


def test_tile_too_small_is_refused(predictor):
    sharp, blurry = pair(8, (101, 133))
    with pytest.raises(UsageError, match="too small"):
        predictor.with_options(tile=40).combine(sharp[None], blurry[None], [0.5], "blur")


@settings(max_examples=40, deadline=None)
@given(length=st.integers(1, 60), tile=st.integers(6, 20))
def test_tiles_cover_with_weight_everywhere(length, tile):
    m, radius = 8, 16
    length *= m
    tile *= m
    plan = plan_tiles((length, 8 * m), m, radius, tile)
    wsum = np.zeros((length, 8 * m))
    for rows, cols, weight in plan:
        assert rows.start % m == 0 and rows.stop <= length
        wsum[rows, cols] += 1.0 if weight is None else weight
    assert wsum.min() > 0.05


@pytest.mark.parametrize("skips", ["coarse", "gated", "quarter"])
def test_tiled_equals_whole_for_the_multiscale_arch(skips):
    """The multiscale net's own radius (multiscale.receptive_radius) makes tiles agree with the whole image."""
    torch.manual_seed(0)
    model = build_autoencoder(ModelConfig(arch="multiscale", widths=[4, 8, 8], skips=skips))
    with torch.no_grad():
        model(torch.rand(4, 1, 32, 32))  # BatchNorm statistics that are not the identity
    predictor = Predictor(model.eval())
    m, r = predictor.multiple, predictor.radius
    assert (m, r) == (4, model.radius) and r > receptive_radius(m)  # reaches farther than the paper's net
    sharp, blurry = pair(9, (101, 133))
    for rule, alphas in (("blur", [0.0, 0.5]), ("deblur", [0.25, 0.75])):
        whole = predictor.with_options(tile=0).combine(sharp[None], blurry[None], alphas, rule)
        for tile in (2 * r + 2 * m, 80):
            assert len(plan_tiles((104, 136), m, r, tile)) > 2  # really tiled
            tiled = predictor.with_options(tile=tile).combine(sharp[None], blurry[None], alphas, rule)
            assert np.abs(tiled - whole).max() < 1e-5
        with pytest.raises(UsageError, match="too small"):
            predictor.with_options(tile=2 * r).combine(sharp[None], blurry[None], alphas, rule)
