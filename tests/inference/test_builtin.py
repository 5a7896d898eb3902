"""Built-in models: slimming a checkpoint, the card, the checksum check, `blurlatent models`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from helpers.infer_model import pair, tiny_checkpoint
from typer.testing import CliRunner

import blurlatent
from blurlatent.cli import app
from blurlatent.errors import RuntimeFailure, UsageError
from blurlatent.inference import builtin
from blurlatent.inference.builtin import builtin_model, builtin_models, builtin_path, resolve_checkpoint
from blurlatent.inference.predictor import load_model
from blurlatent.inference.shipping import TOLERANCE, slim_checkpoint


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A models folder holding the tiny checkpoint slimmed, with its card."""
    folder = tmp_path_factory.mktemp("models")
    probe = np.stack([np.stack(pair(seed)) for seed in (1, 2)])
    facts = slim_checkpoint(tiny_checkpoint(tmp_path_factory), folder / "w1.pt", probe)
    card = {"name": "w1", "channel": "w1", "file": "w1.pt", "summary": "tiny test model", "arch": "paper", **facts}
    (folder / "w1.json").write_text(json.dumps(card))
    return folder, facts, probe


def test_slim_checkpoint_has_no_training_state_and_loads_weights_only(shipped):
    folder, facts, _ = shipped
    ckpt = torch.load(folder / "w1.pt", weights_only=True)
    assert set(ckpt) <= {"format_version", "package_version", "torch_version", "config", "model"}
    assert {str(v.dtype).replace("torch.", "") for v in ckpt["model"].values() if v.is_floating_point()} == {
        facts["precision"]}
    assert facts["precision"] == "float16"  # the tiny model's outputs move by far less than 1e-3 in fp16


def test_slim_outputs_stay_within_tolerance_of_the_original(shipped, tmp_path_factory):
    folder, facts, probe = shipped
    original = load_model(tiny_checkpoint(tmp_path_factory), device="cpu", fuse=False)
    slim = load_model(folder / "w1.pt", device="cpu", fuse=False)
    a = original.combine(probe[:, 0], probe[:, 1], [0.5], "deblur")
    b = slim.combine(probe[:, 0], probe[:, 1], [0.5], "deblur")
    diff = float(np.abs(a - b).max())
    assert 0 < diff <= TOLERANCE  # rounded (not a copy of float32), yet within the promise
    assert diff == pytest.approx(facts["max_abs_diff"], abs=1e-7)


def test_card_checksum_is_verified(shipped, tmp_path):
    folder, _, _ = shipped
    model = builtin_model("w1", folder)
    assert builtin_path(model) == folder / "w1.pt"
    damaged = tmp_path / "models"
    damaged.mkdir()
    data = bytearray((folder / "w1.pt").read_bytes())
    data[-100] ^= 1
    (damaged / "w1.pt").write_bytes(bytes(data))
    (damaged / "w1.json").write_text((folder / "w1.json").read_text())
    with pytest.raises(RuntimeFailure, match="damaged .*reinstall"):
        builtin_path(builtin_model("w1", damaged))
    (damaged / "w1.pt").unlink()
    with pytest.raises(RuntimeFailure, match="missing"):
        builtin_path(builtin_model("w1", damaged))


def test_unknown_channel_names_the_channels_there_are(shipped):
    folder, _, _ = shipped
    with pytest.raises(UsageError, match="no built-in model named w2 .*built-in: w1"):
        builtin_model("w2", folder)


