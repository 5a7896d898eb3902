"""train.py: the loss terms by hand, the loop on a tiny store, exact resume, DDP over gloo, checkpoints, the CLI."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

import blurlatent.train as train_mod
from blurlatent.checkpoint import build_model, load_checkpoint
from blurlatent.cli import app
from blurlatent.config import from_dict
from blurlatent.errors import RuntimeFailure, UsageError
from blurlatent.config import ModelConfig
from blurlatent.model import Autoencoder
from blurlatent.store import Store, write_store
from blurlatent.train import DataConfig, OptimConfig, TrainConfig, loss_terms, state_digest, train

TINY = [4, 8, 8]
PLANES = list(range(0, 17, 2))


def make_store(path: Path, n_train: int = 6, n_val: int = 2, size: int = 32, seed: int = 0) -> Path:
    """Smooth random fields, 'defocused' towards plane 0 by a box blur and a contrast loss (learnable, not noise)."""
    rng = np.random.default_rng(seed)

    def crops(n):
        base = rng.random((n, size, size))
        k = np.ones(5) / 5
        base = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 2, base)
        planes = []
        for p in PLANES:
            w = (16 - p) / 16
            img = base.copy()
            for _ in range(int(round(4 * w))):
                img = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, img)
            planes.append(np.clip((img * (1 - 0.5 * w) + 0.2 * w) * 255, 0, 255))
        return np.stack(planes, 1).astype(np.uint8)

    manifest = {"planes": PLANES, "channels": ["w1"], "crop": size, "normalization": {"method": "minmax"}, "fields": []}
    write_store(path, manifest, {"w1_train": crops(n_train), "w1_val": crops(n_val), "w1_test": crops(1)})
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("store") / "prepared")


def tiny_config(store: Path, **kw) -> TrainConfig:
    optim = OptimConfig(epochs=kw.pop("epochs", 2), batch=kw.pop("batch", 8), lr=kw.pop("lr", 1e-3), step=kw.pop("step", 2))
    return TrainConfig(model=ModelConfig(widths=list(TINY)), data=DataConfig(store=str(store)), optim=optim,
                       device="cpu", strip_every=kw.pop("strip_every", 0), **kw)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------ losses


class Linear:
    """E(x) = 2x, G(z) = z/4: every loss term is a number one can work out on paper."""

    def encode(self, x):
        return 2 * x

    def decode(self, z):
        return z / 4


def _const(v, shape=(3, 1, 4, 4)):
    return torch.full(shape, float(v))


@pytest.mark.parametrize("reg, alpha, expected", [
    # x_l = 0.2, x_t = 0.4, x_r = 1.0 → z_l = 0.4, z_r = 2.0; recon = ½(|0.1 − 0.2| + |0.5 − 1.0|) = 0.3
    ("none", 0.5, {"recon": 0.3, "loss": 0.3}),
    # z' = 1.2 → G = 0.3: interp = |0.3 − 0.4| = 0.1
    ("weak", 0.5, {"recon": 0.3, "interp": 0.1, "loss": 0.4}),
    # E(x_t) = 0.8: latent = |1.2 − 0.8| = 0.4
    ("strong", 0.5, {"recon": 0.3, "interp": 0.1, "latent": 0.4, "loss": 0.8}),
    # α = 0.25: z' = 0.25·2 + 0.75·0.4 = 0.8 → G = 0.2, interp = 0.2, latent = 0
    ("strong", 0.25, {"recon": 0.3, "interp": 0.2, "latent": 0.0, "loss": 0.5}),
])
def test_loss_terms_by_hand(reg, alpha, expected):
    terms = loss_terms(Linear(), _const(0.2), _const(0.4), _const(1.0), reg, alpha)
    assert set(terms) == set(expected)
    for key, value in expected.items():
        assert float(terms[key]) == pytest.approx(value, abs=1e-6), key


def test_all_terms_logged_but_loss_is_the_runs_objective():
    terms = loss_terms(Linear(), _const(0.2), _const(0.4), _const(1.0), "none", all_terms=True)
    assert float(terms["interp"]) == pytest.approx(0.1) and float(terms["latent"]) == pytest.approx(0.4)
    assert float(terms["loss"]) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="reg 'medium'"):
        loss_terms(Linear(), _const(0), _const(0), _const(0), "medium")


def test_batched_step_equals_separate_calls():
    """One encoder and one decoder call give what the paper's three separate calls give (eval-mode BN)."""
    torch.manual_seed(1)
    model = Autoencoder(ModelConfig(widths=TINY)).eval()
    xl, xt, xr = (torch.rand(4, 1, 32, 32) for _ in range(3))
    with torch.no_grad():
        got = loss_terms(model, xl, xt, xr, "strong", 0.5)
        zl, zr, zt = model.encode(xl), model.encode(xr), model.encode(xt)
        zi = 0.5 * zr + 0.5 * zl
        recon = 0.5 * ((model.decode(zl) - xl).abs().mean() + (model.decode(zr) - xr).abs().mean())
        interp = (model.decode(zi) - xt).abs().mean()
        latent = (zi - zt).abs().mean()
    torch.testing.assert_close(got["recon"], recon, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got["interp"], interp, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got["latent"], latent, rtol=1e-5, atol=1e-7)


