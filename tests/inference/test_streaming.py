"""Streamed inference (issue 29, item 1): block by block equals the whole image given the same intensity statistics,
the streamed statistics estimate the whole-image ones, files in (TIFF, OME-Zarr) and an OME-Zarr out, nothing left
behind on an error, and memory that does not grow with the image."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
from helpers.infer_model import tiny_checkpoint
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from blurlatent.cli import app
from blurlatent.errors import UsageError
from blurlatent.files.stacks import read_stack, write_stack
from blurlatent.inference.memory import reference_scales, unit_pair
from blurlatent.inference.predictor import NEAR_FOCUS, load_model
from blurlatent.inference.stream_jobs import stream_files
from blurlatent.inference.streaming import (
    PairStatistics,
    input_statistics,
    stream_pair,
)
from blurlatent.intensity import intensity_range, map_unit, output_map, warn_hot_pixels

SHAPE = (300, 260)  # not on the 8-px grid: the bottom/right reflect padding is in play


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return load_model(tiny_checkpoint(tmp_path_factory), "cpu")


def field_pair(shape=SHAPE, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Blurred spots on a background, uint16: (more blurred, less blurred)."""
    rng = np.random.default_rng(seed)
    spots = np.zeros(shape)
    spots[tuple(rng.integers(0, n, 40 * shape[0] * shape[1] // 78000 + 4) for n in shape)] = 4e4
    noise = rng.normal(0, 3, shape)
    a, b = (np.clip(100 + gaussian_filter(spots, s) + noise, 0, 65535).astype(np.uint16) for s in (4.0, 2.0))
    return a, b


def whole(predictor, a, b, alphas, rule, stats: PairStatistics) -> np.ndarray:
    """The whole-image path (``unit_pair``, ``combine_pair``, ``output_map``) with ``stats`` given: float32
    [K, H, W]."""
    unit = predictor.combine_pair(*unit_pair([a], [b], [stats.scales], predictor.multiple), alphas, rule)[0]
    refs = reference_scales(stats.scales, alphas, rule)
    outputs = stats.outputs or [(0.0, 0.0)] * len(alphas)
    out = np.empty(unit.shape, np.float32)
    for k, (ref, o) in enumerate(zip(refs, outputs, strict=True)):
        map_unit(unit[k], output_map(ref, predictor.config.intensity, *o, unit[k].size), out[k])
    return out


@pytest.mark.parametrize("rule, alphas", [("deblur", [0.5]), ("blur", [0.25, 0.75])])
@pytest.mark.parametrize("intensity", ["conserve", "minmax"])
def test_streamed_equals_whole_given_the_same_statistics(predictor, rule, alphas, intensity):
    p = predictor.with_options(intensity=intensity, out_dtype="float32")
    a, b = field_pair()
    out = np.zeros((len(alphas), *SHAPE), np.float32)
    scratch = lambda shape, dtype: np.zeros(shape, dtype)
    stats, window = stream_pair(p, a, b, alphas, rule, out, scratch=scratch, block=64)  # 5 x 5 blocks
    expected = whole(p, a, b, alphas, rule, stats)
    span = float(expected.max() - expected.min())
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5 * span)
    assert window == (pytest.approx(float(out.min())), pytest.approx(float(out.max())))
    # and end to end: with a stride-1 sample the statistics are the whole image's, so run_pairs agrees too
    np.testing.assert_allclose(out, p.run_pairs([a], [b], alphas, rule)[0], rtol=0, atol=1e-5 * span)
    # statistics given: one pass, the same output
    again = np.zeros_like(out)
    stream_pair(p, a, b, alphas, rule, again, stats=stats, block=128)
    np.testing.assert_allclose(again, out, rtol=0, atol=1e-5 * span)


@pytest.mark.parametrize("normalize", ["minmax", "percentile", "stack"])
def test_statistics_estimates_are_close_to_the_whole_images(predictor, normalize):
    """Min/max and sums are exact; the percentiles from every 2nd pixel per direction (78,000 values of 312,000)
    within 1 % of the range for the 0.1/99.9 % ones and 0.1 counts for the background, exact for a stride of 1.
    (The tail of sparse spots is what such a sample estimates worst: at 300x260 it misses the 99.9 % one by 5 %;
    a 20,000² plane's sample holds 16 M values.)"""
    p = predictor.with_options(intensity="conserve")
    p.normalize = normalize
    a, b = field_pair((600, 520), seed=3)
    exact = p.pair_scales(a, b, "deblur")
    for sample, tol in ((a.size, 1e-9), (a.size // 4, 1.0)):
        got = input_statistics(a, b, normalize, NEAR_FOCUS["deblur"], True, block=64, sample=sample)
        for g, e in zip(got, exact, strict=True):
            span = e.hi - e.lo
            assert g.lo == pytest.approx(e.lo, abs=tol * 0.01 * span + 1e-9)
            assert g.hi == pytest.approx(e.hi, abs=tol * 0.01 * span + 1e-9)
            assert g.bg == pytest.approx(e.bg, abs=tol * 0.1 + 1e-3)
            assert g.total == pytest.approx(e.total, rel=1e-9, abs=(tol * 0.1 + 1e-3) * a.size)


def write_inputs(folder: Path, kind: str, a, b) -> tuple[Path, Path]:
    if kind == "tiff":
        paths = folder / "a.tif", folder / "b.tif"
        tifffile.imwrite(paths[0], a, tile=(64, 64), compression="zlib")
        tifffile.imwrite(paths[1], b)  # contiguous: read through a memory map
    else:
        paths = folder / "a.ome.zarr", folder / "b.ome.zarr"
        write_stack(paths[0], a)
        write_stack(paths[1], b)
    return paths


@pytest.mark.parametrize("kind", ["tiff", "zarr"])
def test_files_stream_into_an_ome_zarr(predictor, tmp_path, kind, monkeypatch):
    checkpoint = predictor.source
    a, b = field_pair()
    first, second = write_inputs(tmp_path, kind, a, b)
    out = tmp_path / "out.ome.zarr"
    config = predictor.config
    monkeypatch.setattr("blurlatent.inference.stream_jobs.BLOCK", 64)
    written = stream_files(checkpoint, config, first, second, [0.5], out, "deblur")
    assert written == [out]
    got = read_stack(out)
    expected = predictor.run_pairs([a], [b], [0.5], "deblur")[0, 0]
    assert got.data.dtype == np.uint16 and got.data.shape == (1, *SHAPE)
    assert np.abs(got.data[0].astype(int) - expected.astype(int)).max() <= 1  # uint16 rounding of 1e-5 agreements
    assert sorted(e.name for e in out.iterdir()) == [".zattrs", ".zgroup", "0"]
    assert sorted(e.name for e in tmp_path.iterdir()) == sorted([first.name, second.name, out.name])


def test_an_interrupted_stream_leaves_nothing(predictor, tmp_path, monkeypatch):
    a, b = field_pair()
    first, second = write_inputs(tmp_path, "zarr", a, b)
    out = tmp_path / "out.ome.zarr"
    monkeypatch.setattr("blurlatent.inference.stream_jobs.BLOCK", 64)
    calls = []

    def stop(done, total):
        calls.append(done)
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stream_files(predictor.source, predictor.config, first, second, [0.5], out, "deblur", progress=stop)
    assert calls == [1, 2, 3]
    assert sorted(e.name for e in tmp_path.iterdir()) == sorted([first.name, second.name])


def test_a_streamed_job_refuses_a_tiff_output(predictor, tmp_path):
    a, b = field_pair()
    first, second = write_inputs(tmp_path, "zarr", a, b)
    with pytest.raises(UsageError, match="OME-Zarr"):
        stream_files(predictor.source, predictor.config, first, second, [0.5], tmp_path / "out.tif", "deblur")
    assert sorted(e.name for e in tmp_path.iterdir()) == sorted([first.name, second.name])


def peak_bytes(predictor, side: int, folder: Path) -> int:
    a, b = (np.full((side, side), v, np.uint16) for v in (100, 200))
    a[::37, ::41] = 3000
    out = np.lib.format.open_memmap(str(folder / f"out{side}.npy"), "w+", np.uint16, (side, side))
    tracemalloc.start()
    try:
        stream_pair(predictor, a, b, [0.5], "deblur", out, block=256)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_image(predictor, tmp_path):
    """numpy's allocations (tracemalloc) peak alike for 1024² and 2048² inputs: what is held is a block's worth (the
    inputs and output are the caller's, here arrays and a memory map, outside the count)."""
    p = predictor.with_options(intensity="minmax")
    small, big = peak_bytes(p, 1024, tmp_path), peak_bytes(p, 2048, tmp_path)
    assert big < 1.5 * small, (small, big)


def test_the_cli_streams_planes_over_the_threshold(predictor, tmp_path, monkeypatch):
    """Over STREAM_PIXELS `deblur A B -o OUT.ome.zarr` is streamed (said in the log); a .tif: one line, exit 2."""
    a, b = field_pair()
    first, second = write_inputs(tmp_path, "tiff", a, b)
    monkeypatch.setattr("blurlatent.inference.stream_jobs.STREAM_PIXELS", 1000)
    monkeypatch.setattr("blurlatent.inference.stream_jobs.BLOCK", 64)
    monkeypatch.setattr("blurlatent.inference.jobs.run_files", None)  # the whole-image job: not called
    argv = ["deblur", str(first), str(second), "-c", predictor.source, "--alpha", "0.5"]
    result = CliRunner().invoke(app, ["-v", *argv, "-o", str(tmp_path / "out.ome.zarr")])
    assert result.exit_code == 0, result.output
    assert "streamed in blocks" in result.output
    assert read_stack(tmp_path / "out.ome.zarr").data.shape == (1, *SHAPE)
    result = CliRunner().invoke(app, [*argv, "-o", str(tmp_path / "out.tif")])
    assert result.exit_code == 2 and "OME-Zarr" in result.output and "--output" in result.output
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.parametrize("normalize", ["minmax", "percentile"])
def test_three_hot_pixels_are_said_once_from_the_statistics_pass(caplog, normalize):
    """The whole-image path's hot-pixel warning (``Scale.of``: ``intensity.warn_hot_pixels``) said by the streamed
    statistics of a 96x80 pair whose blurrier plane has 3 hot pixels (blocks of 32: they lie in three): once under
    ``minmax``, where they set the range; never under ``percentile``, whose 99.9 % ignores them, as the whole path."""
    a, b = field_pair((96, 80), seed=5)
    a[5, 7] = a[50, 40] = a[90, 70] = 65535
    lo, hi = intensity_range(a, normalize)
    caplog.clear()
    whole_says = warn_hot_pixels(a, lo, hi)
    assert whole_says is (normalize == "minmax")
    caplog.clear()
    input_statistics(a, b, normalize, NEAR_FOCUS["deblur"], True, block=32)
    said = [r.getMessage() for r in caplog.records if "alone fill the upper half" in r.getMessage()]
    assert len(said) == int(whole_says)
    assert all(m.startswith("3 pixel(s)") and f"{lo:.6g} to {hi:.6g}" in m for m in said)
    caplog.clear()
    input_statistics(b, b, normalize, NEAR_FOCUS["deblur"], False, block=32)  # no hot pixel: nothing said
    assert "alone fill" not in caplog.text