def test_models_command_lists_the_cards(shipped, monkeypatch):
    folder, _, _ = shipped
    monkeypatch.setattr(builtin, "MODELS_DIR", folder)
    result = CliRunner().invoke(app, ["models", "--verify"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "tiny test model" in result.output and "sha256 ok" in result.output
    assert [m.name for m in builtin_models(folder)] == ["w1"]


def test_resolve_checkpoint_prefers_the_users_and_refuses_both(shipped, monkeypatch, tmp_path):
    folder, _, _ = shipped
    monkeypatch.setattr(builtin, "MODELS_DIR", folder)
    assert resolve_checkpoint(tmp_path / "mine.pt") == (tmp_path / "mine.pt", None)
    path, note = resolve_checkpoint(None)
    assert path == folder / "w1.pt" and note.startswith("using the built-in w1 model (tiny test model")
    with pytest.raises(UsageError, match=r"both model \(w1\) and checkpoint"):
        resolve_checkpoint(tmp_path / "mine.pt", "w1")


def test_cli_without_checkpoint_equals_cli_with_the_builtin_file(shipped, monkeypatch, tmp_path):
    folder, _, probe = shipped
    monkeypatch.setattr(builtin, "MODELS_DIR", folder)
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    tifffile.imwrite(a, (probe[0, 0] * 60000).astype(np.uint16))
    tifffile.imwrite(b, (probe[0, 1] * 60000).astype(np.uint16))
    runner = CliRunner()
    default = runner.invoke(app, ["deblur", str(a), str(b), "--alpha", "0.5", "-o", str(tmp_path / "d.tif")])
    assert default.exit_code == 0, default.output
    assert "using the built-in w1 model" in default.output
    given = runner.invoke(app, ["deblur", str(a), str(b), "--alpha", "0.5", "-c", str(folder / "w1.pt"),
                                "-o", str(tmp_path / "c.tif")])
    assert given.exit_code == 0 and "built-in" not in given.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "d.tif"), tifffile.imread(tmp_path / "c.tif"))
    both = runner.invoke(app, ["deblur", str(a), str(b), "--alpha", "0.5", "-c", str(folder / "w1.pt"), "-m", "w1",
                               "-o", str(tmp_path / "e.tif")])
    assert both.exit_code == 2 and "both --model (w1) and --checkpoint" in both.output


def test_api_without_a_model_uses_the_builtin(shipped, monkeypatch):
    folder, _, probe = shipped
    monkeypatch.setattr(builtin, "MODELS_DIR", folder)
    expected = load_model(folder / "w1.pt", device="cpu").deblur(probe[0, 0], probe[0, 1], 0.5)
    np.testing.assert_array_equal(blurlatent.deblur(None, probe[0, 0], probe[0, 1], 0.5), expected)


def test_a_builtin_model_is_a_name_everywhere(shipped, monkeypatch, tmp_path):
    """Issue 26: one resolver (``named_builtin``) gives "w1" its meaning for --checkpoint, export, train --init and
    napari's checkpoint field; a bare name that is also a file here is refused, and ``--model ''`` is no model."""
    from blurlatent.inference.builtin import checkpoint_file, named_builtin
    from blurlatent.napari.jobs import checkpoint_path
    from blurlatent.training.run_folder import init_model

    folder, _, _ = shipped
    monkeypatch.setattr(builtin, "MODELS_DIR", folder)
    monkeypatch.chdir(tmp_path)
    assert named_builtin("w1").name == "w1" and named_builtin("runs/w1") is None and named_builtin("w2") is None
    assert checkpoint_file("w1") == folder / "w1.pt" and checkpoint_file("mine.pt") == Path("mine.pt")
    path, note = resolve_checkpoint("w1")
    assert path == folder / "w1.pt" and note.startswith("using the built-in w1 model")
    assert checkpoint_path("w1") == folder / "w1.pt" == checkpoint_path("")
    assert init_model("w1")["model.widths"] == torch.load(folder / "w1.pt", weights_only=True)["config"]["model"][
        "widths"]
    with pytest.raises(UsageError, match=r"model '' is empty; .*leave model out for the default"):
        resolve_checkpoint(None, "")
    (tmp_path / "w1").write_bytes(b"the user's own file named w1")
    with pytest.raises(UsageError, match=f"init w1: names a built-in model and a file in this folder; pass the "
                                         f"file as {tmp_path / 'w1'}"):
        checkpoint_file("w1", "init")
    (tmp_path / "w1").unlink()
    (tmp_path / "w1").mkdir()  # a folder named w1 (a channel's outputs) is no checkpoint: the name stays the model's
    assert checkpoint_file("w1") == folder / "w1.pt"
