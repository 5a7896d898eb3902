"""The intensity statistics on torch tensors (``inference.device_intensity``) against numpy's (``intensity``), and the
device path of ``Predictor.run_pairs`` (``inference.device_pairs``) forced on the CPU against the numpy path.

Tolerances: order statistics, ranges and the [0, 1] pair exact; the 15x15 box mean within 1e-6 of the image's
peak (float64 running sums, rounded in another order than scipy's; equal here in practice), the background and
totals within what that moves; outputs within one count (integers) or 1e-5 of their peak (float32)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from helpers.infer_model import tiny_checkpoint
from scipy.ndimage import gaussian_filter, uniform_filter

from blurlatent.config import InferenceConfig
from blurlatent.errors import UsageError
from blurlatent.inference.device_intensity import (
    box_mean,
    mirror_index,
    tensor_background,
    tensor_extremes,
    tensor_percentiles,
    tensor_plane_ranges,
    tensor_to_input_scale,
    to_unit_tensor,
    total_above,
    upload,
)
from blurlatent.inference.device_pairs import takes_device_path
from blurlatent.inference.predictor import Predictor, load_model
from blurlatent.intensity import (
    Scale,
    background,
    plane_ranges,
    to_input_scale,
    to_unit,
    total_above_background,
)

CPU = torch.device("cpu")
SHAPES = [(2, 2), (3, 5), (37, 53), (64, 31)]


def image(shape, dtype, seed=0, flat=False) -> np.ndarray:
    """Smooth blobs over a noisy background in ``dtype``'s typical range; ``flat``: one value everywhere."""
    rng = np.random.default_rng(seed)
    peak = {np.uint8: 200.0, np.uint16: 3000.0, np.float32: 1.0}[dtype]
    if flat:
        return np.full(shape, 0.3 * peak).astype(dtype)
    values = 0.1 * peak + peak * gaussian_filter(rng.random(shape), 1.5) ** 2 + rng.normal(0, 0.01 * peak, shape)
    return np.clip(values, 0, None).astype(dtype)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return load_model(tiny_checkpoint(tmp_path_factory), "cpu")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_ranges_and_percentiles_equal_numpy_exactly(dtype, shape):
    for flat in (False, True):
        a = image(shape, dtype, flat=flat)
        x = upload(a, CPU)
        assert tensor_extremes(x) == (float(a.min()), float(a.max()))
        qs = [0.0, 0.1, 1.0, 37.5, 50.0, 99.9, 100.0]
        for by_sort in (False, True):  # a CPU's way and a GPU's
            assert tensor_percentiles(x, qs, by_sort=by_sort) == np.percentile(a.astype(np.float64), qs).tolist()
        for method in ("minmax", "percentile", "stack"):
            b = image(shape, dtype, seed=1, flat=flat)
            assert tensor_plane_ranges([x, upload(b, CPU)], method, 1) == plane_ranges([a, b], method, 1)


def test_mirror_index_pads_as_numpy_even_past_the_image():
    for n in (1, 2, 3, 5, 9):
        for pad in (0, 1, 4, 7, 13):
            no_edge = mirror_index(n, 0, pad, edge=False, device=CPU).numpy()
            assert (no_edge == np.pad(np.arange(n), (0, pad), "reflect")).all()
            edge = mirror_index(n, pad, pad, edge=True, device=CPU).numpy()
            assert (edge == np.pad(np.arange(n), pad, "symmetric")).all()


@pytest.mark.parametrize("shape", [*SHAPES, (520, 696)])
def test_box_mean_equals_scipy_uniform_filter_reflect(shape):
    a = image(shape, np.uint16).astype(np.float32)
    expected = uniform_filter(a, 15, mode="reflect")
    got = box_mean(torch.from_numpy(a)).numpy()
    assert got.dtype == np.float32 and got.shape == shape
    assert np.abs(got - expected).max() <= 1e-6 * np.abs(a).max()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_background_and_total_match_numpy(dtype, shape):
    for flat in (False, True):
        a = image(shape, dtype, flat=flat)
        x = upload(a, CPU)
        peak = float(np.abs(a).max())
        bg = tensor_background(x)
        assert abs(bg - background(a)) <= 1e-6 * peak
        assert abs(total_above(x, bg) - total_above_background(a)) <= a.size * 1e-6 * peak


@pytest.mark.parametrize("exponent", [-200, -80, 70, 120])
def test_background_of_extreme_floats_scaled_by_a_power_of_two(exponent):
    a = np.ldexp(image((37, 53), np.float32).astype(np.float64), exponent)
    assert tensor_background(upload(a, CPU)) == pytest.approx(background(a), rel=1e-6)


def test_values_beyond_the_normalizable_range_refused_as_numpy_does():
    a = np.full((4, 4), 1e301)
    with pytest.raises(UsageError, match="beyond"):
        tensor_extremes(upload(a, CPU))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_to_unit_bit_for_bit(dtype):
    a = image((37, 53), dtype)
    for lo, hi in (plane_ranges([a], "minmax", 0)[0], plane_ranges([a], "percentile", 0)[0]):
        assert np.array_equal(to_unit_tensor(upload(a, CPU), lo, hi).numpy(), to_unit(a, lo, hi))


