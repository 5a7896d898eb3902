"""figures: the examples and latents kept for the report's figures, PCA, and the figures written."""

import numpy as np
import pytest
from helpers.eval_data import small_report

from blurlatent.evaluation import plan as P
from blurlatent.evaluation import report_figures as F


@pytest.fixture(scope="module")
def report():
    return small_report()


def test_examples_keep_only_the_first_fields():
    ex = P.Examples(3)
    ex.keep("real", 0, np.zeros((2, 5, 8, 8)), ["a", "b"])
    ex.keep("real", 2, np.ones((2, 5, 8, 8)), ["c", "d"])  # only "c" is among the first three
    ex.keep("real", 4, np.ones((2, 5, 8, 8)), ["e", "f"])
    assert ex.names == ["a", "b", "c"] and len(ex.images["real"]) == 3
    assert ex.images["real"][2].dtype == np.float32 and ex.images["real"][2].mean() == 1.0


def test_latent_samples_stop_at_the_float_budget(monkeypatch):
    monkeypatch.setattr(P, "PCA_FLOAT_BUDGET", 3 * 4 * 10)  # room for three fields of [4 planes, 10 floats]
    kept = P.LatentSamples()
    for _ in range(3):
        kept.keep("m", np.zeros((2, 4, 10, 1, 1)))
    assert len(kept.z["m"]) == 3 and kept.z["m"][0].shape == (4, 10)


def test_pca_keeps_a_straight_segment_straight():
    rng = np.random.RandomState(0)
    a, b = rng.randn(2, 50)
    line = np.stack([a + t * (b - a) for t in np.linspace(0, 1, 9)])
    points = np.concatenate([line, rng.randn(20, 50)])
    proj, mean, comps = F.pca_2d(points)
    assert proj.shape == (29, 2) and mean.shape == (50,) and comps.shape == (2, 50)
    ends = proj[0], proj[8]
    for t, p in zip(np.linspace(0, 1, 9), proj[:9], strict=True):
        np.testing.assert_allclose(p, ends[0] + t * (ends[1] - ends[0]), atol=1e-9)


def test_report_figures_without_examples(report, tmp_path):
    """A report with no kept examples (examples=0) still gets its per-k plot and no empty grids."""
    ex = P.Examples(0)
    for key in ("real", "rl", "wiener", "weak:recon", "weak:synth", "weak:deblur"):
        ex.keep(key, 0, np.zeros((2, 4, 16, 16)), ["f0", "f1"] if key == "real" else None)
    names = F.write_report_figures(tmp_path, report, ex, P.LatentSamples())
    assert names == ["psnr_deblur_quality_vs_k.png"]
    assert (tmp_path / names[0]).read_bytes()[:4] == b"\x89PNG"
    assert F.safe_name("runs/weak best.pt") == "runs_weak_best.pt"
