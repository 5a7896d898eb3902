"""baselines: a Gaussian PSF fitted per plane recovers a known blur; RL and Wiener undo it; the two-plane Wiener
filter beats either plane alone, with its balance chosen on train."""

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
    """fit_baselines fits the far plane and every plane between far and target on uint8 crops; apply_baselines
    gives one image per plane in the order of plan.between, equal to the fits applied one by one."""
    planes = (0, 8, 12, 16)
    rng = np.random.RandomState(2)
    stacks = np.stack([field(rng, 32, planes) for _ in range(4)])
    train = (stacks / stacks.max(axis=(-2, -1), keepdims=True) * 255).round().astype(np.uint8)
    plan = plan_planes(planes)
    calls = []
    fits = B.fit_baselines(train, plan, planes.index, progress=lambda: calls.append(1))
    assert list(fits) == [0, 8, 12] and len(calls) == 3
    assert fits[0].sigma > fits[8].sigma > fits[12].sigma > 0.5  # σ = |16 − n| / 4 in the data: 4, 2 and 1
    assert fits[0].two_plane_balance is None and fits[8].two_plane_balance in B.WIENER2_BALANCES
    x = train[:2].astype(np.float64) / 255.0
    real, truth = x[:, [1, 2]], x[:, 3]
    images = B.apply_baselines(fits, plan, real, truth, x[:, 0])
    shapes = dict.fromkeys(("gaussian", "rl", "wiener", "wiener2"), (2, 2, 32, 32))
    assert {k: v.shape for k, v in images.items()} == shapes
    np.testing.assert_array_equal(images["gaussian"][:, 1], fits[12].synthesize(truth))
    np.testing.assert_array_equal(images["wiener"][1, 0], B.deconvolve(real[1, 0], fits[8], "wiener"))
    expected = B.two_plane_wiener(x[1, 0], real[1, 1], fits[0], fits[12], fits[12].two_plane_balance)
    np.testing.assert_array_equal(images["wiener2"][1, 1], expected)


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


def test_laplacian_prior_with_one_plane_is_scikit_image_wiener():
    """prior="laplacian", P = 1, periodic: exactly scikit-image's ``wiener`` (default regulariser) — the
    single-plane ``wiener`` baseline's filter, so the two-plane column differs from it only by the second plane."""
    from skimage.restoration import wiener

    x = np.random.RandomState(1).rand(24, 32)
    psf = B.gaussian_psf(1.5)
    for lam in (1e-3, 0.1):
        np.testing.assert_allclose(B.multiframe_wiener([x], [psf], lam, pad=False, prior="laplacian"),
                                   wiener(x, psf, balance=lam, clip=False), atol=1e-12)
    with pytest.raises(UsageError, match="prior"):
        B.multiframe_wiener([x], [psf], 0.1, prior="smooth")


def _two_gaussian_stacks(rng, count, noise, size=48):
    """(scenes float64 [count, H, W] in [0.1, 0.9], uint8 [count, 3, H, W] stacks of planes 0, 8, 16): a random
    smooth scene, blurred by Gaussians σ 2 (plane 0) and 1.5 (plane 8) plus Gaussian noise, and the scene."""
    scenes = gaussian_filter(rng.rand(count, size, size), (0, 2, 2), mode="wrap")
    scenes -= scenes.min(axis=(1, 2), keepdims=True)
    scenes = 0.1 + 0.8 * scenes / scenes.max(axis=(1, 2), keepdims=True)
    planes = [gaussian_filter(scenes, (0, s, s), mode="reflect") + noise * rng.randn(*scenes.shape) for s in (2, 1.5)]
    stack = np.stack([*planes, scenes], 1)
    return scenes, (np.clip(stack, 0, 1) * 255).round().astype(np.uint8)


def test_two_plane_wiener_beats_each_plane_alone_on_a_known_blur():
    """Fitted on train, scored on other scenes against the scene itself (not the uint8 target): the two-plane
    filter of (x_0, x_8) beats the single-plane Wiener of x_8 (the ``wiener`` column) and of x_0, each with its
    own PSF and balance fitted on the same train crops."""
    rng = np.random.RandomState(0)
    plan = plan_planes([0, 8, 16])
    _, train = _two_gaussian_stacks(rng, 8, 0.03)
    scenes, test = _two_gaussian_stacks(rng, 4, 0.03)
    fits = B.fit_baselines(train, plan, [0, 8, 16].index)
    assert fits[0].sigma == pytest.approx(2.0, abs=0.05) and fits[8].sigma == pytest.approx(1.5, abs=0.05)
    x = test / 255.0
    images = B.apply_baselines(fits, plan, x[:, [1]], x[:, 2], x[:, 0])
    far_fit = B.fit_deconvolution(fits[0], train[:, 0] / 255.0, train[:, 2] / 255.0)
    psnr = {"two-plane": M.psnr_per_image(images["wiener2"][:, 0], scenes).mean(),
            "x_8": M.psnr_per_image(images["wiener"][:, 0], scenes).mean(),
            "x_0": M.psnr_per_image(np.stack([B.deconvolve(f, far_fit, "wiener") for f in x[:, 0]]), scenes).mean()}
    assert psnr["two-plane"] > max(psnr["x_8"], psnr["x_0"]) + 0.25, psnr


def test_two_plane_balance_is_chosen_on_train():
    """Noisy train crops and nearly clean test crops want different λ: the fitted one is the train's best mean
    PSNR (recomputed here), not the test's."""
    rng = np.random.RandomState(3)
    plan = plan_planes([0, 8, 16])
    _, train = _two_gaussian_stacks(rng, 4, 0.08, size=32)
    _, test = _two_gaussian_stacks(rng, 4, 0.002, size=32)
    fits = B.fit_baselines(train, plan, [0, 8, 16].index)

    def best(stacks):
        x = stacks / 255.0

        def mean_psnr(lam):
            pairs = zip(x[:, 0], x[:, 1], strict=True)
            return M.psnr_per_image(np.stack([B.two_plane_wiener(f, n, fits[0], fits[8], lam) for f, n in pairs]),
                                    x[:, 2]).mean()

        return max(B.WIENER2_BALANCES, key=mean_psnr)

    assert fits[8].two_plane_balance == best(train)
    assert best(test) < fits[8].two_plane_balance
