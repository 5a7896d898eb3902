"""`blurlatent demo --fast` end to end, as CI runs it: the verdicts it prints must be measured and true."""

import itertools
import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from blurlatent import demo
from blurlatent.bbbc006 import FOCUS_TRIPLETS, PAPER_TRIPLETS
from blurlatent.cli import app
from blurlatent.config import ModelConfig, TrainConfig, to_dict
from blurlatent.demo import sharpness
from blurlatent.files.output_folders import write_marker


@pytest.mark.slow
def test_demo_fast_runs_and_its_claims_hold(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--fast", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "demo.json").read_text())
    deblur = summary["checks"]["deblur_beats_input"]
    # The promise: the deblurred field is measurably closer to the true in-focus plane than
    # the less-blurry input, on both PSNR and SSIM, and the synthesized levels are ordered.
    assert deblur["deblurred"]["psnr"] > deblur["less_blurry_input_z8"]["psnr"]
    assert deblur["deblurred"]["ssim"] > deblur["less_blurry_input_z8"]["ssim"]
    sharp = summary["checks"]["blur_levels_ordered"]["sharpness"]
    assert all(b > a for a, b in itertools.pairwise(sharp))
    assert summary["passed"] is True
    for name in ("demo.png", "blur_levels.tif", "deblurred.tif", "report/report.md", "report/report.json"):
        assert (out / name).is_file(), name
    assert "deblurred closer to true z16" in result.output


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    result = CliRunner().invoke(app, ["demo", "--fast", "--out", str(tmp_path), "--force"])
    assert result.exit_code == 2
    assert "not a blurlatent demo folder" in result.output
    assert (tmp_path / "mine.txt").read_text() == "precious"


@pytest.mark.parametrize("fast", [True, False])
def test_demo_trains_what_train_trains_and_paper_as_the_paper_did(tmp_path, fast):
    settings = demo.FAST if fast else demo.FULL
    ms = demo.train_config(tmp_path, settings[ModelConfig.arch], "cpu", 0).check()
    assert (ms.model.arch, ms.model.skips, ms.deblur_weight, ms.data.alpha) == ("multiscale", "quarter", 1.0, "planes")
    assert [tuple(t) for t in ms.data.triplets] == list(FOCUS_TRIPLETS)
    # `train`'s defaults, but for the demo's sizes, schedule, store and weak loss
    defaults, own = to_dict(TrainConfig()), to_dict(ms)
    assert {k for k in defaults if defaults[k] != own[k]} == {"model", "data", "optim", "reg", "device", "strip_every"}
    assert {k for k in defaults["model"] if defaults["model"][k] != own["model"][k]} == {"widths"}
    assert {k for k in defaults["data"] if defaults["data"][k] != own["data"][k]} == {"store"}
    paper = demo.train_config(tmp_path, settings["paper"], "cpu", 0).check()
    assert (paper.model.arch, paper.deblur_weight, paper.data.alpha) == ("paper", 0.0, 0.5)
    assert [tuple(t) for t in paper.data.triplets] == list(PAPER_TRIPLETS)
    # the same number of training triplets per run within 2× (an epoch of focus triplets holds 4× the paper's)
    ratio = len(ms.data.triplets) * ms.optim.epochs / (len(paper.data.triplets) * paper.optim.epochs)
    assert 0.5 <= ratio <= 2.0


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
