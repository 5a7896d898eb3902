"""checkpoint.py: what a run's checkpoint holds, that it rebuilds the model bit for bit, that unsafe pickles
and broken contents (NaN/inf, integer weights, negative variances, insane configs, huge claimed widths,
missing keys) are refused by every loader, and that the RNG state survives a weights_only file."""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.train_store import TINY, make_store, tiny_config

import blurlatent.nets.checkpoint as checkpoint
from blurlatent.config import ModelConfig, to_dict
from blurlatent.errors import UsageError
from blurlatent.evaluation.loop import load_predictor
from blurlatent.inference.predictor import Predictor
from blurlatent.nets.autoencoder import Autoencoder, build_autoencoder
from blurlatent.nets.checkpoint import (
    build_model,
    check_fits,
    free_memory,
    load_checkpoint,
    load_init,
    model_bytes,
    restore_rng,
    restore_run,
    rng_state,
    save_checkpoint,
    state_digest,
)
from blurlatent.nets.multiscale import MultiScaleAutoencoder
from blurlatent.training.run_folder import resume_config
from blurlatent.training.trainer import train


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
        load_init(run / "last.pt", ModelConfig(widths=[4, 8, 16], arch="paper"))
    with pytest.raises(UsageError, match="a paper model, another architecture than this run's model.arch multiscale"):
        load_init(run / "last.pt", ModelConfig(widths=TINY, arch="multiscale"))  # cause 20: the arch, not the widths


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
    tiny = {"config": {"model": {"widths": TINY}}, "model": Autoencoder(ModelConfig(widths=TINY)).state_dict()}
    save_checkpoint(tmp_path / "rng.pt", {**tiny, "rng": rng_state(cpu)})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    restore_rng(load_checkpoint(tmp_path / "rng.pt")["rng"], cpu)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


# --- broken contents: refused on load by every loader ----------------------------------------------------

W0, VAR0 = "encoder.0.0.weight", "encoder.0.1.running_var"


def _tiny() -> dict:
    torch.manual_seed(0)
    return {"format_version": 1, "config": {"model": {"widths": list(TINY)}, "data": {"normalize": "minmax"}},
            "model": Autoencoder(ModelConfig(widths=TINY)).state_dict(), "epoch": 0}


def _set(key, value):
    def edit(c):
        c["model"][key] = value(c["model"][key])
    return edit


