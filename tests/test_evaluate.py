"""evaluate: plane plans, baselines with a known PSF, Eq. 2/3 through a model, the report and the CLI."""

import json
import re

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from blurlatent import evaluate as E
from blurlatent import metrics as M
from blurlatent.errors import UsageError

TINY_WIDTHS = [4, 8, 8]


# --- a tiny store and checkpoints, built directly (no prepare/train) ----------------------------------


def _field(rng, size, planes, sigma_per_plane=0.25):
    img = np.zeros((size, size))
    for _ in range(10):
        y, x = rng.randint(2, size - 2, 2)
        img[y, x] = rng.uniform(0.5, 1.0)
    img = gaussian_filter(img, 1.2)
    return np.stack([gaussian_filter(img, sigma_per_plane * abs(16 - p)) for p in planes])


def _u8(stack):
    stack = stack / stack.max(axis=(-2, -1), keepdims=True)  # per-image min-max, as the store's default
    return (stack * 255).round().astype(np.uint8)


def make_store(root, planes=(0, 8, 16), n_train=4, n_test=3, size=32, full=40, seed=0):
    from blurlatent.store import write_store

    rng = np.random.RandomState(seed)
    arrays = {
        "w1_train": _u8(np.stack([_field(rng, size, planes) for _ in range(n_train)])),
        "w1_val": _u8(np.stack([_field(rng, size, planes)])),
        "w1_test": _u8(np.stack([_field(rng, size, planes) for _ in range(n_test)])),
        "w1_test_full": _u8(np.stack([_field(rng, full, planes) for _ in range(n_test)])),
    }
    fields = [{"name": f"test{i}", "split": "test", "channel": "w1"} for i in range(n_test)]
    fields += [{"name": f"train{i}", "split": "train", "channel": "w1"} for i in range(n_train)]
    write_store(root, {"planes": list(planes), "channels": ["w1"], "fields": fields, "normalize": "minmax"}, arrays)
    return root


def make_checkpoint(path, seed=0, model=None):
    from blurlatent.checkpoint import save_checkpoint
    from blurlatent.config import ModelConfig
    from blurlatent.model import Autoencoder

    torch.manual_seed(seed)
    model = model or Autoencoder(ModelConfig(widths=TINY_WIDTHS))
    save_checkpoint(path, {"config": {"model": {"widths": TINY_WIDTHS}, "data": {"normalize": "minmax"}},
                           "model": model.state_dict(), "epoch": 0})
    return path


def stand_in_extractor(batch):
    """A 4-d feature (mean, std, gradient energy, max) instead of Inception: no weights, no download."""
    gy = (batch[..., 1:, :] - batch[..., :-1, :]).pow(2).mean(dim=(1, 2, 3))
    return torch.stack([batch.mean(dim=(1, 2, 3)), batch.std(dim=(1, 2, 3)), gy, batch.amax(dim=(1, 2, 3))], 1)


# --- planes ------------------------------------------------------------------------------------------


def test_plan_planes_both_sides_of_focus():
    plan = E.plan_planes(range(0, 17, 2))
    assert (plan.far, plan.target, plan.between) == (0, 16, (2, 4, 6, 8, 10, 12, 14))
    assert [plan.synth_alpha(n) for n in (2, 8, 14)] == [0.125, 0.5, 0.875]  # Fig. 2: α = n/16
    assert [plan.deblur_alpha(k) for k in (2, 8, 14)] == [0.875, 0.5, 0.125]  # §3.1.2: α = (16 − k)/16
    above = E.plan_planes(range(16, 33, 2))
    assert (above.far, above.between[0], above.between[-1]) == (32, 30, 18)
    assert above.synth_alpha(30) == 0.125 and above.deblur_alpha(30) == 0.875
    assert E.plan_planes(range(0, 33, 2)).far == 0  # a tie goes to the paper's side
    with pytest.raises(UsageError, match="in-focus plane 16"):
        E.plan_planes([0, 8, 14])
    with pytest.raises(UsageError, match="between"):
        E.plan_planes([0, 16])


# --- baselines with a known Gaussian PSF -------------------------------------------------------------


@pytest.fixture(scope="module")
def known_psf():
    rng = np.random.RandomState(4)
    sharp = np.stack([_field(rng, 48, [16])[0] for _ in range(6)])
    sharp /= sharp.max()
    return sharp


