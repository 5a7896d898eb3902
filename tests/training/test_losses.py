"""losses.py: every loss term worked out by hand, and the batched step against the paper's separate calls."""

from __future__ import annotations

import pytest
import torch
from helpers.train_store import TINY

from blurlatent.config import ModelConfig
from blurlatent.errors import UsageError
from blurlatent.nets.autoencoder import Autoencoder, build_autoencoder
from blurlatent.training.losses import LossModule, loss_terms, term_names


class Linear:
    """E(x) = 2x, G(z) = z/4: every loss term is a number one can work out on paper."""

    def encode(self, x):
        return 2 * x

    def decode(self, z):
        return z / 4


def _const(v, shape=(3, 1, 4, 4)):
    return torch.full(shape, float(v))


@pytest.mark.parametrize("reg, alpha, expected", [
    # x_l = 0.2, x_t = 0.4, x_r = 1.0 → z_l = 0.4, z_r = 2.0; recon = ½(|0.1 − 0.2| + |0.5 − 1.0|) = 0.3
    ("none", 0.5, {"recon": 0.3, "loss": 0.3}),
    # z' = 1.2 → G = 0.3: interp = |0.3 − 0.4| = 0.1
    ("weak", 0.5, {"recon": 0.3, "interp": 0.1, "loss": 0.4}),
    # E(x_t) = 0.8: latent = |1.2 − 0.8| = 0.4
    ("strong", 0.5, {"recon": 0.3, "interp": 0.1, "latent": 0.4, "loss": 0.8}),
    # α = 0.25: z' = 0.25·2 + 0.75·0.4 = 0.8 → G = 0.2, interp = 0.2, latent = 0
    ("strong", 0.25, {"recon": 0.3, "interp": 0.2, "latent": 0.0, "loss": 0.5}),
])
def test_loss_terms_by_hand(reg, alpha, expected):
    terms = loss_terms(Linear(), _const(0.2), _const(0.4), _const(1.0), reg, alpha)
    assert set(terms) == set(expected) == set(term_names(reg))
    for key, value in expected.items():
        assert float(terms[key]) == pytest.approx(value, abs=1e-6), key


def test_all_terms_logged_but_loss_is_the_runs_objective():
    terms = loss_terms(Linear(), _const(0.2), _const(0.4), _const(1.0), "none", all_terms=True)
    assert float(terms["interp"]) == pytest.approx(0.1) and float(terms["latent"]) == pytest.approx(0.4)
    assert float(terms["loss"]) == pytest.approx(0.3)
    with pytest.raises(UsageError, match=r"reg .?medium"):
        loss_terms(Linear(), _const(0), _const(0), _const(0), "medium")


def test_batched_step_equals_separate_calls():
    """One encoder and one decoder call give what the paper's three separate calls give (eval-mode BN)."""
    torch.manual_seed(1)
    model = Autoencoder(ModelConfig(widths=TINY)).eval()
    xl, xt, xr = (torch.rand(4, 1, 32, 32) for _ in range(3))
    with torch.no_grad():
        got = loss_terms(model, xl, xt, xr, "strong", 0.5)
        zl, zr, zt = model.encode(xl), model.encode(xr), model.encode(xt)
        zi = 0.5 * zr + 0.5 * zl
        recon = 0.5 * ((model.decode(zl) - xl).abs().mean() + (model.decode(zr) - xr).abs().mean())
        interp = (model.decode(zi) - xt).abs().mean()
        latent = (zi - zt).abs().mean()
        module = LossModule(model, "strong", 0.5)(xl, xt, xr)
    torch.testing.assert_close(got["recon"], recon, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got["interp"], interp, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got["latent"], latent, rtol=1e-5, atol=1e-7)
    assert all(torch.equal(module[k], got[k]) for k in got)  # the module DDP wraps is the same step


