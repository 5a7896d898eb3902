"""latent: Eq. 2, Eq. 3 and α — on real codes of the tiny trained model and on random ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.infer_model import pair, tiny_checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st

from blurlatent.errors import UsageError
from blurlatent.inference.predictor import load_model
from blurlatent.nets.latent import (
    alpha_from_planes,
    extrapolate_sharp,
    flatten_latent,
    interpolate_latents,
    steps_to_alphas,
    triplet_alphas,
    triplet_weight,
)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return load_model(tiny_checkpoint(tmp_path_factory), "cpu")


def test_eq3_inverts_eq2_on_real_codes(predictor):
    """Eq. 3 undoes Eq. 2 with z1 = the blurriest code: α weighs the blurriest plane in deblurring.

    In blur synthesis (Fig. 2) α weighs the sharp code, so blur level a is undone by deblur α = 1 − a.
    """
    sharp, blurry = pair(3)
    with torch.inference_mode():
        z = predictor.model.encode(torch.from_numpy(np.stack([sharp, blurry]))[:, None]).double()
    zs, zb = z[0], z[1]
    for alpha in (0.0, 0.25, 0.5, 0.875):
        mixed = interpolate_latents(zb, zs, alpha)
        torch.testing.assert_close(extrapolate_sharp(zb, mixed, alpha), zs, rtol=0, atol=1e-12)
        blur_level = interpolate_latents(zs, zb, 1.0 - alpha)
        torch.testing.assert_close(extrapolate_sharp(zb, blur_level, alpha), zs, rtol=0, atol=1e-12)
    assert (zs - zb).abs().max() > 0.1


@settings(max_examples=60, deadline=None)
@given(alpha=st.floats(0.0, 0.99), seed=st.integers(0, 2**16))
def test_eq3_inverts_eq2_property(alpha, seed):
    g = torch.Generator().manual_seed(seed)
    z_sharp, z_blurriest = torch.randn(2, 8, 3, 3, generator=g, dtype=torch.float64)
    back = extrapolate_sharp(z_blurriest, interpolate_latents(z_blurriest, z_sharp, alpha), alpha)
    torch.testing.assert_close(back, z_sharp, rtol=0, atol=1e-12 / (1 - alpha))


@pytest.mark.parametrize(
    "planes, alpha",
    [((0, 8, 16), 0.5), ((32, 24, 16), 0.5), ((0, 2, 16), 14 / 16), ((0, 14, 16), 2 / 16), ((33, 17, 16), 1 / 17),
     ((0, 16, 16), 0.0)],
)
def test_alpha_from_planes(planes, alpha):
    assert alpha_from_planes(*planes) == pytest.approx(alpha)


@pytest.mark.parametrize("planes", [(8, 0, 16), (0, 0, 16), (16, 8, 16), (0, 24, 16), (32, 8, 16)])
def test_alpha_from_planes_refuses_wrong_order(planes):
    with pytest.raises(UsageError):
        alpha_from_planes(*planes)


@settings(max_examples=80, deadline=None)
@given(b=st.integers(0, 33), l=st.integers(0, 33), t=st.integers(0, 33))
def test_alpha_from_planes_property(b, l, t):  # noqa: E741
    between = (b < l < t) or (t < l < b) or (l == t != b)
    if not between:
        with pytest.raises(UsageError):
            alpha_from_planes(b, l, t)
        return
    alpha = alpha_from_planes(b, l, t)
    assert 0 <= alpha < 1
    # Eq. 2 read on the focal axis: the less-blurry plane is α of the way from the blurriest to focus.
    assert alpha * b + (1 - alpha) * t == pytest.approx(l)


def test_steps_to_alphas():
    assert steps_to_alphas(7) == pytest.approx([k / 8 for k in range(1, 8)])
    assert steps_to_alphas(1) == [0.5]
    with pytest.raises(UsageError):
        steps_to_alphas(0)


def test_list_latents_per_scale_and_flattened():
    """Eq. 2/3 on list latents act per scale with one α (numpy and torch), and commute with flatten_latent."""
    rng = np.random.default_rng(3)
    za = [rng.random((2, 4, 8, 8)), rng.random((2, 8, 4, 4))]
    zb = [rng.random((2, 4, 8, 8)), rng.random((2, 8, 4, 4))]
    mixed = interpolate_latents(za, zb, 0.25)
    for m, a, b in zip(mixed, za, zb, strict=True):
        np.testing.assert_allclose(m, 0.25 * a + 0.75 * b, rtol=0, atol=1e-15)
    back = extrapolate_sharp(zb, mixed, 0.75)  # Eq. 3 with the blurriest plane's weight recovers z_a
    for x, a in zip(back, za, strict=True):
        np.testing.assert_allclose(x, a, rtol=0, atol=1e-12)
    flat = flatten_latent(mixed)
    assert flat.shape == (2, 4 * 64 + 8 * 16)
    np.testing.assert_allclose(flat, interpolate_latents(flatten_latent(za), flatten_latent(zb), 0.25), atol=1e-15)
    tensors = interpolate_latents(tuple(torch.from_numpy(z) for z in za), [torch.from_numpy(z) for z in zb], 0.5)
    assert isinstance(tensors, list) and torch.allclose(tensors[1], torch.from_numpy(0.5 * za[1] + 0.5 * zb[1]))
    with pytest.raises(UsageError, match="2 scales and 1 scale"):
        interpolate_latents(za, zb[0], 0.5)
    with pytest.raises(UsageError, match="2 scales and 3 scale"):
        extrapolate_sharp(za, zb + zb[:1], 0.5)
    assert flatten_latent(za[0]) is za[0]  # an array latent stays as it is


@pytest.mark.parametrize("triplet, weight", [((0, 8, 16), 0.5), ((4, 6, 8), 0.5), ((0, 2, 16), 0.125),
                                             ((0, 14, 16), 0.875), ((8, 10, 16), 0.25), ((16, 24, 32), 0.5)])
def test_triplet_weight_by_hand(triplet, weight):
    assert triplet_weight(triplet) == weight


def test_eq3_at_alpha_from_planes_inverts_eq2_at_triplet_weight():
    """For every focus triplet: the target's code made by Eq. 2 with the triplet's weight gives back the sharp
    code through Eq. 3 with ``alpha_from_planes`` — the two α conventions of the package agree."""
    from blurlatent.bbbc006 import FOCUS_TRIPLETS

    rng = np.random.default_rng(0)
    for left, target, right in FOCUS_TRIPLETS:
        z_blurry, z_sharp = rng.normal(size=(2, 5, 3))
        z_target = interpolate_latents(z_sharp, z_blurry, triplet_weight((left, target, right)))
        back = extrapolate_sharp(z_blurry, z_target, alpha_from_planes(left, target, right))
        np.testing.assert_allclose(back, z_sharp, atol=1e-9)


def test_triplet_alphas_fixed_or_from_planes():
    triplets = [(0, 8, 16), (0, 2, 16), (12, 14, 16)]
    assert triplet_alphas(triplets, 0.3) == [0.3, 0.3, 0.3]
    assert triplet_alphas(triplets, "planes") == [0.5, 0.125, 0.5]
    with pytest.raises(UsageError, match="'planes'"):
        triplet_alphas(triplets, "auto")
    with pytest.raises(UsageError, match="left < target < right"):
        triplet_alphas([(8, 0, 16)], "planes")


def test_per_sample_alpha_tensor_equals_one_call_per_sample():
    """Training passes one α per sample ([B, 1, 1, 1]); each sample gets what a scalar call gives it."""
    torch.manual_seed(0)
    z1, z2 = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    alphas = torch.tensor([0.125, 0.5, 0.875]).view(-1, 1, 1, 1)
    for rule in (interpolate_latents, extrapolate_sharp):
        got = rule([z1, z1[:, :2]], [z2, z2[:, :2]], alphas)
        for i, a in enumerate(alphas.flatten().tolist()):
            want = rule(z1[i], z2[i], a)
            torch.testing.assert_close(got[0][i], want)
            torch.testing.assert_close(got[1][i], want[:2])
