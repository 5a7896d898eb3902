"""multiscale.py: the multiscale autoencoder — shapes per ``skips``, Eq. 3 inverting Eq. 2 at every scale,
the receptive radius measured from gradients, no checkerboard on a flat field (a check that fails for the
paper's transposed-conv decoder), BatchNorm folding, the config's arch, the deblur loss learning, and
export of the new arch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.train_store import make_store, tiny_config

from blurlatent.config import MULTISCALE_WIDTHS, PAPER_WIDTHS, ModelConfig, TrainConfig, from_dict, model_config
from blurlatent.errors import UsageError
from blurlatent.inference.predictor import fuse_batchnorm
from blurlatent.nets.autoencoder import Autoencoder, build_autoencoder
from blurlatent.nets.checkpoint import build_model, load_checkpoint
from blurlatent.nets.latent import extrapolate_sharp, interpolate_latents
from blurlatent.nets.multiscale import MultiScaleAutoencoder, multiscale_receptive_radius
from blurlatent.training.losses import loss_terms
from blurlatent.training.trainer import train

SKIPS = ("coarse", "all", "gated", "quarter")
FINEST = {"coarse": 1, "all": 0, "gated": 0, "quarter": 2}  # the finest scale each keeps in the latent


def calibrated(widths, skips="coarse", seed=0) -> torch.nn.Module:
    """A multiscale net with BatchNorm statistics from a few random batches, in eval mode."""
    torch.manual_seed(seed)
    model = build_autoencoder(ModelConfig(arch="multiscale", widths=list(widths), skips=skips))
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(4, 1, 32, 32))
    return model.eval()


@pytest.mark.parametrize("skips", SKIPS)
def test_shapes_per_scale(skips):
    model = calibrated([4, 8, 8], skips)
    assert isinstance(model, MultiScaleAutoencoder) and model.multiple == 4
    z = model.encode(torch.rand(2, 1, 32, 48))
    first = FINEST[skips]
    assert [tuple(t.shape) for t in z] == [(2, w, 32 >> s, 48 >> s) for s, w in enumerate([4, 8, 8])][first:]
    y = model.decode(z)
    y = y.detach()
    assert y.shape == (2, 1, 32, 48) and float(y.min()) >= 0 and float(y.max()) <= 1
    with pytest.raises(UsageError, match="not divisible by 2\\*\\*stages = 4"):
        model.encode(torch.rand(1, 1, 30, 32))


@pytest.mark.parametrize("skips", SKIPS)
def test_eq3_inverts_eq2_at_every_scale(skips):
    model = calibrated([4, 8, 8], skips)
    with torch.no_grad():
        z_sharp = model.encode(torch.rand(3, 1, 32, 32).double().float())
        z_blur = model.encode(torch.rand(3, 1, 32, 32))
    z_sharp, z_blur = [t.double() for t in z_sharp], [t.double() for t in z_blur]
    for alpha in (0.125, 0.5, 0.875):
        mixed = interpolate_latents(z_sharp, z_blur, alpha)  # Eq. 2's weight on the sharp end is α
        back = extrapolate_sharp(z_blur, mixed, 1 - alpha)  # Eq. 3's α is the blurriest plane's weight
        assert isinstance(mixed, list) and len(back) == len(z_sharp)
        for s, (b, t) in enumerate(zip(back, z_sharp, strict=True)):
            torch.testing.assert_close(b, t, rtol=0, atol=1e-12, msg=f"scale {s}")
            torch.testing.assert_close(mixed[s], alpha * t + (1 - alpha) * z_blur[s], rtol=0, atol=1e-15)


@pytest.mark.parametrize("widths", [[4, 8], [4, 8, 8], [4, 4, 8, 8]])
def test_receptive_radius_is_the_gradient_reach(widths):
    """The tiling margin rests on this: the reach (every phase of the stride grid) is 7 (m − 1) + 3 px."""
    model = calibrated(widths, "all")
    m = model.multiple
    assert model.radius == multiscale_receptive_radius(len(widths)) == 7 * (m - 1) + 4
    x = torch.full((1, 1, 24 * m, 24 * m), 0.5, requires_grad=True)
    reach = 0
    for d in range(m):
        x.grad = None
        c = 12 * m + d
        model(x)[0, 0, c, c].backward()
        ys, xs = np.nonzero(x.grad[0, 0].abs().numpy() > 0)
        reach = max(reach, c - ys.min(), ys.max() - c, c - xs.min(), xs.max() - c)
    assert reach == model.radius - 1


def stride_peak(model: torch.nn.Module, size: int = 160, crop: int = 64, seed: int = 0) -> float:
    """How much the output of a flat field (0.5 plus faint noise) peaks at the stride periods 2, 4, 8 px:
    the mean power over the Fourier bins of those periods (both axes, DC left out) divided by the mean
    power of their neighbouring bins, on an interior crop (no border effects), averaged over 8 fields.
    A smooth spectrum gives ~1; a checkerboard puts its energy exactly on those bins."""
    g = torch.Generator().manual_seed(seed)
    x = 0.5 + 0.01 * torch.randn(8, 1, size, size, generator=g)
    with torch.no_grad():
        y = model(x)[:, 0].double().numpy()
    o = (size - crop) // 2 // 8 * 8
    y = y[:, o:o + crop, o:o + crop]
    power = (np.abs(np.fft.fft2(y - y.mean(axis=(1, 2), keepdims=True))) ** 2).mean(0)
    k = np.arange(crop)
    on = np.logical_and.outer(k % (crop // 8) == 0, k % (crop // 8) == 0)  # periods 8, 4, 2 and harmonics
    on[0, 0] = False
    near = np.zeros_like(on)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= np.roll(np.roll(on, dy, 0), dx, 1)
    near &= ~on
    near[0, 0] = False
    return float(power[on].mean() / power[near].mean())


@pytest.mark.parametrize("skips", SKIPS)
def test_no_checkerboard_on_a_flat_field(skips):
    ratio = stride_peak(calibrated([4, 8, 8, 8], skips))
    assert ratio < 3, ratio


def test_the_checkerboard_check_fails_for_transposed_convs():
    """The same check on the paper's decoder (stride-2 transposed convs), random weights: a clear peak."""
    torch.manual_seed(0)
    paper = Autoencoder(ModelConfig(widths=[4, 8, 8, 8])).eval()
    assert stride_peak(paper) > 10


