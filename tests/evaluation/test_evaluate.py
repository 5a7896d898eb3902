"""evaluate: plane plans, Eq. 2/3 through the Predictor, the report's numbers and folder, the CLI, and the
same deblurred image as `blurlatent deblur`."""

import json
import re
import shutil

import numpy as np
import pytest
import torch
from helpers.eval_data import TINY_WIDTHS, make_checkpoint, make_store, stand_in_extractor, write_bbbc_source
from helpers.infer_model import tiny_checkpoint

from blurlatent.config import InferenceConfig
from blurlatent.errors import UsageError
from blurlatent.evaluation import loop as E
from blurlatent.evaluation import metrics as M
from blurlatent.evaluation.columns import ROWS
from blurlatent.evaluation.plan import plan_planes
from blurlatent.evaluation.report import Report, format_value
from blurlatent.inference.predictor import Predictor

# --- planes ------------------------------------------------------------------------------------------


def test_plan_planes_both_sides_of_focus():
    plan = plan_planes(range(0, 17, 2))
    assert (plan.far, plan.target, plan.between) == (0, 16, (2, 4, 6, 8, 10, 12, 14))
    assert [plan.synth_alpha(n) for n in (2, 8, 14)] == [0.125, 0.5, 0.875]  # Fig. 2: α = n/16
    assert [plan.deblur_alpha(k) for k in (2, 8, 14)] == [0.875, 0.5, 0.125]  # §3.1.2: α = (16 − k)/16
    above = plan_planes(range(16, 33, 2))
    assert (above.far, above.between[0], above.between[-1]) == (32, 30, 18)
    assert above.synth_alpha(30) == 0.125 and above.deblur_alpha(30) == 0.875
    assert plan_planes(range(0, 33, 2)).far == 0  # a tie goes to the paper's side
    with pytest.raises(UsageError, match="in-focus plane 16"):
        plan_planes([0, 8, 14])
    with pytest.raises(UsageError, match="between"):
        plan_planes([0, 16])


# --- Eq. 2 and Eq. 3 through the Predictor --------------------------------------------------------------


class PointwiseModel(torch.nn.Module):
    """encode = f(x), decode = f⁻¹(z), pixel by pixel: linear for f(x) = 2x, curved for f(x) = x²."""

    multiple = 4

    def __init__(self, power):
        super().__init__()
        self.power = power
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # the Predictor finds its device from a parameter

    def encode(self, x):
        return 2 * x if self.power == 1 else x**self.power

    def decode(self, z):
        return z / 2 if self.power == 1 else z.clamp(min=0) ** (1 / self.power)


def _pointwise(power):
    return Predictor(PointwiseModel(power), "minmax", config=InferenceConfig(device="cpu"))


def _linear_stack(rng, planes=(0, 4, 8, 12, 16), size=8):
    x0, x16 = rng.rand(2, size, size)
    return np.stack([(p / 16) * x16 + (1 - p / 16) * x0 for p in planes])[None].astype(np.float32)


def test_linear_latents_give_lds_1_apd_0_and_exact_deblurring():
    planes = (0, 4, 8, 12, 16)
    plan = plan_planes(planes)
    index = {p: i for i, p in enumerate(planes)}
    x = _linear_stack(np.random.RandomState(5), planes)
    mo = E.model_outputs(_pointwise(1), x, plan, index)
    np.testing.assert_allclose(mo.synth[0], x[0, 1:-1], atol=1e-6)  # Eq. 2 reproduces every plane
    np.testing.assert_allclose(mo.deblur[0], np.repeat(x[0, -1:], 3, 0), atol=1e-5)  # Eq. 3 recovers x16 from each k
    np.testing.assert_allclose(mo.recon, x, atol=1e-6)
    assert M.lds(mo.z_synth, mo.z[:, 1:-1]) == pytest.approx(1.0)
    z_interp = np.concatenate([mo.z[:, :1], mo.z_synth, mo.z[:, -1:]], 1)
    assert M.apd(z_interp, mo.z) == pytest.approx(0.0, abs=1e-7)  # float32 codes


def test_curved_latents_are_measured_as_curved():
    planes = (0, 4, 8, 12, 16)
    plan = plan_planes(planes)
    index = {p: i for i, p in enumerate(planes)}
    x = _linear_stack(np.random.RandomState(6), planes)
    mo = E.model_outputs(_pointwise(2), x, plan, index)
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
    report = E.evaluate(store, ckpts, "w1", out, device="cpu", batch_size=2, progress=False,
                        feature_extractor=stand_in_extractor)
    return root, out, report


