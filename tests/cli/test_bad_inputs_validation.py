"""The bad-input matrix, validation rows (issue 11): broken checkpoints (NaN/inf, integer weights, negative
BatchNorm variances, insane configs, huge claimed widths, missing keys) refused by every loader; config
ranges for every numeric field, duplicate YAML keys and alias bombs; damaged manifests and float stores;
messages that name the option typed; NaN causes told apart; extreme float images.

Machinery in ``badinput.py``; the fixtures here are ``build_paths`` plus the broken files built by
``validation_files`` under ``{v}``.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.badinput import BLUR, EVAL, PAIR, PREP, SETUPS, TINY, TRAIN, Case, build_paths, run_case, write_tif

V = "{v}"
TRAIN_RUN = f"train {{store}} --out {{work}}/run {TRAIN}"
WHOLE = EVAL + " --whole"  # whole fields: the tiny store's nearly empty centre crops would add a warning line


def _b(ckpt: str) -> str:
    """A blur command line with checkpoint ``{v}/<ckpt>``."""
    return f"blur {PAIR} " + BLUR.replace("{ckpt}", f"{V}/{ckpt}")


CASES = [
    # --- checkpoints: contents validated on load, by every loader ------------------------------------
    Case("ckpt-nan-weights", "checkpoint whose weights hold NaN", _b("nan.pt"), 2,
         ("nan.pt: weight encoder.0.0.weight holds NaN", "use an earlier checkpoint")),
    Case("ckpt-inf-weights", "checkpoint whose weights hold inf (deblur)",
         f"deblur {PAIR} -c {V}/inf.pt --alpha 0.5 -o {{work}}/out.tif --device cpu", 2,
         ("inf.pt: weight encoder.0.0.weight holds infinite", "use an earlier checkpoint")),
    Case("ckpt-negative-variance", "checkpoint with a negative BatchNorm running variance", _b("negvar.pt"), 2,
         ("negvar.pt: weight encoder.0.1.running_var holds negative BatchNorm variances", "use another copy")),
    Case("ckpt-integer-weights", "checkpoint with integer weights", _b("int.pt"), 2,
         ("int.pt: weight encoder.0.0.weight is int32, not floating point", "use another copy")),
    Case("ckpt-nan-slope", "checkpoint config with negative_slope NaN", _b("slope_nan.pt"), 2,
         ("slope_nan.pt: config: model negative_slope nan", "must lie in [0, 1]")),
    Case("ckpt-absurd-slope", "checkpoint config with negative_slope 1e30", _b("slope_big.pt"), 2,
         ("slope_big.pt: config: model negative_slope 1e+30", "must lie in [0, 1]")),
    Case("ckpt-three-channels", "checkpoint config with in_channels 3 (weights to match)", _b("in3.pt"), 2,
         ("in3.pt: config: model in_channels 3", "use 1")),
    Case("ckpt-huge-widths", "tiny checkpoint whose config claims widths of ~288 GB", _b("wide.pt"), 2,
         ("wide.pt: its config.model widths [4, 65536, 65536] need ~288 GB", "on a machine with more memory")),
    Case("ckpt-no-model-config", "checkpoint without config.model (was: KeyError: 'model')", _b("no_model_cfg.pt"), 2,
         ("no_model_cfg.pt: damaged checkpoint: config.model is missing", "written by `blurlatent train`")),
    Case("evaluate-ckpt-not-tensors", "checkpoint whose state dict holds a list",
         "evaluate {store} " + WHOLE.replace("{ckpt}", f"{V}/state_list.pt"), 2,
         ("state_list.pt: damaged checkpoint: its model entry is not a state dict of tensors",
          "written by `blurlatent train`")),
    Case("evaluate-ckpt-nan", "evaluate with a NaN checkpoint",
         "evaluate {store} " + WHOLE.replace("{ckpt}", f"{V}/nan.pt"), 2,
         ("nan.pt: weight encoder.0.0.weight holds NaN", "use an earlier checkpoint")),
    Case("train-init-nan", "train --init with NaN weights", f"{TRAIN_RUN} --init {V}/nan.pt", 2,
         ("nan.pt: weight encoder.0.0.weight holds NaN", "use an earlier checkpoint")),
    Case("train-resume-nan", "train --resume of a run whose last.pt holds NaN weights",
         "train --resume {work}/run --device cpu", 2,
         ("last.pt: weight encoder.0.0.weight holds NaN", "use an earlier checkpoint"), setup="v_run_nan"),
    Case("train-resume-no-optimizer", "train --resume of a last.pt without optimizer state (was: KeyError)",
         "train --resume {work}/run --device cpu --epochs 2", 2,
         ("last.pt: not resumable (no optimizer", "start a new run with --init instead"), setup="v_run_noopt"),
    # --- NaN causes told apart -----------------------------------------------------------------------
    Case("train-nan-from-init-weights", "init weights that give NaN at the first step (runtime failure)",
         f"{TRAIN_RUN} --init {V}/huge_weights.pt", 1,
         ("non-finite loss at epoch 1, step 1: the run's first step, before any weight update",
          "not the learning rate", "the init weights of")),
    Case("train-store-float", "store array of float32 crops holding NaN",
         f"train {V}/store_float --out {{work}}/run {TRAIN}", 2,
         ("w1_train.npy: store array is float32", "not uint8", "rerun `blurlatent prepare` with --force")),
    # --- memory estimated from the config before building -----------------------------------------------
    Case("train-widths-huge", "widths whose weights exceed memory",
         "train {store} --out {work}/run --device cpu --epochs 1 --arch paper --widths 4,65536,65536", 2,
         ("--widths [4, 65536, 65536]: the weights need ~288 GB", "use smaller --widths")),
    Case("train-widths-over-cap", "a width past 65536",
         "train {store} --out {work}/run --device cpu --epochs 1 --widths 4,100000", 2,
         ("--widths [4, 100000]", "from 1 to 65536")),
    # --- config: every range, duplicate keys, aliases ------------------------------------------------------
    Case("train-yaml-gamma", "config optim.gamma -1 (trained with a negative rate)",
         f"{TRAIN_RUN} --config {V}/gamma.yaml", 2, ("gamma.yaml: optim.gamma -1.0", "(0, 1]")),
    Case("train-yaml-slope-nan", "config model.negative_slope .nan", f"{TRAIN_RUN} --config {V}/slope.yaml", 2,
         ("slope.yaml: model negative_slope nan", "must lie in [0, 1]")),
    Case("train-yaml-check-every", "config check_every 0 (was: ZeroDivisionError)",
         f"{TRAIN_RUN} --config {V}/check_every.yaml", 2, ("check_every.yaml: check_every 0", "at least 1 step")),
    Case("train-yaml-strip-every", "config strip_every -1", f"{TRAIN_RUN} --config {V}/strip_every.yaml", 2,
         ("strip_every.yaml: strip_every -1", "or 0 for none")),
    Case("train-yaml-seed", "config seed 2**32 (was: internal error)", f"{TRAIN_RUN} --config {V}/seed.yaml", 2,
         ("seed.yaml: seed 4294967296", "from 0 to 4294967295")),
    Case("train-yaml-duplicate", "config with a duplicate key (silently dropped a block)",
         f"{TRAIN_RUN} --config {V}/duplicate.yaml", 2,
         ("duplicate.yaml: line 4: duplicate key 'optim'", "keep one")),
    Case("train-yaml-alias-bomb", "a 'billion laughs' config (alias expansion)",
         f"{TRAIN_RUN} --config {V}/laughs.yaml", 2,
         ("laughs.yaml: line 2: YAML alias *l0 refused", "write the values out")),
    Case("train-lr-inf", "--lr inf (was: trained to NaN)", f"{TRAIN_RUN} --lr inf", 2,
         ("--lr inf", "finite number > 0")),
    # --- messages name the option typed -------------------------------------------------------------------
    Case("train-workers-negative", "--workers -1 (was: internal error)", f"{TRAIN_RUN} --workers -1", 2,
         ("--workers -1", "give 0 (load in the training process) or more")),
    Case("train-seed-negative", "--seed -1 (was: internal error)", f"{TRAIN_RUN} --seed -1", 2,
         ("--seed -1", "from 0 to 4294967295")),
    Case("train-widths-not-numbers", "--widths 4,a (was: internal error)",
         "train {store} --out {work}/run --device cpu --epochs 1 --widths 4,a", 2,
         ("--widths 4,a", "comma-separated whole numbers")),
    Case("prepare-split-nan", "--split nan:1:1 (was: internal error)",
         f"prepare {{src}} {{work}}/store {PREP} --split nan:1:1", 2, ("--split 'nan:1:1'", "finite non-negative")),
    Case("prepare-workers-negative", "--workers -1 for prepare (was: accepted)",
         "prepare {src} {work}/store --planes 0,8,16 --crop 32 --workers -1 --channels w1", 2,
         ("'--workers': -1", "give 0 or more processes")),
    Case("synth-workers-negative", "--workers -1 for synth (was: accepted)",
         "synth {work}/out --fields 1 --planes 16 --size 32x32 --channels w1 --workers -1", 2,
         ("'--workers': -1", "give 0 or more processes")),
    # --- malformed manifests ------------------------------------------------------------------------------
    Case("train-manifest-no-planes", "manifest without planes (was: KeyError: 'planes')",
         f"train {V}/store_noplanes --out {{work}}/run {TRAIN}", 2,
         ("store_noplanes/manifest.json: damaged manifest: planes missing or malformed", "rerun")),
    Case("evaluate-manifest-list", "manifest that is a JSON list (was: internal error)",
         "evaluate " + V + "/store_list " + WHOLE, 2,
         ("store_list/manifest.json: corrupt manifest (a JSON list, not an object)", "rerun prepare")),
    Case("prepare-manifest-list", "prepare into a folder whose manifest.json is a JSON list (was: internal error)",
         f"prepare {{src}} {{work}}/out {PREP}", 2, ("'manifest.json'", "choose another output folder"),
         setup="v_list_manifest"),
    # --- inference inputs ---------------------------------------------------------------------------------
    Case("blur-values-beyond-range", "float64 image with values of 1.7e308 (was: NaN image, exit 0)",
         f"blur {V}/huge_a.tif {V}/huge_b.tif " + BLUR, 2,
         ("image values reach 1.7e+308", "rescale the image")),
]


# --- setups: a run folder whose last.pt is broken --------------------------------------------------------------


def v_run_nan(work: Path, paths: dict) -> None:
    (work / "run").mkdir()
    (work / "run" / "metrics.jsonl").write_text('{"epoch": 1}\n')
    shutil.copy(paths["v"] / "nan.pt", work / "run" / "last.pt")


def v_run_noopt(work: Path, paths: dict) -> None:
    (work / "run").mkdir()
    (work / "run" / "metrics.jsonl").write_text('{"epoch": 1}\n')
    shutil.copy(paths["v"] / "run_noopt.pt", work / "run" / "last.pt")


def v_list_manifest(work: Path, paths: dict) -> None:
    (work / "out").mkdir()
    (work / "out" / "manifest.json").write_text("[1, 2]\n")


SETUPS.update(v_run_nan=v_run_nan, v_run_noopt=v_run_noopt, v_list_manifest=v_list_manifest)


# --- the broken files ------------------------------------------------------------------------------------------------


def broken_checkpoints(v: Path, store: Path) -> None:
    import torch

    from blurlatent.config import DataConfig, ModelConfig, OptimConfig, TrainConfig, to_dict
    from blurlatent.nets.autoencoder import Autoencoder

    torch.manual_seed(0)
    base = {"format_version": 1, "config": {"model": {"widths": TINY}, "data": {"normalize": "minmax"}},
            "model": Autoencoder(ModelConfig(widths=TINY)).state_dict(), "epoch": 0}
    w0 = "encoder.0.0.weight"

    def save(name: str, edit) -> None:
        ckpt = copy.deepcopy(base)
        edit(ckpt)
        torch.save(ckpt, v / name)

    save("nan.pt", lambda c: c["model"][w0].view(-1).__setitem__(0, float("nan")))
    save("inf.pt", lambda c: c["model"][w0].view(-1).__setitem__(3, float("inf")))
    save("negvar.pt", lambda c: c["model"]["encoder.0.1.running_var"].__setitem__(0, -1.0))
    save("int.pt", lambda c: c["model"].__setitem__(w0, c["model"][w0].round().to(torch.int32)))
    save("slope_nan.pt", lambda c: c["config"]["model"].__setitem__("negative_slope", float("nan")))
    save("slope_big.pt", lambda c: c["config"]["model"].__setitem__("negative_slope", 1e30))
    save("wide.pt", lambda c: c["config"]["model"].__setitem__("widths", [4, 65536, 65536]))
    save("no_model_cfg.pt", lambda c: c["config"].pop("model"))
    save("state_list.pt", lambda c: c["model"].__setitem__(w0, c["model"][w0].tolist()))
    save("huge_weights.pt", lambda c: c["model"][w0].fill_(3e38))  # finite, but a conv of them overflows
    in3 = ModelConfig(widths=TINY, in_channels=3, arch="paper")
    save("in3.pt", lambda c: c.update(config={"model": to_dict(in3)}, model=Autoencoder(in3).state_dict()))
    run = TrainConfig(model=ModelConfig(widths=TINY, arch="paper"), data=DataConfig(store=str(store.absolute())),
                      optim=OptimConfig(epochs=1, batch=4), device="cpu", amp="off")
    save("run_noopt.pt", lambda c: c.update(config=to_dict(run), scheduler={}, rng={}, epoch=1))


def broken_stores(v: Path, store: Path) -> None:
    from blurlatent.prepare.store import write_manifest

    manifest = json.loads((store / "manifest.json").read_text())
    shutil.copytree(store, v / "store_noplanes")
    no_planes = {k: x for k, x in manifest.items() if k != "planes"}
    (v / "store_noplanes" / "manifest.json").write_text(json.dumps(no_planes))
    shutil.copytree(store, v / "store_list")
    (v / "store_list" / "manifest.json").write_text("[1, 2]")
    shutil.copytree(store, v / "store_float")  # float crops with a NaN, its manifest's checksums made to match
    crops = np.load(store / "w1_train.npy").astype(np.float32)
    crops[0, 0, 0, 0] = np.nan
    np.save(v / "store_float" / "w1_train.npy", crops)
    written = ("checksums", "samples", "stamps")  # write_manifest adds them anew
    write_manifest(v / "store_float", {k: x for k, x in manifest.items() if k not in written})


def validation_files(root: Path, store: Path) -> Path:
    v = root / "validation"
    v.mkdir()
    broken_checkpoints(v, store)
    broken_stores(v, store)
    for name, text in {
        "gamma.yaml": "optim:\n  gamma: -1\n",
        "slope.yaml": "model:\n  negative_slope: .nan\n",
        "check_every.yaml": "check_every: 0\n",
        "strip_every.yaml": "strip_every: -1\n",
        "seed.yaml": "seed: 4294967296\n",
        "duplicate.yaml": "optim:\n  lr: 0.1\nseed: 1\noptim:\n  epochs: 3\n",
        "laughs.yaml": 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
        + "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 10)),
    }.items():
        (v / name).write_text(text)
    rng = np.random.default_rng(1)
    write_tif(v / "huge_a.tif", (rng.random((48, 64)) * 2 - 1) * 1.7e308)
    write_tif(v / "huge_b.tif", (rng.random((48, 64)) * 2 - 1) * 1.7e308)
    return v


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    built = build_paths(tmp_path_factory)
    return {**built, "v": validation_files(built["root"], built["store"])}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, paths, tmp_path, monkeypatch):
    run_case(case, paths, tmp_path, monkeypatch)


def test_rows_are_distinct_and_complete():
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({c.argv for c in CASES}) == len(CASES)
    assert all(len(c.expect) >= 2 for c in CASES)  # the thing named and the fix


def test_flag_names_do_not_leak_between_commands(paths, tmp_path, monkeypatch):
    """`train --gpus 0` reports nproc as --gpus; the next command in the same process, with --nproc, must say
    --nproc (the flag table used to stay behind in the CLI's state)."""
    from typer.testing import CliRunner

    from blurlatent.cli import app

    monkeypatch.chdir(tmp_path)
    argv = ["train", str(paths["store"]), "--out", str(tmp_path / "run"), *TRAIN.split()]
    first = CliRunner().invoke(app, argv + ["--gpus", "0"])
    assert first.exit_code == 2 and "--gpus 0: must be at least 1" in first.output, first.output
    second = CliRunner().invoke(app, argv + ["--nproc", "0"])
    assert second.exit_code == 2 and "--nproc 0: must be at least 1" in second.output, second.output


def test_train_nan_causes_are_told_apart(paths, tmp_path, monkeypatch):
    """Divergence (finite steps first) says lower --lr; NaN at the first step (init weights) says it is not
    the learning rate; the float store is refused before training (exit 2, above)."""
    from typer.testing import CliRunner

    from blurlatent.cli import app

    monkeypatch.chdir(tmp_path)
    base = ["train", str(paths["store"]), *TRAIN.split()]
    diverged = CliRunner().invoke(app, base + ["--out", str(tmp_path / "a"), "--lr", "1e30"])
    assert diverged.exit_code == 1 and "finite step(s): training diverged" in diverged.output
    assert "lower --lr" in diverged.output and "not the learning rate" not in diverged.output
    init = ["--init", str(paths["v"] / "huge_weights.pt")]
    at_init = CliRunner().invoke(app, base + ["--out", str(tmp_path / "b"), *init])
    assert at_init.exit_code == 1 and "not the learning rate" in at_init.output and "lower --lr" not in at_init.output
