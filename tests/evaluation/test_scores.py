"""scores: per-image metrics gathered into a report column — means, pooled PSNRs, per-plane rows, best, FID."""

import numpy as np
import pytest

from blurlatent.evaluation import metrics as M
from blurlatent.evaluation.columns import ROWS, ColumnResult, ColumnScorer, best_columns, fid_values
from blurlatent.evaluation.plan import plan_planes

NAMES = ["f0", "f1", "f2"]


def _images(seed, shape=(3, 2, 16, 16)):
    return np.random.RandomState(seed).rand(*shape)


def test_a_model_column_gathers_means_pooled_psnrs_and_per_plane_rows():
    plan = plan_planes([0, 8, 12, 16])
    real, truth = _images(0), _images(1, (3, 16, 16))
    synth, recon, deblurred = np.clip(real + 0.05 * _images(2) - 0.025, 0, 1), _images(3), _images(4)
    col = ColumnScorer("m", "model", ("blur", "deblur", "latent"))
    col.add_blur(NAMES[:2], plan, synth[:2], real[:2], recon[:2])  # two batches: pooling does not care
    col.add_blur(NAMES[2:], plan, synth[2:], real[2:], recon[2:])
    col.add_deblur(NAMES, plan, deblurred, truth, recon[:, 1])
    col.add_latent(NAMES, [0.9, 0.8, 0.7], [1e-3, 2e-3, 3e-3], [30.0, 31.0, 32.0])
    result = col.result(plan, {"fid_blur": 1.5})
    s = result.summary
    assert list(s) == [r.key for r in ROWS]
    per_image = np.concatenate([M.psnr_per_image(synth[:, j], real[:, j]) for j in range(2)])
    assert s["psnr_blur_quality_mean"] == pytest.approx(per_image.mean(), rel=1e-12)
    assert s["psnr_blur_quality_pooled"] == pytest.approx(M.psnr_pooled(synth, real), rel=1e-12)
    assert s["psnr_deblur_pooled"] == pytest.approx(M.psnr_pooled(deblurred, np.stack([recon[:, 1]] * 2, 1)), rel=1e-12)
    assert s["lds"] == pytest.approx(0.8) and s["apd"] == pytest.approx(2e-3)
    assert s["psnr_recon_sharp"] == pytest.approx(31.0)
    assert s["fid_blur"] == 1.5 and s["fid_blur_real"] is None
    row = result.blur_per_plane[12]
    assert row.psnr_blur_quality == pytest.approx(M.psnr_per_image(synth[:, 1], real[:, 1]).mean(), rel=1e-12)
    assert row.psnr_blur_quality_pooled == pytest.approx(M.psnr_pooled(synth[:, 1], real[:, 1]), rel=1e-12)
    k8 = result.deblur_per_k[8]
    assert k8.alpha == 0.5 and k8.psnr_deblur_quality_pooled == pytest.approx(M.psnr_pooled(deblurred[:, 0], truth))
    f1 = result.per_field["f1"]
    assert f1.blur[8].psnr_blur == pytest.approx(M.psnr(synth[1, 0], recon[1, 0]), rel=1e-12) and f1.lds == 0.8


def test_a_baseline_column_has_no_reconstruction_figures():
    plan = plan_planes([0, 8, 16])
    real, truth = _images(5, (3, 1, 16, 16)), _images(6, (3, 16, 16))
    col = ColumnScorer("input", "baseline", ("deblur",))
    col.add_deblur(NAMES, plan, real, truth)
    result = col.result(plan, {})
    assert result.summary["psnr_deblur_mean"] is None and result.summary["psnr_deblur_quality_mean"] is not None
    assert result.summary["lds"] is None and result.blur_per_plane == {}
    assert result.per_field["f0"].deblur[8].psnr_deblur is None
    assert result.per_field["f0"].to_dict() == {"deblur": {8: {
        k: getattr(result.per_field["f0"].deblur[8], k)
        for k in ("psnr_deblur_quality", "ssim_deblur_quality", "psnr_deblur_quality_cal", "ssim_deblur_quality_cal")}}}


def _column(name, **summary):
    return ColumnResult(name, "model", ("blur",), {r.key: summary.get(r.key) for r in ROWS}, {}, {}, {})


def test_best_columns_marks_ties_and_skips_missing_or_infinite_values():
    columns = [_column("a", lds=0.9, apd=0.1, psnr_recon_sharp=float("inf")),
               _column("b", lds=0.9, apd=0.2, psnr_recon_sharp=30.0), _column("c", apd=None)]
    best = best_columns(columns)
    assert best["lds"] == ["a", "b"]  # higher is better, ties all marked
    assert best["apd"] == ["a"]  # lower is better
    assert best["psnr_recon_sharp"] == ["b"]  # inf (identical images) is not a winner
    assert "ffl_blur" not in best


def test_fid_values_from_gathered_features_or_none_without_fid():
    rng = np.random.RandomState(7)
    model, base = ColumnScorer("m", "model", ("blur",)), ColumnScorer("g", "baseline", ("blur",))
    real = [rng.randn(6, 3)]
    model.add_features("synth", rng.randn(6, 3) + 1)
    model.add_features("recon", rng.randn(6, 3))
    base.add_features("synth", rng.randn(6, 3))
    fids = fid_values([model, base], real, None)
    assert fids["m"]["fid_blur_real"] == pytest.approx(M.fid_from_features(model.features["synth"][0], real[0]))
    assert set(fids["m"]) == {"fid_blur", "fid_blur_real"} and set(fids["g"]) == {"fid_blur_real"}
    assert fid_values([model, base], real, "FID unavailable: no weights") == {}