def test_report_files_hold_what_the_table_shows(report_dir):
    root, out, report = report_dir
    assert isinstance(report, Report)
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == report.to_dict()
    names = [c["name"] for c in on_disk["columns"]]
    assert names[:2] == ["weak/best", "strong/best"]  # colliding stems get their folder
    assert set(on_disk["per_field"]["weak/best"]) == {"test0", "test1", "test2"}
    assert set(on_disk["per_field"]["weak/best"]["test0"]["deblur"]) == {"8"}
    assert set(report.column("weak/best").per_field["test0"].deblur) == {8}
    md = (out / "report.md").read_text()
    # Every cell of the markdown table is the JSON number, formatted, bold exactly where "best" says.
    table = {}
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == len(names) + 2 and cells[1].endswith(("↑", "↓")):
            table[cells[1][:-2]] = cells[2:]
    rows = {r.label: r for r in ROWS}
    assert "LDS (Eq. 6)" in table and "PSNR-deblur-quality (mean per image)" in table
    for label, cells in table.items():
        row = rows[label]
        for name, cell in zip(names, cells, strict=True):
            value = on_disk["summary"][name][row.key]
            assert cell.strip("*") == format_value(value, row), (label, name)
            assert cell.startswith("**") == (name in on_disk["best"].get(row.key, [])), (label, name)
    # FID from the stand-in features is a real number for the models and the Gaussian baseline.
    for name in ("weak/best", "strong/best"):
        assert np.isfinite(on_disk["summary"][name]["fid_blur"])
        assert np.isfinite(on_disk["summary"][name]["fid_blur_real"])
    assert np.isfinite(on_disk["summary"]["Gaussian blur (σ fitted)"]["fid_blur_real"])
    assert on_disk["config"]["fid"]["available"] and on_disk["config"]["fid"]["extractor"] == "custom"
    # Figures exist and are PNGs.
    for fig in on_disk["figures"]:
        data = (out / fig).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, fig
    assert {"figures/psnr_deblur_quality_vs_k.png", "figures/deblur_baselines.png", "figures/pca_weak_best.png",
            "figures/transitions_weak_best.png", "figures/deblur_strong_best.png"} <= set(on_disk["figures"])


def test_report_numbers_match_an_independent_computation(report_dir):
    from blurlatent.nets.checkpoint import build_model, load_checkpoint
    from blurlatent.prepare.store import Store

    root, out, report = report_dir
    store = Store(root / "store")
    test = store.array("w1", "test").astype(np.float64) / 255.0
    # The "less-blurry input" baseline is x_8 against x_16.
    expected = M.psnr_per_image(test[:, 1], test[:, 2]).mean()
    given = report.column("less-blurry input x_k").summary
    assert given["psnr_deblur_quality_mean"] == pytest.approx(expected, rel=1e-6)
    assert given["psnr_deblur_quality_pooled"] == pytest.approx(M.psnr_pooled(test[:, 1], test[:, 2]), rel=1e-6)
    # Model figures: reconstruction of x16 and Eq. 3 with α = 0.5 decoded by the saved model, unfused, in
    # plain torch. The report runs the Predictor (BatchNorm fused, channels_last): the same to float32
    # rounding, ~1e-7 per pixel, so PSNRs against the truth agree to 1e-5; PSNR-deblur compares two
    # near-identical model outputs (~100 dB), where that rounding moved the figure by up to 0.003 dB.
    model = build_model(load_checkpoint(root / "runs" / "weak" / "best.pt"))
    with torch.no_grad():
        x = torch.tensor(test, dtype=torch.float32)
        z = model.encode(x.reshape(-1, 1, 32, 32)).reshape(3, 3, *model.encode(x[:1, :1]).shape[1:])
        recon16 = model.decode(z[:, 2]).numpy()[:, 0]
        deblurred = model.decode(z[:, 1] / 0.5 - z[:, 0]).numpy()[:, 0]
    s = report.column("weak/best").summary
    assert s["psnr_recon_sharp"] == pytest.approx(M.psnr_per_image(recon16, test[:, 2]).mean(), rel=1e-5)
    assert s["psnr_deblur_quality_mean"] == pytest.approx(M.psnr_per_image(deblurred, test[:, 2]).mean(), rel=1e-5)
    assert s["psnr_deblur_mean"] == pytest.approx(M.psnr_per_image(deblurred, recon16).mean(), abs=0.01)
    assert s["ssim_deblur_quality"] == pytest.approx(M.ssim_per_image(deblurred, test[:, 2]).mean(), rel=1e-5)
    assert -1.0 <= s["lds"] <= 1.0 and s["apd"] >= 0.0
    # The fitted baseline σ grows with the distance from focus, as the store was built (σ = |16 − n| / 4).
    assert report.config.baselines[8].sigma == pytest.approx(2.0, abs=0.5)
    assert report.to_dict()["config"]["baselines"]["8"]["sigma"] == report.config.baselines[8].sigma