BROKEN = {
    "nan": (_set(W0, lambda t: t.index_fill(0, torch.tensor([0]), float("nan"))), f"{W0} holds NaN"),
    "inf": (_set(W0, lambda t: t.index_fill(0, torch.tensor([1]), float("-inf"))), f"{W0} holds infinite"),
    "negative variance": (_set(VAR0, lambda t: t - 2.0), f"{VAR0} holds negative BatchNorm variances"),
    "integer weights": (_set(W0, lambda t: t.round().to(torch.int32)), f"{W0} is int32, not floating point"),
    "not a tensor": (_set(W0, lambda t: t.tolist()), "not a state dict of tensors"),
    "nan slope": (lambda c: c["config"]["model"].update(negative_slope=float("nan")), "negative_slope nan"),
    "absurd slope": (lambda c: c["config"]["model"].update(negative_slope=1e30), "negative_slope 1e+30"),
    "3 channels": (lambda c: c["config"]["model"].update(in_channels=3), "in_channels 3"),
    "width over the cap": (lambda c: c["config"]["model"].update(widths=[4, 8, 10**9]), "from 1 to 65536"),
    "no config.model": (lambda c: c["config"].pop("model"), "config.model is missing"),
    "config not a mapping": (lambda c: c.update(config=[1, 2]), "config is missing or not a mapping"),
    "data not a mapping": (lambda c: c["config"].update(data="minmax"), "config.data is not a mapping"),
    "other shapes": (lambda c: c["config"]["model"].update(widths=[4, 8, 16]), "weights do not fit"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_checkpoint_refused_by_every_loader(case, tmp_path):
    edit, needle = BROKEN[case]
    ckpt = _tiny()
    edit(ckpt)
    path = tmp_path / "broken.pt"
    torch.save(ckpt, path)
    loaders = [load_checkpoint, Predictor.from_checkpoint, lambda p: load_predictor(p, "m", torch.device("cpu")),
               lambda p: load_init(p, ModelConfig(widths=TINY))]
    for load in loaders:
        with pytest.raises(UsageError) as info:
            load(path)
        assert str(path) in str(info.value) and needle in str(info.value), str(info.value)
        assert "\n" not in str(info.value)
    run = tmp_path / "run"  # resume reads the same file as run/last.pt
    run.mkdir()
    path.rename(run / "last.pt")
    with pytest.raises(UsageError, match=re.escape(needle)):
        resume_config(run)


def test_good_checkpoint_still_loads_and_matches(tmp_path):
    ckpt = _tiny()
    save_checkpoint(tmp_path / "good.pt", ckpt)
    model = build_model(load_checkpoint(tmp_path / "good.pt"))
    assert state_digest(model.state_dict()) == state_digest(ckpt["model"])


def test_model_bytes_from_the_config_alone():
    """Oracle: the meta-device estimate equals the bytes of a model actually built, for several configs."""
    for widths in ([4], [4, 8, 8], [8, 16, 32, 64]):
        config = ModelConfig(widths=widths, arch="paper")
        built = Autoencoder(config).state_dict()
        assert model_bytes(config) == sum(t.numel() * t.element_size() for t in built.values())
    # the paper's model by hand: conv weights and biases, 4 BatchNorm vectors per layer (+1 int64 counter)
    w = [1, 64, 128, 256, 512, 1024]
    enc = sum(9 * a * b + b + 4 * b for a, b in itertools.pairwise(w))
    ups = [(1024, 512), (512, 256), (256, 128), (128, 64), (64, 64)]
    dec = sum(9 * a * b + b + 4 * b for a, b in ups) + 9 * 64 + 1
    assert model_bytes(ModelConfig(arch="paper")) == 4 * (enc + dec) + 8 * 10


def test_huge_claimed_widths_refused_before_building(tmp_path, monkeypatch):
    ckpt = _tiny()
    ckpt["config"]["model"]["widths"] = [4, 65536, 65536]  # ~288 GB of weights claimed by a tiny file
    torch.save(ckpt, tmp_path / "wide.pt")
    built = []  # models built with real memory (the meta-device estimate is free)

    def spy(*args, **kwargs):
        if torch.empty(0).device.type != "meta":
            built.append(args)
        return build_autoencoder(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "build_autoencoder", spy)
    monkeypatch.setattr(checkpoint, "free_memory", lambda device: 2**34)  # a 16 GB machine
    with pytest.raises(UsageError, match=r"wide.pt: its config.model widths \[4, 65536, 65536\] need ~288 GB of "
                                         r"weights, more than the 16 GB free on cpu; load it on a machine with more"):
        Predictor.from_checkpoint(tmp_path / "wide.pt")
    assert not built  # refused before any model was built


def test_check_fits_counts_copies(monkeypatch):
    cfg = ModelConfig(widths=TINY)
    one = model_bytes(cfg)
    monkeypatch.setattr(checkpoint, "free_memory", lambda device: 3 * one)
    check_fits(cfg, None, torch.device("cpu"), copies=3)
    with pytest.raises(UsageError, match=r"^model\.widths \[4, 8, 8\]: weights, gradients and optimizer state need "
                                         r".* \(4x .*use smaller model\.widths$"):
        check_fits(cfg, None, torch.device("cpu"), copies=4)


def test_free_memory_is_known_here():
    free = free_memory(torch.device("cpu"))
    assert free is not None and 2**20 < free < 2**50


def test_resume_state_refused_when_missing_or_non_finite(store, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(store, epochs=1), run, progress=False)
    ckpt = load_checkpoint(run / "last.pt")
    model = Autoencoder(ModelConfig(widths=TINY))
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    args = (model, optimizer, scheduler, scaler, torch.device("cpu"), "last.pt")
    assert restore_run(ckpt, *args)[0] == 1
    with pytest.raises(UsageError, match=r"last.pt: not resumable \(no optimizer"):
        restore_run({**ckpt, "optimizer": None}, *args)
    state = ckpt["optimizer"]["state"]
    state[next(iter(state))]["exp_avg"].fill_(float("nan"))
    with pytest.raises(UsageError, match="optimizer state holds NaN"):
        restore_run(ckpt, *args)
    with pytest.raises(UsageError, match="damaged resume state"):
        restore_run({**load_checkpoint(run / "last.pt"), "rng": {"torch": 5}}, *args)


def test_training_refuses_a_model_whose_optimizer_state_would_not_fit(store, tmp_path, monkeypatch):
    """Training needs 4 copies of the weights (weights, gradients, Adam's two moments) on its device: checked
    before the model is built; 3 copies of memory pass the host check (1 copy) but not this one."""
    monkeypatch.setattr(checkpoint, "free_memory",
                        lambda device: 3 * model_bytes(ModelConfig(widths=TINY, arch="paper")))
    with pytest.raises(UsageError, match=r"model\.widths \[4, 8, 8\]: weights, gradients and optimizer state need "
                                         r".*\(4x .*free on cpu; use smaller model\.widths"):
        train(tiny_config(store, epochs=1), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_arch_recorded_and_an_old_checkpoint_without_it_loads_as_paper(tmp_path):
    torch.manual_seed(0)
    paper = Autoencoder(ModelConfig(widths=TINY)).eval()
    old = {"widths": TINY, "in_channels": 1, "negative_slope": 0.01}  # a config.model written before issue 13
    save_checkpoint(tmp_path / "old.pt", {"config": {"model": old}, "model": paper.state_dict(), "epoch": 0})
    loaded = build_model(load_checkpoint(tmp_path / "old.pt"))
    assert type(loaded) is Autoencoder and loaded.config.arch == "paper"
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), paper(x))
    ms = build_autoencoder(ModelConfig(arch="multiscale", widths=TINY, skips="all")).eval()
    save_checkpoint(tmp_path / "ms.pt", {"config": {"model": to_dict(ms.config)}, "model": ms.state_dict(), "epoch": 0})
    ckpt = load_checkpoint(tmp_path / "ms.pt")
    assert ckpt["config"]["model"]["arch"] == "multiscale"
    rebuilt = build_model(ckpt)
    assert type(rebuilt) is MultiScaleAutoencoder and rebuilt.config == ms.config
    with torch.no_grad():
        assert torch.equal(rebuilt(x), ms(x))
    # the paper's weights under a multiscale config (or the reverse) are refused, naming the mismatch
    wrong = {"config": {"model": {**old, "arch": "multiscale"}}, "model": paper.state_dict(), "epoch": 0}
    save_checkpoint(tmp_path / "wrong.pt", wrong)
    with pytest.raises(UsageError, match="weights do not fit its own config.model"):
        load_checkpoint(tmp_path / "wrong.pt")
    with pytest.raises(UsageError, match="differs from this run"):
        load_init(tmp_path / "ms.pt", ModelConfig(widths=TINY))