@pytest.mark.parametrize("intensity", ["conserve", "minmax"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_output_mapping_matches_numpy_with_its_warnings(intensity, dtype, caplog):
    unit = gaussian_filter(np.random.default_rng(3).random((45, 61)), 2).astype(np.float32)
    unit = (unit - unit.min()) / np.ptp(unit)
    # the second reference pushes the output past uint8 and uint16: clipped, with the warning
    for ref in (Scale(100.0, 900.0, 110.0, 2.0e5), Scale(0.0, 9e4, 50.0, 5e9)):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            expected = to_input_scale(unit, ref, intensity, dtype)
        said = [r.getMessage() for r in caplog.records]
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            got = tensor_to_input_scale(torch.from_numpy(unit), ref, intensity, dtype).numpy()
        assert [r.getMessage() for r in caplog.records] == said
        assert got.dtype == expected.dtype
        close(got, expected)


def close(got: np.ndarray, expected: np.ndarray) -> None:
    """Within one count (integers) or 1e-5 of the peak (floats)."""
    diff = np.abs(got.astype(np.float64) - expected.astype(np.float64)).max()
    assert diff <= (1.0 if expected.dtype.kind in "ui" else 1e-5 * max(1.0, float(np.abs(expected).max())))


def test_the_path_a_job_takes():
    uint16, cuda, mps = [np.zeros((40, 48), np.uint16)] * 2, torch.device("cuda"), torch.device("mps")
    assert not takes_device_path("auto", CPU, uint16, 8, 16, None)  # the CPU keeps numpy's path by default
    assert takes_device_path("device", CPU, uint16, 8, 16, None)
    assert takes_device_path("auto", cuda, uint16, 8, 16, None)
    assert not takes_device_path("host", cuda, uint16, 8, 16, None)
    assert not takes_device_path("auto", mps, uint16, 8, 16, None)  # no float64 there
    assert not takes_device_path("auto", cuda, [np.zeros((40, 48), np.uint64)] * 2, 8, 16, None)
    assert not takes_device_path("auto", cuda, uint16, 8, 4, 32)  # tiled: numpy's path, a tile at a time
    assert takes_device_path("auto", cuda, [np.zeros((40, 48), ">u2")] * 2, 8, 16, None)  # big-endian TIFF data
    with pytest.raises(UsageError, match="stats"):
        InferenceConfig(stats="gpu").check()


@pytest.mark.parametrize("in_dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("out_dtype", ["uint16", "float32"])
@pytest.mark.parametrize("intensity", ["conserve", "minmax"])
def test_forced_device_path_equals_numpy_path(predictor, in_dtype, out_dtype, intensity, caplog):
    first, second = image((45, 61), in_dtype, seed=4), image((45, 61), in_dtype, seed=5)
    host = predictor.with_options(stats="host", intensity=intensity, out_dtype=out_dtype)
    device = predictor.with_options(stats="device", intensity=intensity, out_dtype=out_dtype)
    calls: list[tuple[int, int]] = []
    for flat in (False, True):  # a flat pair: no signal to conserve, said on both paths
        if flat:
            first, second = image((45, 61), in_dtype, flat=True), image((45, 61), in_dtype, flat=True)
        for name, alphas in (("blur", [0.0, 0.4, 1.0]), ("deblur", [0.5])):
            caplog.clear()
            expected = getattr(host, name)(first, second, alphas)
            said = sorted(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
            caplog.clear()
            got = getattr(device, name)(first, second, alphas, progress=lambda *p: calls.append(p))
            assert sorted(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING) == said
            assert got.dtype == expected.dtype == np.dtype(out_dtype)
            close(got, expected)
    assert calls == [(1, 1)] * 4  # one whole tile per call


@pytest.mark.parametrize("normalize", ["percentile", "stack"])
def test_forced_device_path_equals_numpy_path_for_every_normalization(predictor, normalize):
    other = Predictor(predictor.model, normalize, fuse=False)
    first, second = image((40, 57), np.uint16, seed=6), image((40, 57), np.uint16, seed=7)
    expected = other.with_options(stats="host").deblur(first, second, 0.5)
    close(other.with_options(stats="device").deblur(first, second, 0.5), expected)


def test_hot_pixels_still_said_on_the_device_path(predictor, caplog):
    first, second = image((48, 48), np.uint16, seed=8), image((48, 48), np.uint16, seed=9)
    second[10, 10] = second[30, 5] = 60000
    with caplog.at_level(logging.WARNING):
        predictor.with_options(stats="device").deblur(first, second, 0.5)
    assert "2 pixel(s) alone fill the upper half" in caplog.text


def test_big_endian_and_strided_inputs_on_the_device_path(predictor):
    first, second = image((48, 40), np.uint16, seed=10), image((48, 40), np.uint16, seed=11)
    first, second = first.astype(">u2").T, second.T  # a big-endian TIFF's pixels; a transposed view
    expected = predictor.with_options(stats="host").deblur(first, second, 0.5)
    close(predictor.with_options(stats="device").deblur(first, second, 0.5), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (benchmarks/gpu_check3.sh runs it on a GPU)")
@pytest.mark.parametrize("out_dtype", ["uint16", "float32"])
@pytest.mark.parametrize("intensity", ["conserve", "minmax"])
def test_cuda_path_equals_numpy_path(tmp_path_factory, out_dtype, intensity):
    cuda = load_model(tiny_checkpoint(tmp_path_factory), "cuda").with_options(intensity=intensity,
                                                                               out_dtype=out_dtype)
    first, second = image((520, 696), np.uint16, seed=12), image((520, 696), np.uint16, seed=13)
    expected = cuda.with_options(stats="host").deblur(first, second, 0.5)
    close(cuda.deblur(first, second, 0.5), expected)  # auto: on the device
    close(cuda.with_options(stats="device").blur(first, second, [0.3, 0.7]),
          cuda.with_options(stats="host").blur(first, second, [0.3, 0.7]))
