"""optics: a defocus PSF that conserves energy, follows its width law and matches the real z00; the camera."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from blurlatent.errors import UsageError
from blurlatent.synth import optics


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
        assert optics.defocus_blur(image, distance).sum() == pytest.approx(image.sum(), rel=1e-4)
    # the real z00 ≈ in-focus plane ⊛ Gaussian(σ ≈ 18 px): our PSF at 32 µm must look like that
    ours, gauss = optics.defocus_blur(image, -32.0), gaussian_filter(image, 18.0, mode="wrap")
    assert np.abs(ours - gauss).sum() / gauss.sum() < 0.1
    weaker = gaussian_filter(image, 12.0, mode="wrap")
    assert np.abs(ours - weaker).sum() / gauss.sum() > 0.2  # and not like a weaker blur


def test_camera_noise_is_poisson_gaussian_with_the_real_gain():
    signal = np.full((256, 256), 400.0, np.float32)
    frame = optics.camera(signal, np.random.default_rng(0)).astype(np.float64)
    assert frame.mean() == pytest.approx(optics.CAMERA_OFFSET + 400.0, abs=0.5)
    assert frame.var() == pytest.approx(1.4**2 + 0.39 * 400.0 + 1 / 12, rel=0.05)  # the calibrated camera
    assert optics.camera(np.full((4, 4), 1e6), np.random.default_rng(0)).max() == optics.FULL_SCALE


# --- other microscopes (synth's optics flags) --------------------------------------------------------


def test_defaults_are_the_calibrated_microscope():
    o = optics.Optics()
    assert (o.na, o.wavelength_um, o.z_step_um, o.read_noise, o.gain, o.background) == (0.45, None, 2.0, 1.4, 0.39, 0.0)
    assert o.changed() == {} and optics.Optics(gain=0.8).changed() == {"gain": 0.8}
    assert optics.BETA_PX_PER_UM == pytest.approx(0.405, abs=1e-3)  # module docstring: β = 0.405 px/µm


@pytest.mark.parametrize("na", [0.25, 0.45, 0.7])
@pytest.mark.parametrize("wavelength", [None, 0.65])
def test_other_na_and_wavelength_follow_the_closed_forms(na, wavelength):
    o = optics.Optics(na=na, wavelength_um=wavelength)
    theta = np.arcsin(na)  # geometric defocus: a point 20 µm out spreads over |d|·tan θ
    assert optics.disk_radius_px(-20.0, o) == pytest.approx(20.0 * np.tan(theta) / 0.645, rel=1e-12)
    lam = 0.46 if wavelength is None else wavelength
    assert optics.sigma0_px("w1", o) == pytest.approx(np.hypot(0.21 * lam / na / 0.645, np.sqrt(1 / 12)), rel=1e-12)
    # the sampled PSF's second moment still equals its closed form R²/4 + σ²
    psf = optics.defocus_psf(-20.0, size=257, optics=o)
    y = np.arange(257) - 128
    assert psf.sum() == pytest.approx(1.0, abs=1e-9)
    assert np.sqrt((psf.sum(axis=1) * y**2).sum()) == pytest.approx(optics.equivalent_sigma_px(-20.0, "w1", o),
                                                                       rel=0.02)


def test_z_step_scales_the_defocus_of_every_plane_but_not_focus():
    o = optics.Optics(z_step_um=1.25)
    assert [optics.plane_distance_um(z, o) for z in (0, 8, 16, 20)] == [-20.0, -10.0, 0.0, 5.0]
    assert optics.equivalent_sigma_px(optics.plane_distance_um(0, o)) < optics.equivalent_sigma_px(-32.0)


@pytest.mark.parametrize("read_noise, gain", [(0.0, 0.1), (6.0, 0.39), (2.0, 2.0)])
def test_camera_noise_follows_read_noise_and_gain(read_noise, gain):
    signal = np.full((256, 256), 300.0, np.float32)
    frame = optics.camera(signal, np.random.default_rng(1), optics.Optics(read_noise=read_noise, gain=gain))
    frame = frame.astype(np.float64)
    assert frame.mean() == pytest.approx(optics.CAMERA_OFFSET + 300.0, abs=0.5)
    assert frame.var() == pytest.approx(read_noise**2 + gain * 300.0 + 1 / 12, rel=0.05)


@pytest.mark.parametrize("field, value", [("na", 0.0), ("na", 1.0), ("na", float("nan")), ("wavelength_um", 2.0),
                                          ("z_step_um", 0.0), ("z_step_um", float("inf")), ("read_noise", -1.0),
                                          ("gain", 0.0), ("background", -5.0), ("background", True)])
def test_out_of_range_optics_are_refused_naming_the_parameter(field, value):
    with pytest.raises(UsageError, match=rf"^{field} {value}: .* must lie in \["):
        optics.Optics(**{field: value}).check()
