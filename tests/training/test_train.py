"""train.py: the loop on a tiny store, exact resume after epochs and after Ctrl-C, a NaN stop, bf16,
strong fine-tuning from init, and the `blurlatent train` command."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers.train_store import TINY, make_store, metrics, tiny_config
from typer.testing import CliRunner

import blurlatent.training.losses as losses
from blurlatent.bbbc006 import FOCUS_TRIPLETS
from blurlatent.cli import app
from blurlatent.config import (
    CONFIG_VERSION,
    DEFAULT_WIDTHS,
    DataConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    from_dict,
    load_yaml,
)
from blurlatent.errors import RuntimeFailure, UsageError
from blurlatent.nets.autoencoder import Autoencoder
from blurlatent.nets.checkpoint import build_model, load_checkpoint, state_digest
from blurlatent.training.trainer import train


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("store") / "prepared")


# ------------------------------------------------------------------------------------------ the loop


def test_loss_falls_and_run_folder_complete(store, tmp_path):
    run = tmp_path / "weak"
    result = train(tiny_config(store, reg="weak", epochs=6, lr=3e-3, step=100, strip_every=3), run, progress=False)
    m = metrics(run)
    assert [r["epoch"] for r in m] == list(range(1, 7))
    assert m[-1]["train_loss"] < 0.75 * m[0]["train_loss"]
    # validation uses BatchNorm's running statistics, which lag a few steps behind on so short a run
    assert min(r["val_loss"] for r in m[3:]) < 0.97 * m[0]["val_loss"]
    assert {"train_recon", "train_interp", "val_recon", "val_interp", "val_latent"} <= set(m[0])
    assert "train_latent" not in m[0]
    assert m[0]["train_loss"] == pytest.approx(m[0]["train_recon"] + m[0]["train_interp"])
    assert sorted(p.name for p in (run / "strips").iterdir()) == ["epoch_003.png", "epoch_006.png"]
    best = min(m, key=lambda r: r["val_loss"])
    assert result.best_epoch == best["epoch"] and load_checkpoint(run / "best.pt")["epoch"] == best["epoch"]
    cfg = from_dict(TrainConfig, yaml.safe_load((run / "config.yaml").read_text()))
    assert cfg.reg == "weak" and cfg.data.normalize == "minmax" and cfg.model.widths == TINY
    assert (cfg.data.pixel_size_um, cfg.data.z_step_um) == (0.645, 2.0)  # the store's scale (an older one: BBBC006's)


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
        for a, b in zip(got["optimizer"]["state"].values(), ref["optimizer"]["state"].values(), strict=True):
            assert all(torch.equal(a[k], b[k]) for k in ("exp_avg", "exp_avg_sq"))
        assert got["scheduler"] == ref["scheduler"]
        assert [r["train_loss"] for r in metrics(run)] == [r["train_loss"] for r in metrics(straight)]
    # a changed setting that alters the run is refused on resume
    with pytest.raises(UsageError, match="optim.lr"):
        train(tiny_config(store, epochs=5, lr=0.5), split, resume=True, progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(store, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = losses.loss_terms
    steps_per_epoch = -(-6 * 7 // 8)

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        if not kwargs.get("all_terms"):
            calls["n"] += 1
            if calls["n"] == steps_per_epoch + 3:  # epoch 2, step 3
                terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(losses, "loss_terms", poisoned)  # the training step's loss (LossModule)
    run = tmp_path / "nan"
    with pytest.raises(RuntimeFailure, match="epoch 2, step 3"):
        train(tiny_config(store, epochs=3), run, progress=False)
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert len(metrics(run)) == 1


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
    assert not (tmp_path / "fp16").exists()


# ------------------------------------------------------------------------------------------ strong, init


def test_strong_needs_init_and_fine_tunes_it(store, tmp_path):
    with pytest.raises(UsageError, match="init"):
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


@pytest.fixture(scope="module")
def base_run(store, tmp_path_factory) -> Path:
    """A model to fine-tune (trained on 'other' data: a store of another seed), one epoch, reg weak."""
    other = make_store(tmp_path_factory.mktemp("other") / "prepared", seed=1)
    run = tmp_path_factory.mktemp("base") / "run"
    train(tiny_config(other, reg="weak", epochs=1), run, progress=False)
    return run


@pytest.mark.parametrize("reg", ["none", "weak", "strong"])
def test_fine_tune_with_init_for_every_reg_starts_from_the_init_weights(store, base_run, tmp_path, monkeypatch, reg):
    """`train --init CKPT --reg R`: the first optimizer step sees exactly the init's weights; the model (widths)
    comes from the init when not given."""
    seen = []
    adam_step = torch.optim.Adam.step

    def record_first(self, *args, **kwargs):
        if not seen:
            seen.append([p.detach().clone() for group in self.param_groups for p in group["params"]])
        return adam_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", record_first)
    run = tmp_path / reg
    res = CliRunner().invoke(app, ["train", str(store), "--out", str(run), "--reg", reg, "--init",
                                   str(base_run / "best.pt"), "--epochs", "1", "--batch-size", "8", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    init = load_checkpoint(base_run / "best.pt")
    expected = build_model(init)  # the init's model with its weights
    assert len(seen[0]) == len(list(expected.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(seen[0], expected.parameters(), strict=True))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["widths"] == TINY and cfg["reg"] == reg and cfg["init"] == str(base_run / "best.pt")
    assert load_checkpoint(run / "last.pt")["model"].keys() == init["model"].keys()


# ------------------------------------------------------------------------------------------ CLI


def test_cli_train_config_flags_and_refusals(store, tmp_path, monkeypatch):
    runner = CliRunner()
    yml = tmp_path / "run.yaml"
    yml.write_text(yaml.safe_dump({"optim": {"epochs": 5, "lr": 0.002, "batch": 16}, "strip_every": 0,
                                   "data": {"channel": "w1"}}))
    run = tmp_path / "cli"
    args = ["train", str(store), "--out", str(run), "--config", str(yml), "--epochs", "1", "--arch", "paper",
            "--widths", "4,8,8", "--device", "cpu"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    # flag beats YAML beats default
    assert cfg["optim"] == {"lr": 0.002, "step": 15, "gamma": 0.5, "epochs": 1, "batch": 16}
    assert cfg["model"]["widths"] == TINY and cfg["data"]["store"] == str(store)

    # Below, a refusal names the option at fault and the fix: as a flag where cli.FLAGS/KEYWORDS map the
    # library's parameter name (resume=True, optim.lr, init, from_scratch), else as that parameter.
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "--force" in res.output and re.search(r"--resume|resume=True", res.output)

    res = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert [r["epoch"] for r in metrics(run)] == [1, 2]
    res = runner.invoke(app, ["train", "--resume", str(run), "--lr", "0.1"])
    assert res.exit_code == 2 and re.search(r"drop (--lr|optim\.lr)\b", res.output)
    res = runner.invoke(app, ["train", "--resume", str(run), "--config", str(yml)])
    assert res.exit_code == 2 and "drop --config" in res.output

    strong = ["train", str(store), "--out", str(tmp_path / "s"), "--reg", "strong", "--widths", "4,8,8"]
    res = runner.invoke(app, strong)
    assert res.exit_code == 2 and re.search(r"\binit\b", res.output) and re.search(r"from.scratch", res.output)

    yml.write_text("optim: {epochs: 1, momentum: 0.9}\n")
    res = runner.invoke(app, ["train", str(store), "--out", str(tmp_path / "u"), "--config", str(yml)])
    assert res.exit_code == 2 and "momentum" in res.output

    # more GPUs than exist: a one-line usage error (pretend this machine has one GPU)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    res = runner.invoke(app, ["train", str(store), "--out", str(tmp_path / "g"), "--gpus", "2", "--widths", "4,8,8"])
    assert res.exit_code == 2 and "only 1 CUDA GPU" in res.output


def _new_run_settings(monkeypatch, args: list[str]) -> TrainConfig:
    """The config `train ARGS` would start a new run with (the training itself replaced by a spy)."""
    import blurlatent.training.trainer as train_module

    got = []
    monkeypatch.setattr(train_module, "train", lambda cfg, out, **kw: got.append(cfg))
    res = CliRunner().invoke(app, ["train", *args])
    assert res.exit_code == 0 and len(got) == 1, res.output
    return got[0]


def _recipe(cfg: TrainConfig) -> tuple:
    return cfg.model.arch, len(cfg.data.triplets), cfg.data.alpha, cfg.deblur_weight, cfg.model.skips


# `train`'s defaults (TrainConfig's), and the paper's model trained as the paper did (a version-1 config)
DEFAULTS, PAPER_TRAINING = ("multiscale", 28, "planes", 1.0, "quarter"), ("paper", 7, 0.5, 0.0, "coarse")
PAPER_MODEL = ("paper", 28, "planes", 1.0, "coarse")  # --arch paper: the paper's model, train's training


@pytest.mark.parametrize("flags, yml, expected", [
    ([], None, DEFAULTS),
    (["--arch", "multiscale"], None, DEFAULTS),
    (["--arch", "paper"], None, PAPER_MODEL),  # one flag changes one thing
    (["--arch", "paper", "--triplets", "paper", "--deblur-weight", "0"], None, PAPER_TRAINING),
    (["--triplets", "paper"], None, ("multiscale", 7, 0.5, 1.0, "quarter")),
    (["--deblur-weight", "0"], None, ("multiscale", 28, "planes", 0.0, "quarter")),
    ([], {"version": 2, "optim": {"epochs": 3}}, DEFAULTS),
    ([], {"version": 2, "model": {"arch": "paper"}}, PAPER_MODEL),
    ([], {"optim": {"epochs": 3}}, PAPER_TRAINING),  # no version: what a config meant before version 2
    ([], {"model": {"arch": "paper"}}, PAPER_TRAINING),
    ([], {"model": {"arch": "multiscale"}}, ("multiscale", 7, 0.5, 0.0, "coarse")),
    (["--arch", "multiscale"], {"model": {"arch": "paper", "widths": [4, 8]}}, ("multiscale", 7, 0.5, 0.0, "quarter")),
    (["--arch", "paper"], {"version": 2, "model": {"arch": "multiscale", "widths": [4, 8], "skips": "coarse"}},
     PAPER_MODEL),
])
def test_flags_and_configs_change_only_what_they_name(store, tmp_path, monkeypatch, flags, yml, expected):
    args = [str(store), "--out", str(tmp_path / "run"), *flags]
    if yml is not None:
        (tmp_path / "run.yaml").write_text(yaml.safe_dump(yml))
        args += ["--config", str(tmp_path / "run.yaml")]
    cfg = _new_run_settings(monkeypatch, args)
    assert _recipe(cfg) == expected
    # without --widths each arch gets its own default widths (a YAML's widths for another arch do not fit)
    assert cfg.model.widths == list(DEFAULT_WIDTHS[cfg.model.arch])
    if expected[1] == 28:
        assert [tuple(t) for t in cfg.data.triplets] == list(FOCUS_TRIPLETS)


@pytest.mark.parametrize("flags, python", [
    ([], {}),
    (["--arch", "paper", "--reg", "weak"], {"arch": "paper", "reg": "weak"}),
])
def test_train_in_python_trains_what_the_cli_trains(store, tmp_path, flags, python):
    """`train(TrainConfig(...))` and `blurlatent train` mean one thing: the same config.yaml, the same weights."""
    common = ["--epochs", "1", "--widths", "4,8,8", "--batch-size", "16", "--device", "cpu"]
    res = CliRunner().invoke(app, ["train", str(store), "--out", str(tmp_path / "cli"), *common, *flags])
    assert res.exit_code == 0, res.output
    model = ModelConfig(widths=list(TINY), **({"arch": python["arch"]} if "arch" in python else {}))
    config = TrainConfig(model=model, data=DataConfig(store=str(store)), optim=OptimConfig(epochs=1, batch=16),
                         device="cpu", reg=python.get("reg", "none"))
    train(config, tmp_path / "py", progress=False)
    saved = [yaml.safe_load((tmp_path / run / "config.yaml").read_text()) for run in ("cli", "py")]
    assert saved[0] == saved[1] and saved[0]["version"] == CONFIG_VERSION
    digests = [state_digest(load_checkpoint(tmp_path / run / "best.pt")["model"]) for run in ("cli", "py")]
    assert digests[0] == digests[1]


def test_yaml_widths_without_an_arch_are_the_users(store, tmp_path, monkeypatch):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"model": {"widths": [4, 8, 8]}}))
    cfg = _new_run_settings(monkeypatch, [str(store), "--out", str(tmp_path / "run"), "--config",
                                          str(tmp_path / "run.yaml"), "--arch", "multiscale"])
    assert _recipe(cfg) == ("multiscale", 7, 0.5, 0.0, "quarter") and cfg.model.widths == [4, 8, 8]


def test_a_yaml_without_a_version_keeps_meaning_the_papers(store, tmp_path, monkeypatch):
    """A run's config.yaml written before `version` existed (or any YAML without one) was the paper's model,
    trained as the paper did; `train`'s defaults changing must not turn it into another run."""
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"model": {"widths": [4, 8, 8], "negative_slope": 0.01}}))
    cfg = _new_run_settings(monkeypatch, [str(store), "--out", str(tmp_path / "run"), "--config",
                                          str(tmp_path / "run.yaml")])
    assert _recipe(cfg) == PAPER_TRAINING and cfg.model.widths == [4, 8, 8]


