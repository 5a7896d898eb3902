"""run.py: the run folder (one output policy: a folder train did not write is never replaced, a run only
with force and only its own files), what a failed start leaves (nothing), and the resume rules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers.train_store import make_store, metrics, tiny_config

from blurlatent.errors import UsageError
from blurlatent.files.output_folders import MARKER
from blurlatent.nets.checkpoint import load_checkpoint, save_checkpoint
from blurlatent.training.run_folder import mark_run, resume_config
from blurlatent.training.trainer import train


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
        with pytest.raises(UsageError, match="nothing there is replaced even with force=True"):
            train(tiny_config(store, epochs=1), own, progress=False, force=force)
    assert sorted(p.name for p in own.iterdir()) == ["config.yaml"]
    assert (own / "config.yaml").read_text() == "seed: 0\n"


def test_force_replaces_an_earlier_run_and_only_its_files(store, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(store, epochs=1), run, progress=False)
    with pytest.raises(UsageError) as exc:
        train(tiny_config(store, epochs=1), run, progress=False)
    message = str(exc.value)
    assert "holds a training run" in message and "force=True" in message and "resume=True" in message
    (run / "notes.txt").write_text("kept\n")  # the user's file in the run: the folder is no longer only the run's
    with pytest.raises(UsageError, match="'notes.txt'.*nothing there is replaced even with force=True"):
        train(tiny_config(store, epochs=2), run, progress=False, force=True)
    (run / "notes.txt").unlink()
    train(tiny_config(store, epochs=2), run, progress=False, force=True)
    assert [m["epoch"] for m in metrics(run)] == [1, 2]


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
    mark_run(unstarted)  # what a run writes first, before its first checkpoint
    (unstarted / "metrics.jsonl").touch()
    with pytest.raises(UsageError, match="rerun its `blurlatent train` command with force=True"):
        resume_config(unstarted)
    (unstarted / MARKER).unlink()  # no marker: not a run (a blurlatent before markers, or not ours)
    with pytest.raises(UsageError, match="no last.pt there; pass a run folder written by `blurlatent train`"):
        resume_config(unstarted)


# --- resuming from anywhere, and a torn metrics line (issue 11) ------------------------------------------------


def test_a_torn_last_metrics_line_is_dropped_with_a_notice_on_resume(store, tmp_path, caplog):
    """Killed while writing epoch 2's line (its checkpoint already saved): resume drops the partial line with a
    notice and puts the whole line back from the checkpoint."""
    run = tmp_path / "torn"
    train(tiny_config(store, epochs=2), run, progress=False)
    text = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(text[: len(text) - 40])
    with caplog.at_level("WARNING"):
        train(tiny_config(store, epochs=3), run, resume=True, progress=False)
    assert [m["epoch"] for m in metrics(run)] == [1, 2, 3]
    assert (run / "metrics.jsonl").read_text().startswith(text)
    assert "metrics.jsonl: dropped a partial last line" in caplog.text


def test_a_damaged_metrics_line_before_the_last_is_named(store, tmp_path):
    from blurlatent.training.run_folder import trim_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\nnot json\n{"epoch": 2}\n')
    with pytest.raises(UsageError, match=r"metrics.jsonl: line 2 is not a metrics record \('not json'\)"):
        trim_metrics(path, 2)


def test_metrics_epochs_are_read_as_numbers(tmp_path):
    """A hand-edited ``"epoch": "2"`` compares as 2 (it used to stay a string: TypeError, "internal error");
    ``Infinity`` is an unreadable line, not an OverflowError."""
    from blurlatent.training.run_folder import metric_lines, trim_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1, "loss": 0.5}\n{"epoch": "2"}\n{"epoch": 3}\n')
    trim_metrics(path, 2)
    assert metric_lines(path) == [{"epoch": 1, "loss": 0.5}, {"epoch": 2}]
    path.write_text('{"epoch": Infinity}\n{"epoch": 2}\n')
    with pytest.raises(UsageError, match="line 1 is not a metrics record"):
        metric_lines(path)


def test_resume_works_from_any_working_folder(store, tmp_path, monkeypatch):
    """The store was given relative to where the run started; the run is resumed from elsewhere."""
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    shutil.copytree(store, start / "prepared")
    monkeypatch.chdir(start)
    train(tiny_config(Path("prepared"), epochs=1), Path("run"), progress=False)
    saved = load_checkpoint(start / "run" / "last.pt")["config"]["data"]["store"]
    assert saved == str(start / "prepared")  # saved absolute
    monkeypatch.chdir(elsewhere)
    train(resume_config(start / "run", {"optim.epochs": 2}), start / "run", resume=True, progress=False)
    assert [m["epoch"] for m in metrics(start / "run")] == [1, 2]


def test_an_older_runs_relative_store_is_found_from_the_run_folder(store, tmp_path, monkeypatch):
    start = tmp_path / "start"
    start.mkdir()
    shutil.copytree(store, start / "prepared")
    train(tiny_config(start / "prepared", epochs=1), start / "run", progress=False)
    ckpt = load_checkpoint(start / "run" / "last.pt")
    ckpt["config"]["data"]["store"] = "prepared"  # what runs saved before: relative to where they started
    save_checkpoint(start / "run" / "last.pt", ckpt)
    monkeypatch.chdir(tmp_path)
    config = resume_config(start / "run", {"optim.epochs": 2})
    assert config.data.store == str(start / "prepared")
    train(config, start / "run", resume=True, progress=False)
    assert [m["epoch"] for m in metrics(start / "run")] == [1, 2]


def test_resume_with_store_follows_a_moved_store_and_refuses_another(store, tmp_path):
    from typer.testing import CliRunner

    from blurlatent.cli import app

    shutil.copytree(store, tmp_path / "prepared")
    manifest = json.loads((tmp_path / "prepared" / "manifest.json").read_text())
    (tmp_path / "prepared" / "manifest.json").write_text(json.dumps(dict(manifest, fingerprint="abc")))
    run = tmp_path / "run"
    train(tiny_config(tmp_path / "prepared", epochs=1), run, progress=False)
    (tmp_path / "prepared").rename(tmp_path / "moved")
    result = CliRunner().invoke(app, ["train", "--resume", str(run), "--epochs", "2"])
    assert result.exit_code == 2 and "prepared is not found" in result.output and "--store PATH" in result.output
    moved = str(tmp_path / "moved")
    result = CliRunner().invoke(app, ["train", "--resume", str(run), "--epochs", "2", "--store", moved])
    assert result.exit_code == 0, result.output
    assert [m["epoch"] for m in metrics(run)] == [1, 2]
    assert load_checkpoint(run / "last.pt")["config"]["data"]["store"] == moved
    result = CliRunner().invoke(app, ["train", "--resume", str(run), "--epochs", "3", "--store", str(store)])
    assert result.exit_code == 2 and "not the store run" in result.output, result.output
