"""checkpoint.py: what a run's checkpoint holds, that it rebuilds the model bit for bit, that unsafe pickles
are refused, and that the RNG state survives the trip through a weights_only file."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from train_store import TINY, make_store, tiny_config

from blurlatent.checkpoint import (
    build_model,
    load_checkpoint,
    load_init,
    restore_rng,
    rng_state,
    save_checkpoint,
    state_digest,
)
from blurlatent.config import ModelConfig
from blurlatent.errors import UsageError
from blurlatent.model import Autoencoder
from blurlatent.train import train


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("store") / "prepared")


def test_checkpoint_round_trip(store, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_config(store, epochs=1), run, progress=True)  # the rich bar too
    capsys.readouterr()
    ckpt = load_checkpoint(run / "last.pt")
    for key in ("format_version", "package_version", "torch_version", "config", "model", "optimizer", "scheduler",
                "scaler", "epoch", "step", "rng", "metrics", "best_val"):
        assert key in ckpt, key
    assert ckpt["epoch"] == 1 and ckpt["step"] == 0 and set(ckpt["rng"]) >= {"torch", "numpy", "python"}
    assert ckpt["config"]["data"]["normalize"] == "minmax" and ckpt["config"]["model"]["widths"] == TINY
    model = build_model(ckpt)
    assert state_digest(model.state_dict()) == state_digest(ckpt["model"])
    assert not model.training
    # and the weights still do what they did: same output as a model given the raw state dict
    ref = Autoencoder(ModelConfig(widths=TINY)).eval()
    ref.load_state_dict(ckpt["model"])
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    with pytest.raises(UsageError, match="differs from this run"):
        load_init(run / "last.pt", ModelConfig(widths=[4, 8, 16]))


def _touch(path):  # what a malicious pickle would run on load
    Path(path).write_text("pwned")


class Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (_touch, (self.path,))


def test_malicious_checkpoint_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    flag = tmp_path / "pwned.txt"
    state = Autoencoder(ModelConfig(widths=TINY)).state_dict()
    payload = {"format_version": 1, "config": {"model": {"widths": TINY}}, "model": state, "extra": Payload(str(flag))}
    torch.save(payload, bad)
    with pytest.raises(UsageError, match="refused to load"):
        load_checkpoint(bad)
    assert not flag.exists()


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path):
    cpu = torch.device("cpu")
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    save_checkpoint(tmp_path / "rng.pt", {"config": {}, "model": {}, "rng": rng_state(cpu)})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    restore_rng(load_checkpoint(tmp_path / "rng.pt")["rng"], cpu)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]