def test_batchnorm_folds_into_the_convs():
    model = calibrated([4, 8, 8], "gated")
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        ref = model(x)
        fused = fuse_batchnorm(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
        torch.testing.assert_close(fused(x), ref, rtol=1e-5, atol=1e-6)


def test_quarter_needs_three_scales():
    with pytest.raises(UsageError, match="skips quarter needs at least 3 scales"):
        ModelConfig(arch="multiscale", widths=[4, 8], skips="quarter").check()
    ModelConfig(arch="multiscale", widths=[4, 8, 8], skips="quarter").check()


def test_config_arch_and_default_widths():
    assert ModelConfig().arch == "multiscale" and ModelConfig().widths == list(MULTISCALE_WIDTHS)
    assert ModelConfig().skips == "quarter" and ModelConfig(arch="paper").widths == list(PAPER_WIDTHS)
    assert model_config({"model": {"widths": [4, 8]}}).arch == "paper"  # an old checkpoint's config (version 1)
    assert from_dict(ModelConfig, {"arch": "multiscale"}).widths == list(MULTISCALE_WIDTHS)
    with pytest.raises(UsageError, match="arch unet: use one of paper, multiscale"):
        from_dict(ModelConfig, {"arch": "unet"}, source="")
    with pytest.raises(UsageError, match="needs 2 to"):
        ModelConfig(arch="multiscale", widths=[8]).check()
    with pytest.raises(UsageError, match="deblur_weight -1"):
        TrainConfig(deblur_weight=-1.0).check_ranges()
    with pytest.raises(UsageError, match=r"deblur_weight 1 needs data.alpha > 0.*give deblur_weight=0"):
        from_dict(TrainConfig, {"deblur_weight": 1.0, "data": {"alpha": 0.0}}).check()


def test_multiscale_latent_flops_within_the_paper_budget():
    """Per 696x520 deblur (two encodes, one decode) the multiscale net `train` builds by default (its default
    widths, skips quarter from its recipe) costs less than the paper's."""
    macs = {}
    for arch, skips in (("paper", "coarse"), ("multiscale", "quarter")):
        model, count = build_autoencoder(ModelConfig(arch=arch, skips=skips)), []
        convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        hooks = [c.register_forward_hook(lambda mod, i, o, count=count: count.append(
            mod.weight.numel() * (i[0] if mod.transposed else o).shape[-2:].numel()))
            for c in convs]
        with torch.device("meta"):
            model.to("meta")
            m = model.multiple
            z = model.encode(torch.zeros(1, 1, -(-520 // m) * m, -(-696 // m) * m))  # padded as the Predictor pads
            enc = sum(count)
            model.decode(z)
        for h in hooks:
            h.remove()
        macs[arch] = enc + sum(count)
    assert 2 * macs["paper"] / 1e9 == pytest.approx(50.1, abs=0.05)
    assert 2 * macs["multiscale"] / 1e9 == pytest.approx(40.2, abs=0.05)  # docs/benchmarks.md, Quality
    assert macs["multiscale"] < 0.85 * macs["paper"]


def test_deblur_loss_decreases_on_a_tiny_problem():
    """Eq. 3's output approaches the sharp plane: 40 Adam steps of weak + deblur on one fixed batch."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    sharp = np.stack([gaussian_filter(rng.random((32, 32)), 1.0) for _ in range(4)])
    sharp = (sharp - sharp.min()) / np.ptp(sharp)
    planes = [np.stack([gaussian_filter(s, sigma) for s in sharp]) for sigma in (3.0, 1.5, 0.0)]
    left, target, right = (torch.from_numpy(p.astype(np.float32))[:, None] for p in planes)
    torch.manual_seed(0)
    model = build_autoencoder(ModelConfig(arch="multiscale", widths=[4, 8, 8], skips="coarse"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = []
    for _ in range(40):
        terms = loss_terms(model, left, target, right, "weak", 0.5, deblur_weight=1.0)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        history.append(terms["deblur"].item())
    assert set(terms) == {"loss", "recon", "interp", "deblur"}
    assert np.mean(history[-5:]) < 0.6 * np.mean(history[:5]), history


def test_train_save_load_resume_with_arch(tmp_path):
    """A multiscale run records its arch; best.pt rebuilds the same net; a resumed run ends bit for bit where
    an uninterrupted one does."""
    store = make_store(tmp_path / "prepared")
    model = ModelConfig(arch="multiscale", widths=[4, 8, 8], skips="gated")

    def config(epochs):
        cfg = tiny_config(store, epochs=epochs, reg="weak", deblur_weight=0.5)
        cfg.model = model
        return cfg

    train(config(2), tmp_path / "whole", progress=False)
    train(config(1), tmp_path / "split", progress=False)
    train(config(2), tmp_path / "split", resume=True, progress=False)
    whole, split = (load_checkpoint(tmp_path / run / "last.pt") for run in ("whole", "split"))
    assert whole["config"]["model"] == split["config"]["model"]
    assert whole["config"]["model"]["arch"] == "multiscale" and whole["config"]["model"]["skips"] == "gated"
    assert all(torch.equal(whole["model"][k], split["model"][k]) for k in whole["model"])
    assert "val_deblur" in whole["metrics"] and "train_deblur" in whole["metrics"]
    net = build_model(load_checkpoint(tmp_path / "whole" / "best.pt"))
    assert isinstance(net, MultiScaleAutoencoder) and net.config == model


def test_export_of_the_multiscale_arch(tmp_path):
    """The bioimage.io package's TorchScript and ONNX weights of the new arch match the Predictor."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("bioimageio.spec")
    from blurlatent.bmz.package import export_package
    from blurlatent.config import to_dict
    from blurlatent.nets.checkpoint import save_checkpoint

    model = calibrated([4, 8, 8], "gated")
    ckpt = tmp_path / "ms.pt"
    save_checkpoint(ckpt, {"config": {"model": to_dict(model.config), "data": {"normalize": "minmax"}},
                           "model": model.state_dict(), "epoch": 0})
    result = export_package(ckpt, tmp_path / "ms.zip", alpha=0.5)
    assert max(result.max_diff.values()) < 1e-4 and (tmp_path / "ms.zip").is_file()
