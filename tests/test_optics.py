"""optics: a defocus PSF that conserves energy, follows its width law and matches the real z00; the camera."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from blurlatent import optics


@pytest.mark.parametrize("distance", [-34.0, -12.0, -2.0, 0.0, 3.0, 20.0, 36.0])
def test_psf_conserves_energy_and_matches_its_width_law(distance):
    psf = optics.defocus_psf(distance, size=257)
    assert psf.sum() == pytest.approx(1.0, abs=1e-9)
    if abs(distance) >= 2:  # (in focus the 0.44 px core is sub-pixel and its sampled OTF rings by ~3 %)
        assert psf.min() > -1e-3 * psf.max()  # the disk-Gaussian PSF is non-negative
    # second moment per axis of the sampled PSF = the closed form R²/4 + σ²
    y = np.arange(257) - 128
    measured = np.sqrt((psf.sum(axis=1) * y**2).sum())
    assert measured == pytest.approx(optics.equivalent_sigma_px(distance), rel=0.02, abs=0.05)


def test_energy_conserved_through_defocus_and_calibrated_to_the_real_z00():
    image = np.zeros((256, 256), np.float32)
    yy, xx = np.mgrid[:256, :256]
    image[(yy - 128) ** 2 / 12.0**2 + (xx - 120) ** 2 / 9.0**2 < 1] = 1500.0
    for distance in (-32.0, -8.0, 0.0, 8.0, 32.0):
        assert optics.blur(image, distance).sum() == pytest.approx(image.sum(), rel=1e-4)
    # the real z00 ≈ in-focus plane ⊛ Gaussian(σ ≈ 18 px): our PSF at 32 µm must look like that
    ours, gauss = optics.blur(image, -32.0), gaussian_filter(image, 18.0, mode="wrap")
    assert np.abs(ours - gauss).sum() / gauss.sum() < 0.1
    weaker = gaussian_filter(image, 12.0, mode="wrap")
    assert np.abs(ours - weaker).sum() / gauss.sum() > 0.2  # and not like a weaker blur


def test_camera_noise_is_poisson_gaussian_with_the_real_gain():
    signal = np.full((256, 256), 400.0, np.float32)
    frame = optics.camera(signal, np.random.default_rng(0)).astype(np.float64)
    assert frame.mean() == pytest.approx(optics.CAMERA_OFFSET + 400.0, abs=0.5)
    assert frame.var() == pytest.approx(optics.READ_NOISE**2 + optics.GAIN * 400.0 + 1 / 12, rel=0.05)
    assert optics.camera(np.full((4, 4), 1e6), np.random.default_rng(0)).max() == optics.FULL_SCALE