def test_the_two_plane_wiener_column_is_in_every_view_of_the_report(report_dir):
    """The two-plane Wiener baseline (far plane and x_k, PSFs and λ fitted on train) is a deblur column of
    report.json, report.md and the rich tables; its figure is the filter applied again to the test crops."""
    from rich.console import Console

    from blurlatent.evaluation import baselines as B
    from blurlatent.evaluation.report import rich_tables
    from blurlatent.prepare.store import Store

    root, out, report = report_dir
    name = "two-plane Wiener"
    on_disk = json.loads((out / "report.json").read_text())
    assert {"name": name, "kind": "baseline", "tasks": ["deblur"]} in on_disk["columns"]
    assert list(on_disk["config"]["baselines"]) == ["0", "8"]  # the far plane's σ is fitted too
    fits = report.config.baselines
    assert fits[8].two_plane_balance in B.WIENER2_BALANCES
    test = Store(root / "store").array("w1", "test").astype(np.float64) / 255.0
    again = np.stack([B.two_plane_wiener(f, n, fits[0], fits[8], fits[8].two_plane_balance)
                      for f, n in zip(test[:, 0], test[:, 1], strict=True)])
    expected = M.psnr_per_image(again, test[:, 2]).mean()
    assert on_disk["summary"][name]["psnr_deblur_quality_mean"] == pytest.approx(expected, rel=1e-6)
    md = (out / "report.md").read_text()
    assert name in md.split("## PSNR-deblur-quality vs k")[1].splitlines()[2]  # the per-k table's header
    assert "Two-plane Wiener: the classical counterpart of Eq. 3" in md
    assert f"| 8 | {fits[8].sigma:.3f} |" in md and f"| {fits[8].two_plane_balance:.3g} |" in md
    console = Console(record=True, width=300)
    for table in rich_tables(report):
        console.print(table)
    assert name in console.export_text()


def test_existing_report_folder_is_refused_without_force(report_dir, tmp_path):
    root, out, _ = report_dir
    weak = [root / "runs" / "weak" / "best.pt"]
    before = (out / "report.json").read_bytes()
    with pytest.raises(UsageError, match="force"):
        E.evaluate(root / "store", weak, "w1", out, device="cpu", progress=False)
    assert (out / "report.json").read_bytes() == before
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not a blurlatent report"):
        E.evaluate(root / "store", weak, "w1", other, device="cpu", progress=False, force=True)
    assert (other / "mine.txt").read_text() == "keep me"
    # A report folder with something a report does not hold is never replaced either, even with force.
    mixed = tmp_path / "mixed"
    shutil.copytree(out, mixed)
    (mixed / "figures" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="figures/notes.txt"):
        E.evaluate(root / "store", weak, "w1", mixed, device="cpu", progress=False, force=True)
    assert (mixed / "figures" / "notes.txt").read_text() == "mine"
    with pytest.raises(UsageError, match="channel"):
        E.evaluate(root / "store", weak, "w9", tmp_path / "r", device="cpu", progress=False)
    with pytest.raises(UsageError, match="checkpoint not found"):
        E.evaluate(root / "store", [tmp_path / "nope.pt"], "w1", tmp_path / "r", device="cpu", progress=False)
    with pytest.raises(UsageError, match="^batch_size 0: must be at least 1"):
        E.evaluate(root / "store", weak, "w1", tmp_path / "r", batch_size=0)
    assert not (tmp_path / "r").exists()


def test_cli_evaluate_without_fid_weights_reports_fid_unavailable(report_dir, tmp_path):
    from typer.testing import CliRunner

    from blurlatent.cli import app

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


# --- the same forward path as `blurlatent deblur` ------------------------------------------------------


