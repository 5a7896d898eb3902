"""run.py: the run folder (one output policy: a folder train did not write is never replaced, a run only
with force and only its own files), what a failed start leaves (nothing), and the resume rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_store import make_store, metrics, tiny_config

from blurlatent.errors import UsageError
from blurlatent.run import resume_config
from blurlatent.train import train


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("store") / "prepared")


@pytest.fixture(scope="module")
def finished(store, tmp_path_factory) -> Path:
    """A finished 1-epoch run; tests copy nothing into it, they only read and resume-check it."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_config(store, epochs=1), run, progress=False)
    return run


def test_a_folder_train_did_not_write_is_never_replaced(store, tmp_path):
    own = tmp_path / "mine"
    own.mkdir()
    (own / "config.yaml").write_text("seed: 0\n")  # a user's own config, no last.pt, no metrics.jsonl
    for force in (False, True):
        with pytest.raises(UsageError, match="nothing there is replaced even with --force"):
            train(tiny_config(store, epochs=1), own, progress=False, force=force)
    assert sorted(p.name for p in own.iterdir()) == ["config.yaml"]
    assert (own / "config.yaml").read_text() == "seed: 0\n"


def test_force_replaces_an_earlier_run_and_only_its_files(store, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(store, epochs=1), run, progress=False)
    (run / "notes.txt").write_text("kept\n")
    with pytest.raises(UsageError) as exc:
        train(tiny_config(store, epochs=1), run, progress=False)
    assert "holds a training run" in str(exc.value) and "--force" in str(exc.value) and "resume=True" in str(exc.value)
    train(tiny_config(store, epochs=2), run, progress=False, force=True)
    assert [m["epoch"] for m in metrics(run)] == [1, 2] and (run / "notes.txt").read_text() == "kept\n"


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(store, tmp_path):
    def fail(epoch, step):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        train(tiny_config(store, epochs=1), tmp_path / "a" / "b" / "run", progress=False, on_step=fail)
    assert not (tmp_path / "a").exists()  # every folder it created is gone: the rerun needs no force


def test_resume_restores_a_metrics_line_lost_between_checkpoint_and_log(store, tmp_path):
    """A kill after last.pt is saved but before its metrics line is written: resume puts the line back."""
    run = tmp_path / "lost-line"
    train(tiny_config(store, epochs=2), run, progress=False)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text(lines[0] + "\n")  # as if killed between checkpoint and log
    train(tiny_config(store, epochs=3), run, resume=True, progress=False)
    assert [m["epoch"] for m in metrics(run)] == [1, 2, 3]
    assert json.loads(lines[1]) == metrics(run)[1]


def test_resume_config_takes_the_runs_settings_and_only_resumable_changes(finished, tmp_path):
    cfg = resume_config(finished, {"optim.epochs": 3, "device": None, "optim.lr": None})
    assert cfg.optim.epochs == 3 and cfg.model.widths == [4, 8, 8] and cfg.data.normalize == "minmax"
    with pytest.raises(UsageError, match=r"drop optim.lr, seed \(only optim.epochs"):
        resume_config(finished, {"optim.lr": 0.1, "seed": 1, "optim.epochs": 3})
    with pytest.raises(UsageError, match="differ"):
        resume_config(finished, {}, out=tmp_path / "elsewhere")
    assert resume_config(finished, {}, out=finished).optim.epochs == 1
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(UsageError, match="no last.pt there; pass a run folder written by `blurlatent train`"):
        resume_config(foreign)
    unstarted = tmp_path / "unstarted"
    unstarted.mkdir()
    (unstarted / "metrics.jsonl").touch()  # what a run writes first, before its first checkpoint
    with pytest.raises(UsageError, match="rerun its `blurlatent train` command with force=True"):
        resume_config(unstarted)