def test_widths_given_as_a_flag_are_the_default_archs(store, tmp_path, monkeypatch):
    cfg = _new_run_settings(monkeypatch, [str(store), "--out", str(tmp_path / "run"), "--widths", "4,8,8"])
    assert _recipe(cfg) == DEFAULTS and cfg.model.widths == [4, 8, 8]
    cfg.check()  # a valid multiscale net (skips quarter needs 3 scales)


def test_two_widths_for_the_default_arch_say_what_to_give(store, tmp_path):
    res = CliRunner().invoke(app, ["train", str(store), "--out", str(tmp_path / "two"), "--widths", "4,8"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "--widths [4, 8]" in res.output and "3 or more widths" in res.output
    assert not (tmp_path / "two").exists()


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).parents[2] / "examples" / "configs").iterdir()))
def test_the_example_configs_reproduce_the_paper(store, base_run, tmp_path, monkeypatch, name):
    config = Path(__file__).parents[2] / "examples" / "configs" / name
    args = [str(store), "--out", str(tmp_path / "run"), "--config", str(config)]
    loaded = load_yaml(TrainConfig, config)
    if loaded.init is not None:  # the strong configs fine-tune a weak run: here a tiny paper-model one
        args += ["--init", str(base_run / "best.pt")]
    cfg = _new_run_settings(monkeypatch, args)
    assert _recipe(cfg) == PAPER_TRAINING and cfg.model.widths == list(DEFAULT_WIDTHS["paper"])
    assert (cfg.optim.lr, cfg.optim.step, cfg.optim.gamma, cfg.optim.epochs, cfg.optim.batch) == (1e-4, 15, 0.5, 40, 40)
    # written out, it means what the same settings meant before version 2 (the paper's, as the paper ran them)
    old = {"data": {"store": "prepared", "channel": loaded.data.channel}, "reg": loaded.reg}
    assert loaded == from_dict(TrainConfig, {**old, **({"init": loaded.init} if loaded.init else {})})