def test_fit_blur_recovers_sigma_gain_and_offset(known_psf):
    sharp = known_psf
    blurred = 0.8 * gaussian_filter(sharp, (0, 2.0, 2.0), mode="reflect") + 0.1
    fit = E.fit_blur(sharp, blurred)
    assert fit.sigma == pytest.approx(2.0, abs=0.02)
    assert fit.gain == pytest.approx(0.8, abs=0.01) and fit.offset == pytest.approx(0.1, abs=0.01)
    assert E.fit_blur(sharp, sharp).sigma < 0.1  # no blur: σ ≈ 0
    np.testing.assert_allclose(fit.synthesize(sharp), np.clip(blurred, 0, 1), atol=1e-3)


def test_gaussian_psf_is_the_kernel_gaussian_blur_applies():
    impulse = np.zeros((41, 41))
    impulse[20, 20] = 1.0
    psf = E.gaussian_psf(2.5)
    r = psf.shape[0] // 2
    np.testing.assert_allclose(E.gaussian_blur(impulse, 2.5)[20 - r : 21 + r, 20 - r : 21 + r], psf, atol=1e-12)


def test_deconvolution_baselines_sharpen_a_known_blur(known_psf):
    sharp = known_psf
    blurred = gaussian_filter(sharp, (0, 1.5, 1.5), mode="reflect")
    fit = E.fit_deconvolution(E.fit_blur(sharp, blurred), blurred[:3], sharp[:3])
    assert fit.rl_iterations in E.RL_ITERATIONS and fit.wiener_balance in E.WIENER_BALANCES
    before = M.psnr_per_image(blurred[3:], sharp[3:]).mean()
    for method in ("rl", "wiener"):
        restored = np.stack([E.deconvolve(b, fit, method) for b in blurred[3:]])
        assert restored.shape == blurred[3:].shape
        assert M.psnr_per_image(restored, sharp[3:]).mean() > before + 3, method
    with pytest.raises(ValueError, match="deconvolution"):
        E.deconvolve(blurred[0], fit, "magic")


# --- Eq. 2 and Eq. 3 through a model -------------------------------------------------------------------


class _PointwiseModel(torch.nn.Module):
    """encode = f(x), decode = f⁻¹(z), pixel by pixel: linear for f(x) = 2x, curved for f(x) = x²."""

    multiple = 4

    def __init__(self, power):
        super().__init__()
        self.power = power

    def encode(self, x):
        return 2 * x if self.power == 1 else x**self.power

    def decode(self, z):
        return z / 2 if self.power == 1 else z.clamp(min=0) ** (1 / self.power)


def _linear_stack(rng, planes=(0, 4, 8, 12, 16), size=8):
    x0, x16 = rng.rand(2, size, size)
    return np.stack([(p / 16) * x16 + (1 - p / 16) * x0 for p in planes])[None].astype(np.float32)


def test_linear_latents_give_lds_1_apd_0_and_exact_deblurring():
    planes = (0, 4, 8, 12, 16)
    plan = E.plan_planes(planes)
    index = {p: i for i, p in enumerate(planes)}
    x = _linear_stack(np.random.RandomState(5), planes)
    mo = E.run_model(_PointwiseModel(1), x, plan, index, "cpu")
    np.testing.assert_allclose(mo.synth[0], x[0, 1:-1], atol=1e-6)  # Eq. 2 reproduces every plane
    np.testing.assert_allclose(mo.deblur[0], np.repeat(x[0, -1:], 3, 0), atol=1e-5)  # Eq. 3 recovers x16 from each k
    assert M.lds(mo.z_synth, mo.z[:, 1:-1]) == pytest.approx(1.0)
    z_interp = np.concatenate([mo.z[:, :1], mo.z_synth, mo.z[:, -1:]], 1)
    assert M.apd(z_interp, mo.z) == pytest.approx(0.0, abs=1e-7)  # float32 codes


def test_curved_latents_are_measured_as_curved():
    planes = (0, 4, 8, 12, 16)
    plan = E.plan_planes(planes)
    index = {p: i for i, p in enumerate(planes)}
    x = _linear_stack(np.random.RandomState(6), planes)
    mo = E.run_model(_PointwiseModel(2), x, plan, index, "cpu")
    # Eq. 2 on z = x²: z'_n = α x16² + (1 − α) x0², not (α x16 + (1 − α) x0)².
    a = 0.25
    np.testing.assert_allclose(mo.z_synth[0, 0, 0], a * x[0, -1] ** 2 + (1 - a) * x[0, 0] ** 2, rtol=1e-5)
    z_interp = np.concatenate([mo.z[:, :1], mo.z_synth, mo.z[:, -1:]], 1)
    assert M.apd(z_interp, mo.z) > 1e-4
    assert M.psnr(mo.deblur[0, 0], x[0, -1]) < 60  # extrapolation along a straight line misses a curved path