def test_batch_fetch_equals_items(store):
    ds = Store(store).triplets([(0, 8, 16), (4, 6, 8)], "w1", "train")
    idx = [5, 0, 11, 3]
    u8 = ds.batch(idx)
    assert u8.dtype == np.uint8 and u8.shape == (4, 3, 32, 32)
    for row, i in zip(torch.from_numpy(u8).float() / 255, idx):
        for k, plane in enumerate(ds[i]):
            assert torch.equal(row[k:k + 1], plane)  # bitwise: the device-side /255 matches the dataset's


# ------------------------------------------------------------------------------------------ the loop


def test_loss_falls_and_run_folder_complete(store, tmp_path):
    run = tmp_path / "weak"
    result = train(tiny_config(store, reg="weak", epochs=6, lr=3e-3, step=100, strip_every=3), run, progress=False)
    m = metrics(run)
    assert [r["epoch"] for r in m] == list(range(1, 7))
    assert m[-1]["train_loss"] < 0.75 * m[0]["train_loss"]
    # validation uses BatchNorm's running statistics, which lag a few steps behind on so short a run
    assert min(r["val_loss"] for r in m[3:]) < 0.97 * m[0]["val_loss"]
    assert {"train_recon", "train_interp", "val_recon", "val_interp", "val_latent"} <= set(m[0]) and "train_latent" not in m[0]
    assert m[0]["train_loss"] == pytest.approx(m[0]["train_recon"] + m[0]["train_interp"])
    assert sorted(p.name for p in (run / "strips").iterdir()) == ["epoch_003.png", "epoch_006.png"]
    best = min(m, key=lambda r: r["val_loss"])
    assert result.best_epoch == best["epoch"] and load_checkpoint(run / "best.pt")["epoch"] == best["epoch"]
    cfg = from_dict(TrainConfig, yaml.safe_load((run / "config.yaml").read_text()))
    assert cfg.reg == "weak" and cfg.data.normalize == "minmax" and cfg.model.widths == TINY


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
    torch.save({"format_version": 1, "config": {"model": {"widths": TINY}}, "model": state, "extra": Payload(str(flag))}, bad)
    with pytest.raises(UsageError, match="refused to load"):
        load_checkpoint(bad)
    assert not flag.exists()