class Counting(torch.nn.Module):
    """A model's encode/decode, counting the calls."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, {"encode": 0, "decode": 0}

    def encode(self, x):
        self.calls["encode"] += 1
        return self.model.encode(x)

    def decode(self, z):
        self.calls["decode"] += 1
        return self.model.decode(z)


def test_deblur_term_by_hand():
    # Linear: z_l = 0.4, z_t = 0.8, α' = 1 − 0.5: Eq. 3 = 0.8/0.5 − 0.4 = 1.2 → G = 0.3; deblur = |0.3 − 1.0| = 0.7
    terms = loss_terms(Linear(), _const(0.2), _const(0.4), _const(1.0), "weak", 0.5, deblur_weight=2.0)
    assert set(terms) == set(term_names("weak", 2.0)) == {"loss", "recon", "interp", "deblur"}
    assert float(terms["deblur"]) == pytest.approx(0.7, abs=1e-6)
    assert float(terms["loss"]) == pytest.approx(0.3 + 0.1 + 2 * 0.7, abs=1e-6)
    with pytest.raises(UsageError, match="alpha 1.0 is outside"):
        loss_terms(Linear(), _const(0.2), _const(0.4), _const(1.0), "none", 0.0, deblur_weight=1.0)


@pytest.mark.parametrize("skips", ["coarse", "gated"])
def test_multiscale_step_equals_separate_calls(skips):
    """List latents: one encoder and one decoder call; Eq. 2/3 per scale; the latent term is the mean over
    scales of each scale's L1 (eval-mode BN)."""
    torch.manual_seed(2)
    model = build_autoencoder(ModelConfig(arch="multiscale", widths=[4, 8, 8], skips=skips)).eval()
    counting = Counting(model)
    xl, xt, xr = (torch.rand(3, 1, 32, 32) for _ in range(3))
    with torch.no_grad():
        got = loss_terms(counting, xl, xt, xr, "strong", 0.25, deblur_weight=0.5)
        zl, zr, zt = model.encode(xl), model.encode(xr), model.encode(xt)
        zi = [0.25 * r + 0.75 * l for l, r in zip(zl, zr, strict=True)]  # noqa: E741
        zd = [t / 0.25 - 0.75 / 0.25 * l for l, t in zip(zl, zt, strict=True)]  # noqa: E741
        interp = (model.decode(zi) - xt).abs().mean()
        latent = sum((a - b).abs().mean() for a, b in zip(zi, zt, strict=True)) / len(zi)
        deblur = (model.decode(zd) - xr).abs().mean()
    assert counting.calls == {"encode": 1, "decode": 1}
    torch.testing.assert_close(got["interp"], interp, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["latent"], latent, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["deblur"], deblur, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["loss"], got["recon"] + got["interp"] + got["latent"] + 0.5 * got["deblur"])


def test_per_sample_alpha_by_hand_and_equal_to_one_call_per_sample():
    """Uneven triplets: each sample's α in the interp, latent and deblur terms (Linear by hand, then a real
    multiscale net in eval mode against one call per sample)."""
    # Linear, α = (0.5, 0.25): interp (0.1 + 0.2) / 2; latent (0.4 + 0) / 2; deblur α' = (0.5, 0.75):
    # Eq. 3 = 0.8/0.5 − 0.4 = 1.2 → G 0.3 → 0.7, and 0.8/0.25 − 3·0.4 = 2.0 → G 0.5 → 0.5
    alpha = torch.tensor([0.5, 0.25])
    terms = loss_terms(Linear(), _const(0.2, (2, 1, 4, 4)), _const(0.4, (2, 1, 4, 4)), _const(1.0, (2, 1, 4, 4)),
                       "strong", alpha, deblur_weight=1.0)
    for key, value in {"interp": 0.15, "latent": 0.2, "deblur": 0.6}.items():
        assert float(terms[key]) == pytest.approx(value, abs=1e-6), key
    torch.manual_seed(3)
    model = build_autoencoder(ModelConfig(arch="multiscale", widths=[4, 8, 8])).eval()
    xl, xt, xr = (torch.rand(3, 1, 32, 32) for _ in range(3))
    alpha = torch.tensor([0.125, 0.5, 0.875])
    with torch.no_grad():
        got = loss_terms(model, xl, xt, xr, "strong", alpha, deblur_weight=1.0)
        one = [loss_terms(model, xl[i:i + 1], xt[i:i + 1], xr[i:i + 1], "strong", float(alpha[i]), deblur_weight=1.0)
               for i in range(3)]
    for key in ("recon", "interp", "deblur"):  # pixel L1 means: the batch's is the mean of the samples'
        torch.testing.assert_close(got[key], torch.stack([o[key] for o in one]).mean(), rtol=1e-5, atol=1e-6)