def test_fine_tuning_keeps_the_init_models_arch_even_from_a_checkpoint_without_one(store, base_run, tmp_path,
                                                                                  monkeypatch):
    old = tmp_path / "old.pt"  # a checkpoint written before `version` and `arch` existed: the paper's model
    ckpt = torch.load(base_run / "best.pt", weights_only=True)
    for key in ("version", "deblur_weight"):
        del ckpt["config"][key]
    for key in ("arch", "skips"):
        del ckpt["config"]["model"][key]
    torch.save(ckpt, old)
    assert isinstance(build_model(load_checkpoint(old)), Autoencoder)
    cfg = _new_run_settings(monkeypatch, [str(store), "--out", str(tmp_path / "run"), "--reg", "strong", "--init",
                                          str(old)])
    assert _recipe(cfg) == PAPER_MODEL and cfg.model.widths == TINY


def test_fine_tuning_a_multiscale_checkpoint_takes_its_model_whole(store, tmp_path, monkeypatch):
    init = tmp_path / "ms"
    config = tiny_config(store, epochs=1)
    config.model = ModelConfig(arch="multiscale", widths=[4, 8], skips="coarse")
    train(config, init, progress=False)
    cfg = _new_run_settings(monkeypatch, [str(store), "--out", str(tmp_path / "run"), "--init", str(init / "best.pt")])
    # its model whole, skips included (the init's "coarse", not the default "quarter"); train's training
    assert _recipe(cfg) == ("multiscale", 28, "planes", 1.0, "coarse") and cfg.model.widths == [4, 8]