def test_resume_is_exact_after_epochs_and_after_ctrl_c(store, tmp_path):
    straight = tmp_path / "straight"
    train(tiny_config(store, epochs=4), straight, progress=False)
    # 2 epochs, then resume to 4
    split = tmp_path / "split"
    train(tiny_config(store, epochs=2), split, progress=False)
    train(tiny_config(store, epochs=4), split, resume=True, progress=False)
    # Ctrl-C in the middle of epoch 3 (after its 2nd step): a resumable last.pt, then resume to 4
    stopped = tmp_path / "stopped"

    def ctrl_c(epoch, step):
        if (epoch, step) == (3, 2):
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt, match="epoch 3, step 2"):
        train(tiny_config(store, epochs=4), stopped, progress=False, on_step=ctrl_c)
    saved = load_checkpoint(stopped / "last.pt")
    assert (saved["epoch"], saved["step"]) == (2, 2)
    train(tiny_config(store, epochs=4), stopped, resume=True, progress=False)

    ref = load_checkpoint(straight / "last.pt")
    for run in (split, stopped):
        got = load_checkpoint(run / "last.pt")
        assert state_digest(got["model"]) == state_digest(ref["model"]), run.name  # bitwise identical weights
        for a, b in zip(got["optimizer"]["state"].values(), ref["optimizer"]["state"].values()):
            assert all(torch.equal(a[k], b[k]) for k in ("exp_avg", "exp_avg_sq"))
        assert got["scheduler"] == ref["scheduler"]
        assert [r["train_loss"] for r in metrics(run)] == [r["train_loss"] for r in metrics(straight)]
    # a changed setting that alters the run is refused on resume
    with pytest.raises(UsageError, match="optim.lr"):
        train(tiny_config(store, epochs=5, lr=0.5), split, resume=True, progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(store, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = train_mod.loss_terms
    steps_per_epoch = -(-6 * 7 // 8)

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        if not kwargs.get("all_terms"):
            calls["n"] += 1
            if calls["n"] == steps_per_epoch + 3:  # epoch 2, step 3
                terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(train_mod, "loss_terms", poisoned)
    run = tmp_path / "nan"
    with pytest.raises(RuntimeFailure, match="epoch 2, step 3"):
        train(tiny_config(store, epochs=3), run, progress=False)
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert len(metrics(run)) == 1


@pytest.mark.slow  # two spawned processes import torch: ~15 s on a 2-core box
def test_ddp_two_gloo_processes_end_identical(store, tmp_path):
    run = tmp_path / "ddp"
    result = train(tiny_config(store, epochs=2, nproc=2), run, progress=False)
    assert result is not None and len(result.replicas) == 2
    assert result.replicas[0] == result.replicas[1]  # rank 1's final weights are bitwise rank 0's
    ckpt = load_checkpoint(run / "last.pt")
    assert state_digest(ckpt["model"]) == result.replicas[0]  # and that is what was saved (unwrapped keys)
    assert not any(k.startswith("module.") for k in ckpt["model"])
    assert ckpt["runtime"]["world_size"] == 2
    m = metrics(run)
    assert len(m) == 2 and all(np.isfinite(r["val_loss"]) for r in m)


def test_bf16_channels_last_path_on_cpu(store, tmp_path):
    """The mixed-precision path (auto-chosen on CUDA and on CPUs with native bf16) runs and is recorded."""
    run = tmp_path / "bf16"
    train(tiny_config(store, epochs=1, amp="bf16", channels_last=True), run, progress=False)
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["runtime"]["amp"] == "bfloat16" and ckpt["runtime"]["channels_last"] is True
    assert np.isfinite(metrics(run)[0]["val_loss"])
    assert all(v.dtype == torch.float32 for v in ckpt["model"].values() if v.is_floating_point())  # weights stay fp32
    with pytest.raises(UsageError, match="fp16 needs CUDA"):
        train(tiny_config(store, amp="fp16"), tmp_path / "fp16", progress=False)


# ------------------------------------------------------------------------------------------ strong, init


def test_strong_needs_init_and_fine_tunes_it(store, tmp_path):
    with pytest.raises(UsageError, match="--init"):
        train(tiny_config(store, reg="strong"), tmp_path / "s0", progress=False)
    weak = tmp_path / "weak"
    train(tiny_config(store, reg="weak", epochs=1), weak, progress=False)
    strong = tmp_path / "strong"
    train(tiny_config(store, reg="strong", epochs=1, init=str(weak / "best.pt"), lr=1e-9), strong, progress=False)
    m = metrics(strong)[0]
    assert m["train_loss"] == pytest.approx(m["train_recon"] + m["train_interp"] + m["train_latent"])
    # with a negligible learning rate the strong run starts from (and stays at) the weak weights
    w, s = load_checkpoint(weak / "best.pt")["model"], load_checkpoint(strong / "last.pt")["model"]
    assert torch.allclose(w["encoder.0.0.weight"], s["encoder.0.0.weight"], atol=1e-6)
    with pytest.raises(UsageError, match="differs from this run"):
        cfg = tiny_config(store, reg="strong", init=str(weak / "best.pt"))
        cfg.model.widths = [4, 8, 16]
        train(cfg, tmp_path / "s1", progress=False)
    train(tiny_config(store, reg="strong", epochs=1, from_scratch=True), tmp_path / "s2", progress=False)


# ------------------------------------------------------------------------------------------ CLI


def test_cli_train_config_flags_and_refusals(store, tmp_path, monkeypatch):
    runner = CliRunner()
    yml = tmp_path / "run.yaml"
    yml.write_text(yaml.safe_dump({"optim": {"epochs": 5, "lr": 0.002, "batch": 16}, "strip_every": 0, "data": {"channel": "w1"}}))
    run = tmp_path / "cli"
    args = ["train", str(store), "--out", str(run), "--config", str(yml), "--epochs", "1", "--widths", "4,8,8", "--device", "cpu"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["optim"] == {"lr": 0.002, "step": 15, "gamma": 0.5, "epochs": 1, "batch": 16}  # flag beats YAML beats default
    assert cfg["model"]["widths"] == TINY and cfg["data"]["store"] == str(store)

    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "--force" in res.output and "--resume" in res.output

    res = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert [r["epoch"] for r in metrics(run)] == [1, 2]
    res = runner.invoke(app, ["train", "--resume", str(run), "--lr", "0.1"])
    assert res.exit_code == 2 and "drop --lr" in res.output

    res = runner.invoke(app, ["train", str(store), "--out", str(tmp_path / "s"), "--reg", "strong", "--widths", "4,8,8"])
    assert res.exit_code == 2 and "--init" in res.output and "--from-scratch" in res.output

    yml.write_text("optim: {epochs: 1, momentum: 0.9}\n")
    res = runner.invoke(app, ["train", str(store), "--out", str(tmp_path / "u"), "--config", str(yml)])
    assert res.exit_code == 2 and "momentum" in res.output

    # more GPUs than exist: a one-line usage error (pretend this machine has one GPU)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    res = runner.invoke(app, ["train", str(store), "--out", str(tmp_path / "g"), "--gpus", "2", "--widths", "4,8,8"])
    assert res.exit_code == 2 and "only 1 CUDA GPU" in res.output


def test_resume_restores_a_metrics_line_lost_between_checkpoint_and_log(store, tmp_path):
    """A kill after last.pt is saved but before its metrics line is written: resume puts the line back."""
    run = tmp_path / "lost-line"
    train(tiny_config(store, epochs=2), run, progress=False)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text(lines[0] + "\n")  # as if killed between checkpoint and log
    train(tiny_config(store, epochs=3), run, resume=True, progress=False)
    assert [m["epoch"] for m in metrics(run)] == [1, 2, 3]
    assert json.loads(lines[1]) == metrics(run)[1]
