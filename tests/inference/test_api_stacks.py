"""The Python API on z-stacks: ``blurlatent.blur``/``deblur`` with ``z`` and ``axes`` ("ZYX", "CZYX" with
``channel``) equal the 2-D two-array calls on the same planes, α from the plane indices toward ``target``; and
``planes.array_pair``/``read_inputs`` refuse what they cannot choose with a message naming what to pass."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from helpers.infer_model import smooth_field, tiny_checkpoint
from scipy.ndimage import gaussian_filter

import blurlatent
from blurlatent.errors import UsageError
from blurlatent.inference import inputs as planes


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return blurlatent.load_model(tiny_checkpoint(tmp_path_factory), "cpu")


def stack(seed: int = 0, shape=(40, 48)) -> np.ndarray:
    """Three uint16 planes of one field, blurriest first."""
    sharp = smooth_field(np.random.default_rng(seed), shape, 1.0)
    return np.stack([(100 + 900 * gaussian_filter(sharp, s)).astype(np.uint16) for s in (3.0, 1.5, 0.0)])


def test_deblur_zyx_equals_the_two_array_call(model):
    data = stack(1)
    two_d = blurlatent.deblur(model, data[0], data[1], 0.5)
    assert two_d.shape == data.shape[1:] and two_d.dtype == np.uint16
    np.testing.assert_array_equal(blurlatent.deblur(model, data, z=(0, 1), target=2, axes="ZYX"), two_d)
    np.testing.assert_array_equal(blurlatent.deblur(model, data, z=(0, 1), target=2), two_d)  # 3-D: ZYX by default
    # an explicit alpha wins over the planes; the other side of focus works too (planes 2, 1 toward 0)
    np.testing.assert_array_equal(blurlatent.deblur(model, data, alpha=0.25, z=(0, 1), axes="zyx"),
                                  blurlatent.deblur(model, data[0], data[1], 0.25))
    np.testing.assert_array_equal(blurlatent.deblur(model, data, z=(2, 1), target=0),
                                  blurlatent.deblur(model, data[2], data[1], 0.5))


def test_czyx_and_tczyx_choose_the_channel(model):
    data = stack(2)
    other = stack(3)
    czyx = np.stack([other, data])  # CZYX, the field in channel 1
    expected = blurlatent.deblur(model, data[0], data[1], 0.5)
    np.testing.assert_array_equal(blurlatent.deblur(model, czyx, z=(0, 1), target=2, axes="CZYX", channel=1), expected)
    zcyx = np.moveaxis(czyx, 0, 1)
    np.testing.assert_array_equal(blurlatent.deblur(model, zcyx[None], z=(0, 1), target=2, axes="TZCYX", channel=1),
                                  expected)
    levels = blurlatent.blur(model, czyx, alpha=[0.25, 0.75], z=(2, 0), axes="CZYX", channel=1)
    np.testing.assert_array_equal(levels, blurlatent.blur(model, data[2], data[0], [0.25, 0.75]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(z=(0, 3), axes="ZYX"), r"z 0 3: plane 3 is out of range: the stack has 3 planes; pass z=P1 P2 within 0\.\.2"),
    (dict(z=(1, 1), axes="ZYX"), "must differ"),
    (dict(z=(0, 1, 2), axes="ZYX"), "give two plane indices"),
    (dict(z=(0, 1), axes="YX"), "axes 'YX' do not describe"),
    (dict(z=(0, 1), axes="ZXY"), "ending in YX"),
    (dict(z=(0, 1), axes="CYX"), "with Z"),
    (dict(axes="ZYX"), "a second image, or z="),
])
def test_stack_refusals_name_what_to_pass(model, kwargs, match):
    with pytest.raises(UsageError, match=match):
        blurlatent.deblur(model, stack(4), **kwargs)


def test_channel_and_axes_refusals(model):
    czyx = np.stack([stack(5), stack(6)])
    with pytest.raises(UsageError, match=r"2 channels .*pass channel=0\.\.1"):
        blurlatent.deblur(model, czyx, z=(0, 1), target=2, axes="CZYX")
    with pytest.raises(UsageError, match="channel 2 does not exist"):
        blurlatent.deblur(model, czyx, z=(0, 1), target=2, axes="CZYX", channel=2)
    with pytest.raises(UsageError, match="axes: give the axes"):
        blurlatent.deblur(model, czyx, z=(0, 1), target=2)
    with pytest.raises(UsageError, match="z chooses two planes of one stack"):
        blurlatent.deblur(model, czyx[0], czyx[0, 0], z=(0, 1), axes="ZYX")
    with pytest.raises(UsageError, match="alpha: give alpha, or z="):
        blurlatent.deblur(model, czyx[0, 0], czyx[0, 1])
    with pytest.raises(UsageError, match="describe a stack"):
        blurlatent.deblur(model, czyx[0, 0], czyx[0, 1], 0.5, axes="YX")
    with pytest.raises(UsageError, match="alpha: give one blur level"):
        blurlatent.blur(model, czyx[0], z=(2, 0))
    with pytest.raises(UsageError, match="time points"):
        blurlatent.deblur(model, np.stack([czyx[0]] * 2), z=(0, 1), target=2, axes="TZYX")


def test_read_inputs_one_place_for_files(tmp_path):
    """The CLI's reader: planes of a stack file or one plane per file, and the Stack each came from."""
    data = stack(7)
    tifffile.imwrite(tmp_path / "s.tif", data, photometric="minisblack")
    tifffile.imwrite(tmp_path / "p0.tif", data[0])
    tifffile.imwrite(tmp_path / "p1.tif", data[1])
    from_stack = planes.read_inputs(tmp_path / "s.tif", z=(0, 1))
    from_files = planes.read_inputs(tmp_path / "p0.tif", tmp_path / "p1.tif")
    np.testing.assert_array_equal(from_stack.first, from_files.first)
    np.testing.assert_array_equal(from_stack.second, from_files.second)
    assert from_stack.sources[0] is from_stack.sources[1] and from_files.sources[1].path == tmp_path / "p1.tif"
    with pytest.raises(UsageError, match="p0.tif: holds one plane; give a second image"):
        planes.read_inputs(tmp_path / "p0.tif")
    with pytest.raises(UsageError, match="s.tif: holds 3 planes"):
        planes.read_inputs(tmp_path / "s.tif", tmp_path / "p0.tif")
