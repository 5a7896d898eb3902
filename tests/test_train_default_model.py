"""examples/train_default_model.py end to end in its smoke mode: a model, slim weights, a card that the
built-in model loader accepts (checksum), and benchmark figures taken from bench_quality.py's JSON."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from blurlatent.builtin import builtin_model, builtin_path
from blurlatent.inference import load_model

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_default_model.py"


@pytest.mark.slow
def test_smoke_run_makes_a_loadable_model_with_its_card(tmp_path):
    out = tmp_path / "dm"
    run = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--smoke", "--channels", "w1",
                          "--device", "cpu"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    model = builtin_model("w1", out / "models")
    assert builtin_path(model) == out / "models" / "w1.pt"  # the card's sha256 is the file's
    ckpt = torch.load(model.path, weights_only=True)
    assert "optimizer" not in ckpt and ckpt["config"]["model"]["arch"] == "multiscale"
    card = model.card
    assert card["precision"] in ("float16", "bfloat16", "float32") and card["max_abs_diff"] <= 1e-3
    bench = json.loads((out / "bench" / "w1" / "bench_quality.json").read_text())
    for name, method in (("this model", "builtin"), ("less-blurry input", "identity")):
        figures = bench["methods"][method]["deblur"]["8"]
        assert card["benchmark"]["deblur"][name]["(0,8)"] == [round(figures["psnr"], 3), round(figures["ssim"], 3)]
    predictor = load_model(model.path, device="cpu")
    x = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    assert predictor.deblur(x[0], x[1], 0.5).shape == (32, 32)
