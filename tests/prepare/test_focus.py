"""focus: the measures against independent formulas, and the in-focus plane found on synth stacks whose truth
is known (z16), clean and with 10x fewer photons, both channels, the truth anywhere in the stack."""

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from blurlatent.bbbc006 import IN_FOCUS_PLANE, parse_bbbc_name, plane_from_path
from blurlatent.errors import UsageError
from blurlatent.prepare.focus import (
    MEASURES,
    best_plane,
    focus_curve,
    focus_outside,
    laplacian_energy,
    normalized_variance,
)
from blurlatent.synth import generator as synth

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "bbbc006"  # three real planes (README there)


def test_measures_match_their_formulas():
    rng = np.random.default_rng(0)
    image = rng.integers(100, 4000, (20, 24)).astype(np.uint16)
    x = image.astype(np.float64)
    assert normalized_variance(image) == pytest.approx(np.var(x) / np.mean(x), rel=1e-12)
    padded = np.pad(x, 1, mode="symmetric")  # scipy's "reflect" repeats the edge pixel, as numpy's "symmetric"
    lap = (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4 * x)
    assert laplacian_energy(image) == pytest.approx(np.mean(lap ** 2), rel=1e-12)
    assert normalized_variance(x - x.mean()) == pytest.approx(np.var(x))  # no positive mean: plain variance
    with pytest.raises(UsageError, match="focus measure 'brenner'"):
        focus_curve(image[None], "brenner")


@pytest.mark.parametrize("measure", MEASURES)
def test_best_plane_of_a_gaussian_defocus_stack(measure):
    rng = np.random.default_rng(1)
    base = ndimage.gaussian_filter(rng.random((48, 48)), 1.0)
    for focus in (0, 3, 8):
        stack = np.stack([ndimage.gaussian_filter(base, 0.1 + abs(z - focus)) for z in range(9)])
        assert best_plane(stack, measure) == focus
        # a second, dimmer channel votes with the same weight; a flat one cannot outvote it
        assert best_plane([stack, 0.01 * stack[::-1]], measure) in (focus, 8 - focus)
        assert best_plane([stack, np.ones_like(stack)], measure) == focus


@pytest.fixture(scope="module")
def synth_stacks(tmp_path_factory):
    """22 synthetic fields x 2 channels, planes 0..32 (z16 in focus), assembled into ZYX stacks."""
    root = tmp_path_factory.mktemp("focus") / "synth"
    synth.synthesize(root, fields=22, channels=["w1", "w2"], planes=range(0, 33), size=(160, 128), seed=11,
                     workers=1)
    planes = defaultdict(dict)
    for file in root.glob("BBBC006_v1_images_z_*/*.tif"):
        planes[parse_bbbc_name(file.name)][plane_from_path(file)] = tifffile.imread(file)
    return {key: np.stack([by_plane[p] for p in sorted(by_plane)]) for key, by_plane in planes.items()}


@pytest.mark.parametrize("noisy", [False, True])
def test_synth_focus_within_one_plane(synth_stacks, noisy):
    """>= 95 % of stacks within ±1 plane of the truth, per channel; windows cut at random so the truth moves."""
    rng = np.random.default_rng(5)
    errors = defaultdict(list)
    for key, full in sorted(synth_stacks.items()):
        lo, hi = int(rng.integers(0, 13)), int(rng.integers(20, 33))
        stack = full[lo:hi + 1].astype(np.float64)
        if noisy:  # 10x fewer photons (gain 0.39 ADU/e-: ADU/3.9 photons) and 10 ADU read noise
            photons = np.clip(stack - 100, 0, None) / 3.9
            stack = 100 + 3.9 * rng.poisson(photons) + rng.normal(0, 10, stack.shape)
        errors[key.channel].append(best_plane(stack) - (IN_FOCUS_PLANE - lo))
    for channel, errs in errors.items():
        assert len(errs) == 22
        assert np.mean(np.abs(errs) <= 1) >= 0.95, (channel, errs)


def test_real_planes_score_lower_when_blurred_further():
    """The real samples hold one (defocused) plane per field, no z16 to compare with: check instead that more
    defocus (a Gaussian of growing width) lowers the measure on every real plane."""
    files = sorted(SAMPLES.glob("*.tif"))
    assert files
    for file in files:
        image = tifffile.imread(file).astype(np.float64)
        for measure in MEASURES:
            curve = focus_curve(np.stack([image] + [ndimage.gaussian_filter(image, s) for s in (2, 4, 8)]), measure)
            assert np.all(np.diff(curve) < 0), (file.name, measure, curve)


def speckled(stack: np.ndarray, plane: int, value: float) -> np.ndarray:
    """``stack`` with a 2x2 speck of ``value`` in ``plane`` (debris, a cosmic ray, a saturated spot)."""
    out = stack.copy()
    out[plane, 30:32, 40:42] = value
    return out


@pytest.mark.parametrize("measure", MEASURES)
def test_a_saturated_speck_or_a_hot_pixel_does_not_move_the_focus(measure):
    """Issue 28, cause 4: one 2x2 saturated speck moved a stack's focus to its plane. Clipped at the stack's
    99.9th percentile, it no longer can; nor can a hot pixel, in every plane at the same place."""
    rng = np.random.default_rng(3)
    scene = ndimage.gaussian_filter(rng.random((64, 64)), 1.0)
    stack = np.stack([100 + 1000 * ndimage.gaussian_filter(scene / scene.max(), abs(z - 5)) for z in range(12)])
    stack = stack.astype(np.uint16)
    assert best_plane(stack, measure) == 5
    for plane in (0, 3, 10, 11):
        assert best_plane(speckled(stack, plane, 65535), measure) == 5, plane
    hot = stack.copy()
    hot[:, 7, 9] = 65535
    assert best_plane(hot, measure) == 5


def test_a_focus_at_the_first_or_last_plane_lies_outside():
    assert focus_outside(5, 12) is None and focus_outside(1, 12) is None and focus_outside(10, 12) is None
    assert focus_outside(11, 12) == ("the focus measure peaks at its last plane, z11 of 12, so the focus lies "
                                     "outside the stack")
    assert "its first plane, z0 of 12" in focus_outside(0, 12)