def test_evaluate_deblurs_a_field_as_the_deblur_command_does(tmp_path, tmp_path_factory):
    """evaluate's deblurred image of a whole test field (Eq. 3 from planes 0 and 8) equals what
    `blurlatent deblur` writes for that field's two source files with the same checkpoint, and the
    report's PSNR for that field is the PSNR of the command's output."""
    from typer.testing import CliRunner

    from blurlatent.cli import app
    from blurlatent.files.images import read_image
    from blurlatent.prepare.builder import prepare
    from blurlatent.prepare.store import Store

    source = write_bbbc_source(tmp_path / "src", fields=5, shape=(44, 52))  # not a multiple of 8: padded
    store = Store(prepare(source, tmp_path / "store", channels=["w1"], planes=[0, 8, 16], crop=32,
                          split=(40, 20, 40), workers=1).path)
    ckpt = tiny_checkpoint(tmp_path_factory)  # trained: real BatchNorm statistics for the fused path
    report = E.evaluate(store, [ckpt], "w1", tmp_path / "report", whole=True, device="cpu", batch_size=2,
                        progress=False, feature_extractor=stand_in_extractor)
    plan = plan_planes(store.planes)
    predictor, _ = E.load_predictor(ckpt, "tiny", "cpu", batch_size=2)
    data = store.full_test("w1")
    record = sorted(store.fields("test", "w1"), key=lambda r: r.get("index", 0))[1]
    x = np.asarray(data[1:2], np.float32) / 255.0
    ours = E.model_outputs(predictor, x, plan, E.plane_indices(store, plan)).deblur[0, plan.between.index(8)]

    files = {p["plane"]: p["file"] for p in record["planes"]}
    out = tmp_path / "deblurred.tif"
    result = CliRunner().invoke(app, ["deblur", files[0], files[8], "-c", str(ckpt), "--alpha", "0.5", "--intensity",
                                      "minmax", "--out-dtype", "float32", "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    theirs = read_image(out).astype(np.float64) / 65535.0  # minmax maps [0, 1] to the file's range [0, 65535]
    assert ours.shape == theirs.shape == (44, 52)
    assert np.ptp(ours) > 0.1  # a real image, not a constant
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)  # measured 3e-8: float32 rounding
    truth = read_image(files[16]).astype(np.float64) / 65535.0
    field = E.field_labels(store, "w1", len(data))[1]
    field_scores = report.column(ckpt.stem).per_field[field].deblur[8]
    assert field_scores.psnr_deblur_quality == pytest.approx(M.psnr(theirs, truth), abs=1e-5)


def test_stack_normalized_store_and_checkpoint_evaluate(tmp_path, tmp_path_factory, caplog):
    """prepare normalize="stack" → a stack-trained checkpoint → evaluate: runs, records both normalizations,
    and does not warn about a mismatch (it does for a minmax checkpoint on that store)."""
    from blurlatent.prepare.builder import prepare

    source = write_bbbc_source(tmp_path / "src", fields=5, shape=(36, 40))
    store = prepare(source, tmp_path / "store", channels=["w1"], planes=[0, 8, 16], crop=32, split=(40, 20, 40),
                    normalize="stack", workers=1).path
    stack, minmax = tiny_checkpoint(tmp_path_factory, normalize="stack"), tiny_checkpoint(tmp_path_factory)
    with caplog.at_level("WARNING"):
        report = E.evaluate(store, [stack, minmax], "w1", tmp_path / "report", device="cpu", progress=False,
                            feature_extractor=stand_in_extractor)
    assert report.config.store_normalize == "stack"
    assert [c.normalize for c in report.checkpoints] == ["stack", "minmax"]
    assert [r.getMessage() for r in caplog.records if "normalized" in r.getMessage()] == [
        f"{minmax} was trained on 'minmax'-normalized data but the store is 'stack'; numbers may not transfer"]
    assert np.isfinite(report.column(stack.stem).summary["psnr_deblur_quality_mean"])


# --- end to end on a tiny trained model ---------------------------------------------------------------


@pytest.mark.slow
def test_end_to_end_whole_fields_tiny_trained_model(tmp_path):
    from blurlatent.config import ModelConfig
    from blurlatent.nets.autoencoder import Autoencoder
    from blurlatent.prepare.store import Store

    planes = tuple(range(0, 17, 2))
    store = Store(make_store(tmp_path / "store", planes=planes, n_train=6, n_test=2, size=32, full=36))
    torch.manual_seed(0)
    model = Autoencoder(ModelConfig(widths=TINY_WIDTHS))
    train = torch.tensor(store.array("w1", "train").astype(np.float32) / 255.0).reshape(-1, 1, 32, 32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):  # a few steps of plain reconstruction: enough to leave the random init behind
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
    assert report.config.image_size == (36, 36) and report.config.whole
    assert report.config.plan.between == (2, 4, 6, 8, 10, 12, 14)
    s = {c.name: c.summary for c in report.columns}
    assert s["trained"]["psnr_recon_sharp"] > s["untrained"]["psnr_recon_sharp"]
    assert "trained" in report.best["psnr_recon_sharp"]
    per_k = report.column("trained").deblur_per_k
    assert sorted(per_k) == [2, 4, 6, 8, 10, 12, 14] and per_k[8].alpha == 0.5
    for name in ("trained", "untrained"):
        assert all(v is None or np.isfinite(v) for v in s[name].values())
    # The less-blurry input gets better as k approaches focus (the store's blur shrinks toward 16).
    inp = report.column("less-blurry input x_k").deblur_per_k
    assert inp[14].psnr_deblur_quality > inp[2].psnr_deblur_quality
    md = (tmp_path / "report" / "report.md").read_text()
    assert re.search(r"\| 14 \| 0\.125 \|", md)
    assert len(report.figures) == 8
    on_disk = json.loads((tmp_path / "report" / "report.json").read_text())
    assert on_disk["config"]["image_size"] == [36, 36]
    assert on_disk["per_plane"]["trained"]["deblur_per_k"]["8"]["alpha"] == 0.5