# --- the report ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    store = make_store(root / "store")
    ckpts = [make_checkpoint(root / "runs" / name / "best.pt", seed) for seed, name in enumerate(("weak", "strong"))]
    out = root / "report"
    report = E.evaluate(store, ckpts, "w1", out, device="cpu", batch_size=2, progress=False, feature_extractor=stand_in_extractor)
    return root, out, report


def test_report_files_hold_what_the_table_shows(report_dir):
    root, out, report = report_dir
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["summary"] == report["summary"]
    names = [c["name"] for c in on_disk["columns"]]
    assert names[:2] == ["weak/best", "strong/best"]  # colliding stems get their folder
    assert set(on_disk["per_field"]["weak/best"]) == {"test0", "test1", "test2"}
    assert set(on_disk["per_field"]["weak/best"]["test0"]["deblur"]) == {"8"}
    md = (out / "report.md").read_text()
    # Every cell of the markdown table is the JSON number, formatted, bold exactly where "best" says.
    table = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == len(names) + 2 and cells[1].endswith(("↑", "↓")):
            table[cells[1][:-2]] = cells[2:]
    rows = {r.label: r for r in E.ROWS}
    assert "LDS (Eq. 6)" in table and "PSNR-deblur-quality (mean per image)" in table
    for label, cells in table.items():
        row = rows[label]
        for name, cell in zip(names, cells):
            value = on_disk["summary"][name][row.key]
            assert cell.strip("*") == E._fmt(value, row), (label, name)
            assert cell.startswith("**") == (name in on_disk["best"].get(row.key, [])), (label, name)
    # FID from the stand-in features is a real number for the models and the Gaussian baseline.
    for name in ("weak/best", "strong/best"):
        assert np.isfinite(on_disk["summary"][name]["fid_blur"]) and np.isfinite(on_disk["summary"][name]["fid_blur_real"])
    assert np.isfinite(on_disk["summary"]["Gaussian blur (σ fitted)"]["fid_blur_real"])
    assert on_disk["config"]["fid"]["available"] and on_disk["config"]["fid"]["extractor"] == "custom"
    # Figures exist and are PNGs.
    for fig in on_disk["figures"]:
        data = (out / fig).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, fig
    assert {"figures/psnr_deblur_quality_vs_k.png", "figures/deblur_baselines.png", "figures/pca_weak_best.png",
            "figures/transitions_weak_best.png", "figures/deblur_strong_best.png"} <= set(on_disk["figures"])


def test_report_numbers_match_an_independent_computation(report_dir):
    from blurlatent.checkpoint import build_model, load_checkpoint
    from blurlatent.store import Store

    root, out, report = report_dir
    store = Store(root / "store")
    test = store.array("w1", "test").astype(np.float64) / 255.0
    # The "less-blurry input" baseline is x_8 against x_16.
    expected = M.psnr_per_image(test[:, 1], test[:, 2]).mean()
    assert report["summary"]["less-blurry input x_k"]["psnr_deblur_quality_mean"] == pytest.approx(expected, rel=1e-6)
    assert report["summary"]["less-blurry input x_k"]["psnr_deblur_quality_pooled"] == pytest.approx(M.psnr_pooled(test[:, 1], test[:, 2]), rel=1e-6)
    # Model figures: reconstruction of x16 and Eq. 3 with α = 0.5 decoded by the saved model.
    model = build_model(load_checkpoint(root / "runs" / "weak" / "best.pt"))
    with torch.no_grad():
        x = torch.tensor(test, dtype=torch.float32)
        z = model.encode(x.reshape(-1, 1, 32, 32)).reshape(3, 3, *model.encode(x[:1, :1]).shape[1:])
        recon16 = model.decode(z[:, 2]).numpy()[:, 0]
        deblurred = model.decode(z[:, 1] / 0.5 - z[:, 0]).numpy()[:, 0]
    s = report["summary"]["weak/best"]
    assert s["psnr_recon_sharp"] == pytest.approx(M.psnr_per_image(recon16, test[:, 2]).mean(), rel=1e-4)
    assert s["psnr_deblur_quality_mean"] == pytest.approx(M.psnr_per_image(deblurred, test[:, 2]).mean(), rel=1e-4)
    assert s["psnr_deblur_mean"] == pytest.approx(M.psnr_per_image(deblurred, recon16).mean(), rel=1e-4)
    assert s["ssim_deblur_quality"] == pytest.approx(M.ssim_per_image(deblurred, test[:, 2]).mean(), rel=1e-4)
    assert -1.0 <= s["lds"] <= 1.0 and s["apd"] >= 0.0
    # The fitted baseline σ grows with the distance from focus, as the store was built (σ = |16 − n| / 4).
    assert report["config"]["baselines"]["8"]["sigma"] == pytest.approx(2.0, abs=0.5)


