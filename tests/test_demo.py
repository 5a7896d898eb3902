"""`blurlatent demo --fast` end to end, as CI runs it: the verdicts it prints must be measured and true."""

import itertools
import json

import numpy as np
import pytest
import tifffile
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio
from typer.testing import CliRunner

from blurlatent import demo
from blurlatent.bbbc006 import FOCUS_TRIPLETS, PAPER_TRIPLETS
from blurlatent.cli import app
from blurlatent.config import DEMO_ARCH, TrainConfig, to_dict
from blurlatent.demo import sharpness
from blurlatent.files.images import read_image
from blurlatent.files.output_folders import write_marker
from blurlatent.prepare.store import Store


@pytest.mark.slow
def test_demo_fast_runs_and_its_claims_hold(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--fast", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "demo.json").read_text())
    # The verdicts are measured: recomputed here from the files the demo wrote and the true in-focus plane
    store = Store(out / "prepared")
    record = store.fields(split="test", channel="w1")[0]
    truth = demo.unit(store.source_image(record, 16))
    for check, output in (("deblur_beats_input", "deblurred.tif"), ("builtin_deblur_beats_input", "deblurred_w1.tif")):
        scores = summary["checks"][check]
        # the calibrated PSNR: scikit-image's, after the least-squares gain/offset fit to the truth
        compared = (("deblurred", read_image(out / output)), ("less_blurry_input_z8", store.source_image(record, 8)))
        for key, image in compared:
            x = demo.unit(image).ravel().astype(np.float64)
            gain, offset = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), truth.ravel(), rcond=None)[0]
            fitted = (gain * x + offset).reshape(truth.shape)
            expected = peak_signal_noise_ratio(truth, fitted, data_range=1.0)
            assert scores[key]["psnr"] == pytest.approx(expected, abs=1e-3)
        # the promise: the deblurred field is closer to the true in-focus plane than the less-blurry input
        assert scores["deblurred"]["psnr"] > scores["less_blurry_input_z8"]["psnr"], check
        assert scores["deblurred"]["ssim"] > scores["less_blurry_input_z8"]["ssim"], check
    levels = tifffile.imread(out / "blur_levels.tif")  # the seven levels, one page each
    sharp = summary["checks"]["blur_levels_ordered"]["sharpness"]
    assert sharp == pytest.approx([sharpness(level) for level in levels])
    assert all(b > a for a, b in itertools.pairwise(sharp))
    assert summary["passed"] is True
    for name in ("demo.png", "blur_levels.tif", "deblurred.tif", "deblurred_w1.tif", "report/report.md",
                 "report/report.json"):
        assert (out / name).is_file(), name
    report = (out / "report" / "report.md").read_text()
    assert "best" in report and "w1" in report, "both models in the report"
    assert "trained here: deblurred closer" in result.output and "built-in w1: the same" in result.output


def test_demo_needs_the_eval_extra_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr("blurlatent.evaluation.metrics.EVAL_EXTRA", ("matplotlib", "no_such_module_here"))
    result = CliRunner().invoke(app, ["demo", "--fast", "--out", str(tmp_path / "demo"), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "pip install 'blurlatent[eval]'" in result.output and "no_such_module_here" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "demo").exists()


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    result = CliRunner().invoke(app, ["demo", "--fast", "--out", str(tmp_path), "--force"])
    assert result.exit_code == 2
    assert "not a blurlatent demo folder" in result.output
    assert (tmp_path / "mine.txt").read_text() == "precious"


@pytest.mark.parametrize("fast", [True, False])
def test_demo_trains_the_paper_model_as_the_paper_did_and_multiscale_as_train_does(tmp_path, fast):
    settings = demo.FAST if fast else demo.FULL
    paper = demo.train_config(tmp_path, settings[DEMO_ARCH], "cpu", 0).check()
    assert DEMO_ARCH == "paper"
    assert (paper.model.arch, paper.deblur_weight, paper.data.alpha) == ("paper", 0.0, 0.5)
    assert [tuple(t) for t in paper.data.triplets] == list(PAPER_TRIPLETS)
    ms = demo.train_config(tmp_path, settings["multiscale"], "cpu", 0).check()
    assert (ms.model.arch, ms.model.skips, ms.deblur_weight, ms.data.alpha) == ("multiscale", "quarter", 1.0, "planes")
    assert [tuple(t) for t in ms.data.triplets] == list(FOCUS_TRIPLETS)
    # `train`'s defaults, but for the demo's sizes, schedule, store and weak loss
    defaults, own = to_dict(TrainConfig()), to_dict(ms)
    assert {k for k in defaults if defaults[k] != own[k]} == {"model", "data", "optim", "reg", "device", "strip_every"}
    assert {k for k in defaults["model"] if defaults["model"][k] != own["model"][k]} == {"widths"}
    assert {k for k in defaults["data"] if defaults["data"][k] != own["data"][k]} == {"store"}


@pytest.mark.parametrize("bad", [["--seed", "-1"], ["--device", "cuda:7"], ["--arch", "unet"]])
def test_demo_validates_its_options_before_replacing_an_earlier_demo(tmp_path, bad):
    out = tmp_path / "demo"
    (out / "synthetic").mkdir(parents=True)
    (out / "demo.json").write_text("{}\n")
    result = CliRunner().invoke(app, ["demo", "--fast", "--out", str(out), "--force", "--device", "cpu", *bad])
    assert result.exit_code == 2, result.output
    assert bad[1] in result.output and len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["demo.json", "synthetic"]  # nothing deleted


def test_demo_force_replaces_only_a_folder_of_demo_outputs(tmp_path):
    out = tmp_path / "demo"
    (out / "run").mkdir(parents=True)  # demo-named, but no marker: not provably a demo (nor one of a version
    (out / "demo.json").write_text('{"checks": {}}')  # before markers), refused even with --force
    result = CliRunner().invoke(app, ["demo", "--fast", "--out", str(out), "--force", "--device", "cpu"])
    assert result.exit_code == 2 and "not a blurlatent demo folder" in result.output
    write_marker(out, "demo", demo.DEMO_FILES, nested=demo.NESTED)  # a demo's marker, but a file it did not write
    (out / "thesis.docx").write_text("precious")
    result = CliRunner().invoke(app, ["demo", "--fast", "--out", str(out), "--force", "--device", "cpu"])
    assert result.exit_code == 2 and "thesis.docx" in result.output
    assert (out / "thesis.docx").read_text() == "precious"


def test_sharpness_ranks_blur_not_brightness():
    rng = np.random.default_rng(0)
    image = gaussian_filter(rng.random((64, 64)), 1.0)
    blurred = gaussian_filter(image, 3.0)
    assert sharpness(image) > sharpness(blurred)
    assert sharpness(image) == pytest.approx(sharpness(5 * image + 100))
