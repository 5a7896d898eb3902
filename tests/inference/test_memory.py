"""Memory at inference (issue 28 cause 10): the few-copies path gives the old path's output, holds far less, is
estimated from above before work, a job over 80 % of the memory available is refused in one line naming what to
change, and running out anyway is a one-line RuntimeFailure, not a bug."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from helpers.infer_model import tiny_checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st

import blurlatent
from blurlatent.errors import RuntimeFailure, UsageError
from blurlatent.inference import memory
from blurlatent.inference.predictor import Predictor, load_model
from blurlatent.intensity import background, to_dtype, to_unit
from blurlatent.nets.tiling import pad_to_multiple, plan_tiles, reflect_pad_in_place


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return load_model(tiny_checkpoint(tmp_path_factory), "cpu")


def images(seed: int, shape=(101, 133), dtype=np.uint16):
    rng = np.random.default_rng(seed)
    base = rng.random(shape)
    return ((100 + 3000 * base) if dtype == np.uint16 else 255 * base).astype(dtype)


def old_run_pairs(p, firsts, seconds, alphas, rule):
    """The path before cause 10, written out: whole [0, 1] stacks, ``combine`` (np.stack + pad), and each level
    mapped on a whole float64 copy (the module docstring of ``intensity``)."""
    scales = [p.pair_scales(a, b, rule) for a, b in zip(firsts, seconds, strict=True)]
    ua = np.stack([to_unit(a, s.lo, s.hi) for a, (s, _) in zip(firsts, scales, strict=True)])
    ub = np.stack([to_unit(b, s.lo, s.hi) for b, (_, s) in zip(seconds, scales, strict=True)])
    unit = p.combine(ua, ub, alphas, rule)
    results = []
    for i, (sa, sb) in enumerate(scales):
        dtype = np.dtype(p.config.out_dtype or np.result_type(firsts[i].dtype, seconds[i].dtype))
        levels = []
        for u, al in zip(unit[i], alphas, strict=True):
            ref, u = (sa.mix(al, sb) if rule == "blur" else sb), u.astype(np.float64)
            if p.config.intensity == "conserve":
                bg = background(u)
                values = ref.bg + (u - bg) * (ref.total / float((u - bg).sum()))
            else:
                values = u * (ref.hi - ref.lo) + ref.lo
            levels.append(to_dtype(values, dtype))
        results.append(np.stack(levels))
    return np.stack(results)


@pytest.mark.parametrize("tile, intensity, out_dtype", [(0, "conserve", None), (64, "conserve", None),
                                                        (64, "minmax", "float32"), (0, "conserve", "float32")])
def test_the_few_copies_path_gives_the_old_output(predictor, tile, intensity, out_dtype):
    p = predictor.with_options(tile=tile, intensity=intensity, out_dtype=out_dtype, batch_size=3)
    firsts, seconds = [images(1), images(2, dtype=np.uint8)], [images(3), images(4)]  # padded: 101x133 → 104x136
    for rule, alphas in (("blur", [0.25, 0.75]), ("deblur", [0.5])):
        new = p.run_pairs(firsts, seconds, alphas, rule)
        old = old_run_pairs(p, firsts, seconds, alphas, rule)
        assert new.dtype == old.dtype and new.shape == old.shape == (2, len(alphas), 101, 133)
        np.testing.assert_allclose(new.astype(np.float64), old, rtol=1e-6, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), m=st.sampled_from([1, 4, 8, 32]))
def test_pair_padded_in_place_equals_numpys_pad(h, w, m):
    image = np.random.default_rng(h * w).random((2, 2, h, w)).astype(np.float32)
    expected, hw = pad_to_multiple(image, m)
    padded = np.full(expected.shape, np.nan, np.float32)
    padded[..., :h, :w] = image
    np.testing.assert_array_equal(reflect_pad_in_place(padded, hw), expected)


def test_tiles_share_their_blend_weights():
    plan = plan_tiles((1600, 1200), 8, 16, 128)
    assert len(plan) > 100 and len({id(weight) for _, _, weight in plan}) == 9  # corners, edges, inside


def test_the_estimate_bounds_the_arrays_and_the_old_path_held_far_more(predictor):
    p = predictor.with_options(tile=0, batch_size=1)
    a, b = images(5, (600, 600)), images(6, (600, 600))
    arrays, activations = memory.job_bytes(p, a.shape, 1, 1, 2)
    assert activations > 0
    peaks = []
    for run in (p.run_pairs, lambda *args: old_run_pairs(p, *args)):
        tracemalloc.start()  # numpy's allocations (torch's CPU tensors are its own)
        run([a], [b], [0.5], "deblur")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    new, old = peaks
    assert new <= arrays <= 3 * new  # from above, and not wildly
    assert new < 0.6 * old  # 4000x4000 (RSS, with the tiles' activations): 57 → 25 B/px


def test_a_job_over_the_limit_is_refused_naming_what_to_change(predictor, monkeypatch):
    a, b = images(7, (600, 600)), images(8, (600, 600))
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 20)
    with pytest.raises(UsageError, match=r"^this job needs about \d+ MiB of memory \(1 pair\(s\) of 600x600 px, 1 "
                                         r"level\(s\)\), more than 80 % of the 1 MiB available; pass a smaller tile "
                                         r"\(e.g. tile=256\), or a smaller input \(crop or bin it\)$"):
        blurlatent.deblur(predictor, a, b, alpha=0.5, tile=0)
    with pytest.raises(UsageError, match="of 40x30 px.* pass a smaller input"):  # tiles would not help
        blurlatent.deblur(predictor, a[:30, :40], b[:30, :40], alpha=0.5)
    monkeypatch.setattr(memory, "available_bytes", lambda: None)  # unknown: no check
    assert blurlatent.deblur(predictor, a[:30, :40], b[:30, :40], alpha=0.5).shape == (30, 40)


def test_running_out_of_memory_is_one_runtime_failure(predictor, monkeypatch):
    a, b = images(9, (40, 48)), images(10, (40, 48))
    for raised, kind in ((MemoryError(), "MemoryError"),
                         (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 8 GB"), "RuntimeError")):
        def run_out(*args, error=raised, **kwargs):
            raise error

        monkeypatch.setattr(Predictor, "combine_pair", run_out)
        with pytest.raises(RuntimeFailure, match=rf"^out of memory during inference \({kind}\); pass a smaller tile "
                                                 r"\(e.g. tile=256\), batch_size=1, or a smaller input"):
            predictor.deblur(a, b, 0.5)
    monkeypatch.setattr(Predictor, "combine_pair", lambda *args, **kwargs: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError, match="^x$"):  # another error stays what it is
        predictor.deblur(a, b, 0.5)


def test_available_memory_from_meminfo(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16384 kB\nMemFree:   1024 kB\nMemAvailable:    2048 kB\n")
    monkeypatch.setattr(memory, "MEMINFO", meminfo)
    assert memory.available_bytes() == 2048 * 1024
    monkeypatch.setattr(memory, "MEMINFO", tmp_path / "missing")
    fallback = memory.available_bytes()  # os.sysconf's free pages, where the system has them
    assert fallback is None or fallback > 0
