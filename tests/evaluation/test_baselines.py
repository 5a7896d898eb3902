"""baselines: a Gaussian PSF fitted per plane recovers a known blur; RL and Wiener undo it."""

import numpy as np
import pytest
from helpers.eval_data import field
from scipy.ndimage import gaussian_filter

from blurlatent.errors import UsageError
from blurlatent.evaluation import baselines as B
from blurlatent.evaluation import metrics as M
from blurlatent.evaluation.plan import plan_planes


@pytest.fixture(scope="module")
def known_psf():
    rng = np.random.RandomState(4)
    sharp = np.stack([field(rng, 48, [16])[0] for _ in range(6)])
    sharp /= sharp.max()
    return sharp


def test_fit_blur_recovers_sigma_gain_and_offset(known_psf):
    sharp = known_psf
    blurred = 0.8 * gaussian_filter(sharp, (0, 2.0, 2.0), mode="reflect") + 0.1
    fit = B.fit_blur(sharp, blurred)
    assert fit.sigma == pytest.approx(2.0, abs=0.02)
    assert fit.gain == pytest.approx(0.8, abs=0.01) and fit.offset == pytest.approx(0.1, abs=0.01)
    assert B.fit_blur(sharp, sharp).sigma < 0.1  # no blur: σ ≈ 0
    np.testing.assert_allclose(fit.synthesize(sharp), np.clip(blurred, 0, 1), atol=1e-3)
    with pytest.raises(UsageError, match="aligned"):
        B.fit_blur(sharp, blurred[:, :-1])


def test_gaussian_psf_is_the_kernel_gaussian_blur_applies():
    impulse = np.zeros((41, 41))
    impulse[20, 20] = 1.0
    psf = B.gaussian_psf(2.5)
    r = psf.shape[0] // 2
    np.testing.assert_allclose(B.gaussian_blur(impulse, 2.5)[20 - r : 21 + r, 20 - r : 21 + r], psf, atol=1e-12)


def test_deconvolution_baselines_sharpen_a_known_blur(known_psf):
    sharp = known_psf
    blurred = gaussian_filter(sharp, (0, 1.5, 1.5), mode="reflect")
    fit = B.fit_deconvolution(B.fit_blur(sharp, blurred), blurred[:3], sharp[:3])
    assert fit.rl_iterations in B.RL_ITERATIONS and fit.wiener_balance in B.WIENER_BALANCES
    before = M.psnr_per_image(blurred[3:], sharp[3:]).mean()
    for method in ("rl", "wiener"):
        restored = np.stack([B.deconvolve(b, fit, method) for b in blurred[3:]])
        assert restored.shape == blurred[3:].shape
        assert M.psnr_per_image(restored, sharp[3:]).mean() > before + 3, method
    with pytest.raises(UsageError, match="deconvolution"):
        B.deconvolve(blurred[0], fit, "magic")


def test_fit_and_apply_baselines_per_plane():
    """fit_baselines fits every plane between far and target on uint8 crops; apply_baselines gives one
    image per plane in the order of plan.between, equal to the fits applied one by one."""
    planes = (0, 8, 12, 16)
    rng = np.random.RandomState(2)
    stacks = np.stack([field(rng, 32, planes) for _ in range(4)])
    train = (stacks / stacks.max(axis=(-2, -1), keepdims=True) * 255).round().astype(np.uint8)
    plan = plan_planes(planes)
    calls = []
    fits = B.fit_baselines(train, plan, planes.index, progress=lambda: calls.append(1))
    assert list(fits) == [8, 12] and len(calls) == 2
    assert fits[8].sigma > fits[12].sigma > 0.5  # σ = |16 − n| / 4 in the data: 2 and 1
    x = train[:2].astype(np.float64) / 255.0
    real, truth = x[:, [1, 2]], x[:, 3]
    images = B.apply_baselines(fits, plan, real, truth)
    assert {k: v.shape for k, v in images.items()} == dict.fromkeys(("gaussian", "rl", "wiener"), (2, 2, 32, 32))
    np.testing.assert_array_equal(images["gaussian"][:, 1], fits[12].synthesize(truth))
    np.testing.assert_array_equal(images["wiener"][1, 0], B.deconvolve(real[1, 0], fits[8], "wiener"))


def _circular_blur(image, psf):
    """The exact periodic model of ``multiframe_wiener``: ``psf`` ⊛ ``image`` by FFT."""
    return np.fft.irfft2(np.fft.rfft2(image) * B.psf_otf(psf, image.shape), s=image.shape)


def test_multiframe_wiener_closed_forms():
    """Two identity PSFs: X̂ = 2X / (2 + λ) exactly; an invertible blur (a narrow Gaussian, OTF > 0) is undone
    as λ → 0."""
    rng = np.random.RandomState(0)
    x = rng.rand(24, 32)
    delta = np.zeros((3, 3))
    delta[1, 1] = 1.0
    for lam in (0.0, 0.5, 3.0):
        out = B.multiframe_wiener([x, x], [delta, delta], lam, pad=False)
        np.testing.assert_allclose(out, 2 * x / (2 + lam), atol=1e-12)
    narrow = B.gaussian_psf(0.6)
    assert np.abs(B.psf_otf(narrow, x.shape)).min() > 1e-3  # invertible
    views = [_circular_blur(x, narrow), _circular_blur(x, delta)]
    np.testing.assert_allclose(B.multiframe_wiener(views[:1], [narrow], 1e-14, pad=False), x, atol=1e-6)
    np.testing.assert_allclose(B.multiframe_wiener(views, [narrow, delta], 1e-14, pad=False), x, atol=1e-8)
    with pytest.raises(UsageError, match="aligned"):
        B.multiframe_wiener([x, x[:, :-1]], [delta, delta], 0.1)
    with pytest.raises(UsageError, match="odd"):
        B.multiframe_wiener([x], [np.ones((2, 2)) / 4], 0.1)


def test_two_planes_beat_either_plane_alone(known_psf):
    """Noiseless Gaussian blurs σ 1 and 3 of one image: for every λ the two-plane filter is closer to the truth
    than the single-plane filter of either plane with that λ, and than scikit-image's Wiener at its best balance."""
    from skimage.restoration import wiener

    sharp = known_psf[0]
    psfs = [B.gaussian_psf(1.0), B.gaussian_psf(3.0)]
    views = [_circular_blur(sharp, p) for p in psfs]

    def mse(img):
        return float(np.mean((img - sharp) ** 2))

    for lam in (1e-3, 1e-2, 1e-1):
        two = mse(B.multiframe_wiener(views, psfs, lam, pad=False))
        singles = [mse(B.multiframe_wiener([v], [p], lam, pad=False)) for v, p in zip(views, psfs, strict=True)]
        assert two < min(singles), (lam, two, singles)
    best_two = min(mse(B.multiframe_wiener(views, psfs, lam, pad=False)) for lam in B.WIENER_BALANCES)
    best_skimage = min(mse(wiener(v, p, balance=b, clip=False))
                       for v, p in zip(views, psfs, strict=True) for b in B.WIENER_BALANCES)
    assert best_two < best_skimage
    # reflect padding (the default, for fields that are not periodic) changes little away from the borders here
    periodic, padded = (B.multiframe_wiener(views, psfs, 1e-2, pad=pad) for pad in (False, True))
    assert padded.shape == sharp.shape and np.abs(padded - periodic)[12:-12, 12:-12].max() < 1e-3
    assert mse(padded) < mse(views[0]) / 3
