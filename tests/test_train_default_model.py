"""examples/train_default_model.py end to end in its smoke mode: a model, slim weights, a card that the
built-in model loader accepts (checksum), and benchmark figures taken from bench_quality.py's JSON."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from blurlatent.inference.builtin import builtin_model, builtin_path
from blurlatent.inference.predictor import load_model

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


def _script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_default_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench_result(model: dict, identity: dict) -> dict:
    """A bench_quality.json's methods for the model ("builtin") and the input ("identity"), PSNR per k."""
    return {"methods": {name: {"deblur": {str(k): {"psnr": v, "ssim": 0.5} for k, v in psnr.items()}}
                        for name, psnr in (("builtin", model), ("identity", identity))}}


def test_install_refuses_a_model_below_its_input_at_any_k():
    below_input = _script().below_input
    assert below_input(_bench_result({2: 25.0, 8: 28.0, 14: 34.1}, {2: 22.0, 8: 25.0, 14: 34.0})) == []
    # the w2 run that was not shipped: below its input at k = 2 and 6, above from k = 8
    w2 = _bench_result({2: 24.28, 6: 25.19, 8: 25.95, 10: 27.0}, {2: 24.90, 6: 25.24, 8: 25.57, 10: 26.0})
    assert below_input(w2) == ["(0,2)", "(0,6)"]
    assert below_input(_bench_result({10: 20.0, 2: 20.0}, {10: 21.0, 2: 19.0})) == ["(0,10)"]  # by k, not by text
