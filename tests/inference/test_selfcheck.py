"""The deblur self-check (issue 25, item 3; ``inference.selfcheck``) on constructed inputs with a closed-form truth:
a hand-made sharp field whose Gaussian blurs (σ 4 and 2 px, so α = 0.5 by σk = (1 − α)·σ0) plus noise are the
planes. The truth explains both to the noise and is not warned about; an output of the planes in the wrong order
(Eq. 3 done linearly on swapped planes), an output of noise, and hot pixels in the planes are. The number reaches
the log, every output's provenance (read back from the written file) and napari's "last run" line; blur has none."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tifffile
from helpers.infer_model import tiny_checkpoint
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from blurlatent.cli import app
from blurlatent.files.provenance import read_provenance
from blurlatent.inference.predictor import Predictor
from blurlatent.inference.selfcheck import WARN_ABOVE, self_check
from blurlatent.napari.jobs import DeblurRequest, Ticker

SIGMA0, SIGMAK, ALPHA = 4.0, 2.0, 0.5
WARNING = "the output may be worse than the less-blurry input"


def sharp_field(n: int = 128, seed: int = 0) -> np.ndarray:
    """Flat-topped disks of radius 2.5–6 px on a background of 100, peaks up to ~1000 (counts)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    image = np.zeros((n, n))
    for _ in range(25):
        cy, cx = rng.uniform(8, n - 8, 2)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(2.5, 6) ** 2] += rng.uniform(0.4, 1.0)
    return 100 + 900 * image


@pytest.fixture(scope="module")
def planes():
    """(truth, blurriest, less-blurry): the Gaussian blurs of the truth at σ 4 and 2 px plus noise of σ 2 counts."""
    truth, rng = sharp_field(), np.random.default_rng(1)
    z0, zk = (gaussian_filter(truth, s) + rng.normal(0, 2.0, truth.shape) for s in (SIGMA0, SIGMAK))
    return truth, z0, zk


def with_hot_pixels(image: np.ndarray, seed: int) -> np.ndarray:
    rng, hot = np.random.default_rng(seed), image.copy()
    hot[rng.integers(0, image.shape[0], 6), rng.integers(0, image.shape[1], 6)] = image.max() * 8
    return hot


def test_the_true_sharp_field_is_consistent_and_not_warned(planes):
    truth, z0, zk = planes
    check = self_check(truth, z0, zk, ALPHA)
    assert check.score < 2.0 and not check.warn and WARNING not in check.message()
    # each plane explained to about its noise, at the σ it was blurred with (binned px: half the image's)
    assert check.out0.ratio < 1.5 and check.outk.ratio < 1.5
    assert (check.out0.sigma, check.outk.sigma) == (SIGMA0 / 2, SIGMAK / 2)


@pytest.mark.parametrize("case", ["swapped", "noise", "hot"])
def test_what_makes_an_output_worse_is_warned_about(planes, case):
    truth, z0, zk = planes
    if case == "swapped":  # Eq. 3 done linearly, x ≈ (zk − α z0)/(1 − α), with the planes given the wrong way round
        output, z0, zk = (z0 - ALPHA * zk) / (1 - ALPHA), zk, z0
    elif case == "noise":
        output = np.random.default_rng(2).normal(500, 100, truth.shape)
    else:
        output, z0, zk = truth, with_hot_pixels(z0, 3), with_hot_pixels(zk, 4)
    check = self_check(output, z0, zk, ALPHA)
    assert check.score > WARN_ABOVE and check.warn
    assert check.message().startswith(WARNING) and "the planes' order" in check.message()


def test_mismatched_shapes_are_refused(planes):
    truth, z0, zk = planes
    with pytest.raises(ValueError, match="one shape"):
        self_check(truth[:-2], z0, zk, ALPHA)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


def small_planes(planes) -> tuple[np.ndarray, np.ndarray]:
    _, z0, zk = planes
    return z0[:64, :64].astype(np.float32), zk[:64, :64].astype(np.float32)


def test_deblur_logs_and_keeps_each_outputs_check_and_blur_has_none(planes, ckpt, caplog):
    z0, zk = small_planes(planes)
    predictor = Predictor.from_checkpoint(ckpt)
    with caplog.at_level(logging.INFO, logger="blurlatent.inference.predictor"):
        levels = predictor.deblur(z0, zk, [0.25, 0.5])
    assert levels.shape == (2, 64, 64)  # the return type is unchanged; the checks ride beside it
    assert [len(c) for c in predictor.checks] == [2]
    scores = [c.score for c in predictor.checks[0]]
    assert scores == [self_check(level, z0, zk, a).score for level, a in zip(levels, [0.25, 0.5], strict=True)]
    said = [r.getMessage() for r in caplog.records if "self-check" in r.getMessage()]
    assert len(said) == 2 and f"self-check {scores[0]:.2f}" in said[0]
    predictor.blur(zk, z0, 0.5)
    assert predictor.checks == []


def test_the_number_is_in_the_provenance_of_the_written_file(planes, ckpt, tmp_path):
    """One level in a TIFF, and a sweep's 7 levels in numbered PNGs, each file with its own level's number."""
    z0, zk = small_planes(planes)
    tifffile.imwrite(tmp_path / "z0.tif", z0)
    tifffile.imwrite(tmp_path / "zk.tif", zk)
    for options, out in ((["--alpha", 0.5], tmp_path / "out.tif"), (["--sweep"], tmp_path / "sweep.png")):
        command = ["deblur", tmp_path / "z0.tif", tmp_path / "zk.tif", *options, "-c", ckpt, "-o", out, "--out-dtype",
                   "uint16" if out.suffix == ".png" else "float32"]
        result = CliRunner().invoke(app, [str(a) for a in command])
        assert result.exit_code == 0, result.output
    predictor = Predictor.from_checkpoint(ckpt)
    predictor.deblur(z0, zk, 0.5)
    expected = [predictor.checks[0][0].score]
    assert read_provenance(tmp_path / "out.tif")["self_check"] == pytest.approx(expected, abs=1e-3)
    sweep = sorted(tmp_path.glob("sweep_a*.png"))
    records = [read_provenance(p) for p in sweep]
    assert len(sweep) == 7 and all(len(r["self_check"]) == 1 for r in records)
    assert len({r["self_check"][0] for r in records}) > 1  # each level its own number


def test_napari_shows_the_number_in_the_last_run_line(planes, ckpt):
    z0, zk = small_planes(planes)
    data, meta, kind = DeblurRequest(z0, zk, ckpt, alpha=0.5)(Ticker())
    score = meta["metadata"]["self_check"]
    assert kind == "image" and score == self_check(data, z0, zk, 0.5).score
    assert any(line.startswith(f"self-check {score:.2f}") or f"self-check {score:.2f}" in line
               for line in meta["metadata"]["summary"])
