"""Metrics against oracles: scikit-image, the official focal-frequency-loss package, closed forms."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from blurlatent.errors import UsageError
from blurlatent.evaluation import metrics as M


@pytest.fixture
def pair():
    rng = np.random.RandomState(0)
    target = rng.rand(4, 32, 32)
    pred = np.clip(target + 0.05 * rng.randn(4, 32, 32), 0, 1)
    return pred, target


def test_psnr_matches_scikit_image(pair):
    pred, target = pair
    for p, t in zip(pred, target, strict=True):
        assert M.psnr(p, t) == pytest.approx(peak_signal_noise_ratio(t, p, data_range=1.0), rel=1e-12)
    expected = [peak_signal_noise_ratio(t, p, data_range=1.0) for p, t in zip(pred, target, strict=True)]
    np.testing.assert_allclose(M.psnr_per_image(pred, target), expected, rtol=1e-12)
    assert M.psnr(target[0], target[0]) == float("inf")
    with pytest.raises(UsageError, match="shape"):
        M.psnr(pred[0], target[0, :16])


def test_pooled_psnr_is_one_figure_over_the_set_with_range_from_targets():
    # Two images with MSE 1e-2 and 1e-4: per-image PSNRs 20 and 40 dB (mean 30), pooled MSE 5.05e-3.
    target = np.zeros((2, 10, 10))
    target[:, 0, 0] = 1.0  # target range 1
    pred = target.copy()
    pred[0] += 0.1
    pred[1] += 0.01
    assert M.psnr_per_image(pred, target).mean() == pytest.approx(30.0)
    assert M.psnr_pooled(pred, target) == pytest.approx(10 * np.log10(1.0 / 5.05e-3))
    # The range comes from the targets, not from a fixed 1.0: targets spanning [0.2, 0.7] → range 0.5.
    t2 = 0.2 + 0.5 * target
    assert M.psnr_pooled(t2 + 0.01, t2) == pytest.approx(10 * np.log10(0.25 / 1e-4))
    # Batching does not change it.
    acc = M.PooledPSNR()
    acc.update(pred[:1], target[:1])
    acc.update(pred[1:], target[1:])
    assert acc.compute() == pytest.approx(M.psnr_pooled(pred, target), rel=1e-12)
    assert M.PooledPSNR().compute() is None


def test_ssim_matches_scikit_image(pair):
    pred, target = pair
    for p, t in zip(pred, target, strict=True):
        assert M.ssim(p, t) == pytest.approx(structural_similarity(t, p, data_range=1.0), rel=1e-12)
    expected = [structural_similarity(t, p, data_range=1.0) for p, t in zip(pred, target, strict=True)]
    np.testing.assert_allclose(M.ssim_per_image(pred, target), expected)
    with pytest.raises(UsageError, match="at least 7x7"):  # a usage error, not scikit-image's bare ValueError
        M.ssim(pred[0, :6, :6], target[0, :6, :6])


def test_calibrated_figures_remove_gain_and_offset_only(pair):
    pred, target = pair
    # A wrong gain/offset alone: the raw PSNR is poor, the calibrated one perfect.
    scaled = 0.5 * target + 0.3
    assert M.psnr_per_image(scaled, target).max() < 20
    assert np.all(M.psnr_calibrated(scaled, target) > 100)
    np.testing.assert_allclose(M.ssim_calibrated(scaled, target), 1.0, atol=1e-9)
    # On a noisy prediction it equals the PSNR of the least-squares line fitted independently.
    for p, t in zip(pred, target, strict=True):
        a, b = np.polyfit(p.ravel(), t.ravel(), 1)
        expected = peak_signal_noise_ratio(t, a * p + b, data_range=1.0)
        assert float(M.psnr_calibrated(p, t)) == pytest.approx(expected, rel=1e-9)
    # Structure errors survive calibration: blur cannot be calibrated away.
    from scipy.ndimage import gaussian_filter

    blurred = gaussian_filter(target, (0, 2, 2))
    assert M.psnr_calibrated(blurred, target).mean() < 30
    # A flat prediction is fitted by the target's mean.
    np.testing.assert_allclose(M.calibrate(np.ones((8, 8)), target[0, :8, :8]), target[0, :8, :8].mean())


def test_ffl_equals_the_official_package(pair):
    from focal_frequency_loss import FocalFrequencyLoss

    pred, target = pair
    as_nchw = [torch.tensor(a[:, None], dtype=torch.float32) for a in (pred, target)]
    official = float(FocalFrequencyLoss()(*as_nchw))
    assert M.ffl(pred, target) == pytest.approx(official, rel=1e-6)
    # Per-image weights are normalised per image, so the batch loss is the mean of per-image losses.
    assert M.ffl_per_image(pred, target).mean() == pytest.approx(official, rel=1e-5)
    assert M.ffl(target, target) == 0.0
    assert M.ffl(pred, target) > 0


def test_lds_and_apd_zero_for_linear_latents():
    rng = np.random.RandomState(1)
    z0, z16 = rng.randn(3, 4, 2, 2), rng.randn(3, 4, 2, 2)
    alphas = np.arange(0, 17, 2) / 16
    seq = np.stack([a * z16 + (1 - a) * z0 for a in alphas], 1)  # [M, 9, C, h, w]: linear by construction
    assert M.lds(seq[:, 1:-1], seq[:, 1:-1]) == pytest.approx(1.0)
    assert M.apd(seq, seq) == pytest.approx(0.0, abs=1e-15)


def test_lds_and_apd_known_values_for_a_curved_path():
    # Sequence z0=(1,0), z1, z2=(0,1); Eq. 2 puts z'1 at (0.5, 0.5).
    z0, z2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    interp = np.stack([z0, (z0 + z2) / 2, z2])[None]
    # z1 = (1, 1): same direction as z'1 (cos 1) but twice as far out; d = 0.5, 0.5 vs 0.25, 0.25.
    true = np.stack([z0, np.array([1.0, 1.0]), z2])[None]
    assert M.lds(interp[:, 1:2], true[:, 1:2]) == pytest.approx(1.0)
    assert M.apd(interp, true) == pytest.approx(0.25)
    # z1 = (1, -1): orthogonal to z'1 (cos 0); d = 0.5, 2.5 vs 0.25, 0.25 → APD (0.25 + 2.25) / 2.
    true = np.stack([z0, np.array([1.0, -1.0]), z2])[None]
    assert M.lds(interp[:, 1:2], true[:, 1:2]) == pytest.approx(0.0, abs=1e-12)
    assert M.apd(interp, true) == pytest.approx(1.25)
    # Two fields: the per-field values are averaged.
    both_i, both_t = np.concatenate([interp, interp]), np.concatenate([np.stack([z0, [1.0, 1.0], z2])[None], true])
    np.testing.assert_allclose(M.apd_per_field(both_i, both_t), [0.25, 1.25])
    assert M.apd(both_i, both_t) == pytest.approx(0.75)
    with pytest.raises(UsageError, match="APD"):
        M.apd(interp, true[:, :2])


def test_frechet_distance_closed_form_for_gaussians():
    # 1-D: (mu1 - mu2)^2 + (s1 - s2)^2 with s the standard deviations.
    assert M.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)
    # Diagonal covariances: ||dmu||^2 + sum(v1 + v2 - 2 sqrt(v1 v2)).
    rng = np.random.RandomState(2)
    mu1, mu2 = rng.randn(5), rng.randn(5)
    v1, v2 = rng.rand(5) + 0.1, rng.rand(5) + 0.1
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert M.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)
    # Equal covariances: the squared distance of the means (pytorch-fid's own oracle).
    a = rng.randn(6, 6)
    cov = a @ a.T
    same_cov = M.frechet_distance(mu1[:1].repeat(6), cov, mu2[:1].repeat(6), cov)
    assert same_cov == pytest.approx(6 * (mu1[0] - mu2[0]) ** 2, abs=1e-8)
    # General full covariances: pytorch-fid's implementation agrees.
    from pytorch_fid.fid_score import calculate_frechet_distance

    b = rng.randn(6, 6)
    cov2 = b @ b.T + np.eye(6)
    m1, m2 = rng.randn(6), rng.randn(6)
    expected = calculate_frechet_distance(m1, cov, m2, cov2)
    assert M.frechet_distance(m1, cov, m2, cov2) == pytest.approx(expected, rel=1e-6)
    # Singular covariances (fewer samples than dimensions) still give a finite value.
    f1, f2 = rng.randn(3, 10), rng.randn(3, 10) + 1
    assert np.isfinite(M.fid_from_features(f1, f2))


def test_fid_path_with_a_stand_in_extractor():
    seen = []

    def extractor(batch):
        seen.append(tuple(batch.shape))
        assert torch.equal(batch[:, 0], batch[:, 1]) and torch.equal(batch[:, 0], batch[:, 2])  # grayscale ×3
        return torch.stack([batch.mean(dim=(1, 2, 3)), batch.std(dim=(1, 2, 3))], 1)

    rng = np.random.RandomState(3)
    a = rng.rand(10, 16, 16) * 0.5
    b = rng.rand(10, 16, 16)
    fa = M.extract_features(a, extractor, batch_size=4)
    assert fa.shape == (10, 2) and seen[0] == (4, 3, 16, 16)
    np.testing.assert_allclose(fa[:, 0], a.reshape(10, -1).mean(1), rtol=1e-5)
    fb = M.extract_features(b[:, None], extractor)
    assert M.fid_from_features(fa, fa) == pytest.approx(0.0, abs=1e-9)
    expected = M.frechet_distance(*M.activation_statistics(fa), *M.activation_statistics(fb))
    assert M.fid_from_features(fa, fb) == pytest.approx(expected) and expected > 0.01


def test_fid_unavailable_gives_the_fix_and_never_downloads(tmp_path, monkeypatch):
    from pytorch_fid import inception as fid_inception

    def no_download(*args, **kwargs):
        raise AssertionError("pytorch-fid tried to download")

    monkeypatch.setattr(fid_inception, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(M.FidUnavailable) as err:
        M.inception_extractor(None)
    msg = str(err.value)
    assert M.FID_WEIGHTS_URL in msg and "fid_weights=" in msg and str(tmp_path / "hub" / "checkpoints") in msg
    with pytest.raises(M.FidUnavailable, match="missing.pth"):
        M.inception_extractor(tmp_path / "missing.pth")
    # A file of the right name in the hub cache is found; a wrong file is refused by its hash, not used.
    cached = tmp_path / "hub" / "checkpoints" / M.FID_WEIGHTS_NAME
    cached.parent.mkdir(parents=True)
    torch.save({}, cached)
    assert M.find_fid_weights() == cached
    with pytest.raises(M.FidUnavailable, match="sha256"):
        M.inception_extractor(None)
    # Past the hash check, pytorch-fid reads the local file through our loader (an empty state dict here)
    # and the failure is reported, not raised as a crash; its own downloader is restored afterwards.
    with pytest.raises(M.FidUnavailable, match="could not be loaded"):
        M.inception_extractor(cached, check_hash=False)
    assert fid_inception.load_state_dict_from_url is no_download