def test_existing_report_folder_is_refused_without_force(report_dir, tmp_path):
    root, out, _ = report_dir
    before = (out / "report.json").read_bytes()
    with pytest.raises(UsageError, match="--force"):
        E.evaluate(root / "store", [root / "runs" / "weak" / "best.pt"], "w1", out, device="cpu", progress=False)
    assert (out / "report.json").read_bytes() == before
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not a blurlatent report"):
        E.evaluate(root / "store", [root / "runs" / "weak" / "best.pt"], "w1", other, device="cpu", progress=False, force=True)
    assert (other / "mine.txt").read_text() == "keep me"
    with pytest.raises(UsageError, match="channel"):
        E.evaluate(root / "store", [root / "runs" / "weak" / "best.pt"], "w9", tmp_path / "r", device="cpu", progress=False)
    with pytest.raises(UsageError, match="checkpoint not found"):
        E.evaluate(root / "store", [tmp_path / "nope.pt"], "w1", tmp_path / "r", device="cpu", progress=False)


def test_cli_evaluate_without_fid_weights_reports_fid_unavailable(report_dir, tmp_path):
    from typer.testing import CliRunner

    from blurlatent.cli import app

    import shutil

    root, first, _ = report_dir
    out = tmp_path / "report"
    shutil.copytree(first, out)  # leave the shared report alone for the other tests
    args = ["evaluate", str(root / "store"), "--checkpoint", str(root / "runs" / "weak" / "best.pt"), "--channel", "w1",
            "--out", str(out), "--device", "cpu", "--fid-weights", str(tmp_path / "absent.pth"), "--batch-size", "3"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "--force" in refused.output
    result = CliRunner().invoke(app, args + ["--force"])
    assert result.exit_code == 0, result.output
    assert "PSNR-deblur-quality" in result.output and "FID unavailable" in result.output
    report = json.loads((out / "report.json").read_text())
    assert not report["config"]["fid"]["available"] and M.FID_WEIGHTS_URL in report["config"]["fid"]["note"]
    assert report["summary"]["best"]["fid_blur"] is None  # never a made-up value
    assert report["summary"]["best"]["psnr_blur_pooled"] is not None  # everything else still computed
    assert "FID unavailable" in (out / "report.md").read_text()
    assert not list(out.parent.glob(".report.*"))  # no temp folders left behind


# --- end to end on a tiny trained model ---------------------------------------------------------------


@pytest.mark.slow
def test_end_to_end_whole_fields_tiny_trained_model(tmp_path):
    from blurlatent.config import ModelConfig
    from blurlatent.model import Autoencoder
    from blurlatent.store import Store

    planes = tuple(range(0, 17, 2))
    store = Store(make_store(tmp_path / "store", planes=planes, n_train=6, n_test=2, size=32, full=36))
    torch.manual_seed(0)
    model = Autoencoder(ModelConfig(widths=TINY_WIDTHS))
    train = torch.tensor(store.array("w1", "train").astype(np.float32) / 255.0).reshape(-1, 1, 32, 32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for step in range(60):  # a few steps of plain reconstruction: enough to leave the random init behind
        loss = (model(train) - train).abs().mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
    trained = make_checkpoint(tmp_path / "trained.pt", model=model.eval())
    untrained = make_checkpoint(tmp_path / "untrained.pt", seed=1)
    report = E.evaluate(store, [trained, untrained], "w1", tmp_path / "report", whole=True, device="cpu",
                        batch_size=1, progress=False, feature_extractor=stand_in_extractor, examples=1)
    assert report["config"]["image_size"] == [36, 36] and report["config"]["whole"]
    assert report["config"]["planes"]["between"] == [2, 4, 6, 8, 10, 12, 14]
    s = report["summary"]
    assert s["trained"]["psnr_recon_sharp"] > s["untrained"]["psnr_recon_sharp"]
    assert "trained" in report["best"]["psnr_recon_sharp"]
    per_k = report["per_plane"]["trained"]["deblur_per_k"]
    assert sorted(int(k) for k in per_k) == [2, 4, 6, 8, 10, 12, 14] and per_k["8"]["alpha"] == 0.5
    for name in ("trained", "untrained"):
        assert all(v is None or np.isfinite(v) for v in s[name].values())
    # The less-blurry input gets better as k approaches focus (the store's blur shrinks toward 16).
    inp = report["per_plane"]["less-blurry input x_k"]["deblur_per_k"]
    assert inp["14"]["psnr_deblur_quality"] > inp["2"]["psnr_deblur_quality"]
    md = (tmp_path / "report" / "report.md").read_text()
    assert re.search(r"\| 14 \| 0\.125 \|", md)
    assert len(report["figures"]) == 8