def test_a_run_of_version_1_resumes_as_it_was(store, tmp_path):
    """A run folder whose checkpoint and config.yaml predate ``version`` (and the keys version 2 changed)
    resumes with the meaning it was started with: the paper's model and training."""
    run = tmp_path / "old"
    train(tiny_config(store, epochs=1), run, progress=False)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    for key in ("version", "deblur_weight"):
        del ckpt["config"][key]
    for key in ("arch", "skips"):
        del ckpt["config"]["model"][key]
    for key in ("triplets", "alpha"):
        del ckpt["config"]["data"][key]
    torch.save(ckpt, run / "last.pt")
    res = CliRunner().invoke(app, ["train", "--resume", str(run), "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert [r["epoch"] for r in metrics(run)] == [1, 2]
    assert _recipe(load_yaml(TrainConfig, run / "config.yaml")) == PAPER_TRAINING


def test_focus_triplets_train_with_each_triplets_alpha(store, tmp_path, monkeypatch):
    """`train --triplets focus`: 28 triplets in the config with alpha "planes", and every step's loss gets each
    sample's own α (from its triplet's planes), which the run resumes with."""
    seen = []
    real = losses.loss_terms

    def spy(*args, **kwargs):
        if not kwargs.get("all_terms"):
            seen.append(args[5])
        return real(*args, **kwargs)

    monkeypatch.setattr(losses, "loss_terms", spy)
    run = tmp_path / "focus"
    res = CliRunner().invoke(app, ["train", str(store), "--out", str(run), "--triplets", "focus", "--epochs", "1",
                                   "--widths", "4,8,8", "--arch", "multiscale", "--reg", "weak", "--deblur-weight",
                                   "1", "--device", "cpu", "--batch-size", "32"])
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["data"]["alpha"] == "planes" and len(cfg["data"]["triplets"]) == 28
    assert seen and all(torch.is_tensor(a) and a.ndim == 1 and len(a) <= 32 for a in seen)
    weights = {round(float(a), 6) for batch in seen for a in batch}
    assert weights == {round((t - left) / (16 - left), 6) for left, t, _ in cfg["data"]["triplets"]}
    res = CliRunner().invoke(app, ["train", "--resume", str(run), "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert [r["epoch"] for r in metrics(run)] == [1, 2] and np.isfinite(metrics(run)[-1]["val_loss"])
