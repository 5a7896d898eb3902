"""inference: the Predictor (THE forward path) and the public API on a tiny trained model — loading,
BatchNorm fusion, Eq. 2/3 end to end, α limits, batching, precision, and ``stack`` normalization."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch
from helpers.infer_model import TINY, pair, tiny_checkpoint, train_tiny_checkpoint
from torch import nn

from blurlatent.config import ModelConfig
from blurlatent.errors import UsageError
from blurlatent.inference.predictor import Predictor, blur, deblur, fuse_batchnorm, load_model
from blurlatent.intensity import from_unit, intensity_range, to_unit, total_above_background
from blurlatent.nets.autoencoder import Autoencoder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def predictor(ckpt):
    return load_model(ckpt, "cpu")


def recon(predictor, x: np.ndarray) -> np.ndarray:
    """G(E(x)) straight through the network, x a [0, 1] float image of a size divisible by 8."""
    with torch.inference_mode():
        return predictor.model(torch.from_numpy(x)[None, None])[0, 0].numpy()


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm2d non-trivial running statistics and affine parameters (far from 0/1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(0.1 + 2.0 * torch.rand(n, generator=g))
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g))
    return model


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


# --- loading ---------------------------------------------------------------------------------------


def test_load_model_keeps_config_and_normalization(predictor):
    assert isinstance(predictor, Predictor)
    assert predictor.model.config.widths == TINY
    assert predictor.normalize == "minmax"
    assert not predictor.model.training


def test_load_model_honours_recorded_normalization(tmp_path):
    train_tiny_checkpoint(tmp_path / "p.pt", steps=1, normalize="percentile")
    assert load_model(tmp_path / "p.pt", "cpu").normalize == "percentile"
    train_tiny_checkpoint(tmp_path / "s.pt", steps=1, normalize="stack")  # refused before the re-layer
    assert load_model(tmp_path / "s.pt", "cpu").normalize == "stack"
    train_tiny_checkpoint(tmp_path / "bad.pt", steps=1, normalize="zscore")
    with pytest.raises(UsageError, match="normalize"):
        load_model(tmp_path / "bad.pt", "cpu")


# --- BatchNorm fusion ------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", ["conv", "transposed", "both"])
def test_fuse_batchnorm_equals_unfused_eval(kind, bias):
    """torch's fuse_conv_bn_eval, as fuse_batchnorm applies it, on BatchNorm with random statistics."""
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(1, 6, 3, stride=2, padding=1, bias=bias), nn.BatchNorm2d(6), nn.LeakyReLU(0.2))
    cin = 6 if kind == "both" else 1
    up = nn.Sequential(nn.ConvTranspose2d(cin, 3, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       nn.BatchNorm2d(3), nn.LeakyReLU(0.2))
    model = {"conv": nn.Sequential(conv), "transposed": nn.Sequential(up), "both": nn.Sequential(conv, up)}[kind]
    model = randomize_batchnorm(model, seed=1).eval()
    fused = fuse_batchnorm(copy.deepcopy(model))
    assert has_batchnorm(model) and not has_batchnorm(fused)
    assert sum(isinstance(m, nn.Identity) for m in fused.modules()) == (2 if kind == "both" else 1)
    plain = copy.deepcopy(model)
    for m in plain.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()  # mean 0, variance 1, weight 1, bias 0: (nearly) the identity
    x = torch.rand(2, 1, 16, 24)
    with torch.inference_mode():
        expected, got = model(x), fused(x)
        assert (expected - plain(x)).abs().max() > 0.1  # the random statistics really matter
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_predictor_fused_equals_unfused_on_random_statistics():
    model = randomize_batchnorm(Autoencoder(ModelConfig(widths=TINY)), seed=2).eval()
    fused, plain = Predictor(model, fuse=True), Predictor(model, fuse=False)
    assert not has_batchnorm(fused.model) and has_batchnorm(plain.model)
    sharp, blurry = pair(17)
    unit = np.stack([sharp, blurry])
    z_fused, z_plain = fused.encode(unit), plain.encode(unit)
    np.testing.assert_allclose(z_fused, z_plain, rtol=1e-5, atol=1e-5)
    hw = unit.shape[-2:]
    np.testing.assert_allclose(fused.decode(z_plain, hw), plain.decode(z_plain, hw), atol=1e-5)
    np.testing.assert_allclose(fused.combine(unit[:1], unit[1:], [0.5], "deblur"),
                               plain.combine(unit[:1], unit[1:], [0.5], "deblur"), atol=1e-5)


def test_fused_model_equals_unfused(ckpt, predictor):
    plain = load_model(ckpt, "cpu", fuse=False)
    assert has_batchnorm(plain.model)
    assert not has_batchnorm(predictor.model)
    refused = Predictor(plain.model, plain.normalize, fuse=True)  # fusing a copy of the unfused model
    assert not has_batchnorm(refused.model) and has_batchnorm(plain.model)
    sharp, blurry = pair(15)
    x = torch.from_numpy(np.stack([sharp, blurry]))[:, None]
    with torch.inference_mode():
        torch.testing.assert_close(predictor.model.encode(x), plain.model.encode(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(refused.model.encode(x), plain.model.encode(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(deblur(predictor, blurry, sharp, 0.5), deblur(plain, blurry, sharp, 0.5), atol=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_predictor_never_mutates_its_model(training):
    model = randomize_batchnorm(Autoencoder(ModelConfig(widths=TINY)), seed=3).train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {name: m.training for name, m in model.named_modules()}
    sharp, blurry = pair(18)
    outputs = []
    for fuse in (True, False):
        p = Predictor(model, fuse=fuse)
        assert p.model is not model and not p.model.training
        p.deblur(blurry, sharp, 0.5)
        p.blur(sharp, blurry, [0.25, 0.75])
        outputs.append(p.combine(blurry[None], sharp[None], [0.5], "deblur"))
    assert model.training == training
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert has_batchnorm(model)
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    assert model.encoder[0][0].weight.is_contiguous()  # not switched to channels_last
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key  # running statistics included: no forward in train mode
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-5)  # and both ran the eval-mode model
    eval_copy = copy.deepcopy(model).eval()
    np.testing.assert_array_equal(Predictor(eval_copy, fuse=False).combine(blurry[None], sharp[None], [0.5], "deblur"),
                                  outputs[1])


def test_api_accepts_a_bare_autoencoder(ckpt, predictor):
    bare = load_model(ckpt, "cpu", fuse=False).model  # an Autoencoder with BatchNorm, not a Predictor
    state = {k: v.clone() for k, v in bare.state_dict().items()}
    sharp, blurry = pair(19)
    levels = [0.25, 0.75]
    np.testing.assert_allclose(blur(bare, sharp, blurry, levels), blur(predictor, sharp, blurry, levels), atol=1e-5)
    np.testing.assert_allclose(deblur(bare, blurry, sharp, 0.5), deblur(predictor, blurry, sharp, 0.5), atol=1e-5)
    assert has_batchnorm(bare) and all(torch.equal(bare.state_dict()[k], v) for k, v in state.items())


# --- Eq. 2 / Eq. 3 through the model ---------------------------------------------------------------


def test_alpha_endpoints_equal_reconstructions(predictor):
    sharp, blurry = pair(1)
    out = blur(predictor, sharp, blurry, [1.0, 0.0], intensity="minmax")
    np.testing.assert_allclose(out[0], recon(predictor, sharp), atol=1e-5)
    np.testing.assert_allclose(out[1], recon(predictor, blurry), atol=1e-5)
    # deblur with α = 0 is the less-blurry input's reconstruction
    at_zero = deblur(predictor, blurry, sharp, 0.0, intensity="minmax")
    np.testing.assert_allclose(at_zero, recon(predictor, sharp), atol=1e-5)
    assert np.abs(out[0] - out[1]).max() > 0.05  # the two endpoints really differ


def test_blur_midpoint_decodes_the_mixed_latent(predictor):
    sharp, blurry = pair(2)
    with torch.inference_mode():
        z = predictor.model.encode(torch.from_numpy(np.stack([sharp, blurry]))[:, None])
        expected = predictor.model.decode(0.25 * z[:1] + 0.75 * z[1:])[0, 0].numpy()
    np.testing.assert_allclose(blur(predictor, sharp, blurry, 0.25, intensity="minmax"), expected, atol=1e-5)


def test_deblur_alpha_limits(predictor, caplog):
    sharp, blurry = pair(4)
    for bad in (1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(UsageError, match="alpha"):
            deblur(predictor, blurry, sharp, bad)
    with caplog.at_level(logging.WARNING, logger="blurlatent.nets.latent"):
        deblur(predictor, blurry, sharp, 0.875)  # gain exactly 8: allowed silently (the self-check may speak)
        assert not [r for r in caplog.records if r.name == "blurlatent.nets.latent"]
        deblur(predictor, blurry, sharp, 0.9)  # gain 10
    assert any("amplifies" in r.message for r in caplog.records)


def test_blur_alpha_outside_unit_needs_extrapolate(predictor):
    sharp, blurry = pair(5)
    with pytest.raises(UsageError, match="extrapolate"):
        blur(predictor, sharp, blurry, [0.5, 1.25])
    out = blur(predictor, sharp, blurry, [1.25, -0.5], extrapolate=True, intensity="minmax", out_dtype="float32")
    assert out.shape == (2,) + sharp.shape


def test_batched_pairs_equal_single(predictor):
    a1, b1 = pair(9)
    a2, b2 = pair(10)
    both = predictor.with_options(batch_size=3).combine(np.stack([a1, a2]), np.stack([b1, b2]), [0.3, 0.6], "blur")
    one = predictor.combine(a2[None], b2[None], [0.3, 0.6], "blur")
    np.testing.assert_allclose(both[1], one[0], atol=1e-6)


def test_bad_arrays_refused(predictor):
    sharp, blurry = pair(14)
    with pytest.raises(UsageError, match="shape"):
        blur(predictor, np.stack([sharp] * 3, axis=-1), blurry, 0.5)
    with pytest.raises(UsageError, match="blurry"):
        blur(predictor, sharp, blurry[:-8], 0.5)
    with pytest.raises(UsageError, match="intensity"):
        deblur(predictor, blurry, sharp, 0.5, intensity="percentile")
    with pytest.raises(UsageError, match="precision"):
        deblur(predictor, blurry, sharp, 0.5, precision="fp8")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_is_opt_in_and_close(predictor, precision):
    sharp, blurry = pair(16)
    exact = deblur(predictor, blurry, sharp, 0.5, intensity="minmax")
    assert np.array_equal(deblur(predictor, blurry, sharp, 0.5, intensity="minmax", precision="auto"), exact)
    low = deblur(predictor, blurry, sharp, 0.5, intensity="minmax", precision=precision)
    assert low.dtype == exact.dtype
    assert 0 < np.abs(low - exact).max() < 0.1  # autocast really ran, and stays near fp32


# --- stack normalization ---------------------------------------------------------------------------


def counts(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A sharp uint16 plane and its blurrier partner with 60 % of the contrast (BBBC006-like counts)."""
    sharp, blurry = pair(seed)
    return (110 + 900 * sharp).astype(np.uint16), (110 + 540 * blurry).astype(np.uint16)


def test_stack_pair_shares_the_scale_of_the_input_nearer_focus(tmp_path_factory):
    p = load_model(tiny_checkpoint(tmp_path_factory, "stack"), "cpu")
    assert p.normalize == "stack"
    sharp, blurry = counts(20)
    assert intensity_range(sharp, "percentile") != pytest.approx(intensity_range(blurry, "percentile"))
    cases = {"deblur": ((blurry, sharp), sharp), "blur": ((sharp, blurry), sharp)}
    for rule, ((first, second), near_focus) in cases.items():
        sa, sb = p.pair_scales(first, second, rule)
        assert (sa.lo, sa.hi) == (sb.lo, sb.hi) == pytest.approx(intensity_range(near_focus, "percentile")), rule
        # the conserve references stay each input's own light
        assert sa.total == pytest.approx(total_above_background(first))
        assert sb.total == pytest.approx(total_above_background(second))
    other = Predictor(p.model, "percentile").pair_scales(blurry, sharp, "deblur")
    assert (other[0].lo, other[0].hi) == pytest.approx(intensity_range(blurry, "percentile"))  # each its own


def test_stack_deblur_end_to_end(tmp_path_factory):
    p = load_model(tiny_checkpoint(tmp_path_factory, "stack"), "cpu")
    p = p.with_options(intensity="minmax", out_dtype="float32")
    sharp, blurry = counts(21)
    lo, hi = intensity_range(sharp, "percentile")
    unit = p.combine(to_unit(blurry, lo, hi)[None], to_unit(sharp, lo, hi)[None], [0.5], "deblur")[0, 0]
    assert to_unit(blurry, lo, hi).max() < 0.8  # the blurrier plane keeps its lower contrast on the shared scale
    np.testing.assert_allclose(p.deblur(blurry, sharp, 0.5), from_unit(unit, lo, hi, np.float32), rtol=1e-6, atol=1e-3)
    conserved = deblur(p, blurry, sharp, 0.5, intensity="conserve")
    assert conserved.dtype == np.uint16
    assert total_above_background(conserved) == pytest.approx(total_above_background(sharp), rel=0.01)
