"""logs.py: a line per epoch on stderr when it is not a terminal, metrics.csv equal to metrics.jsonl (also
across --resume), TensorBoard events read back with tensorboard's own reader, a missing extra refused."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path

import pytest
from helpers.train_store import make_store, metrics, tiny_config
from typer.testing import CliRunner

import blurlatent.training.logs as logs
from blurlatent.cli import app
from blurlatent.errors import UsageError
from blurlatent.training.logs import scalar_tag, trim_logs, write_csv
from blurlatent.training.trainer import train

TRAIN = ["--arch", "paper", "--widths", "4,8,8", "--batch-size", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("store") / "prepared")


def csv_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def as_text(rows: list[dict]) -> list[dict]:
    """JSON rows as the CSV writes them (str of each value: floats round-trip through repr)."""
    return [{k: str(v) for k, v in row.items()} for row in rows]


def test_not_a_tty_one_line_per_epoch_on_stderr_also_after_resume(store, tmp_path):
    runner = CliRunner()  # its stderr is not a terminal, as under SLURM or nohup
    run = tmp_path / "run"
    res = runner.invoke(app, ["train", str(store), "--out", str(run), "--epochs", "3", *TRAIN])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stderr.splitlines() if line.startswith("epoch ")]
    assert [re.match(r"epoch (\d+)/3: train \d\.\d{4}, val \d\.\d{4}", line).group(1) for line in lines] == \
        ["1", "2", "3"]
    assert "triplets/s" in lines[0] and "best validation loss" in res.stderr.splitlines()[-1]  # then the summary
    res = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "4"])
    assert res.exit_code == 0, res.output
    assert [line.split(":")[0] for line in res.stderr.splitlines() if line.startswith("epoch ")] == ["epoch 4/4"]


def test_the_summary_says_what_best_pt_was_chosen_on(tmp_path):
    """Without a validation split, best.pt is chosen on the training loss, and the summary says so (it said "best
    validation loss")."""
    store = make_store(tmp_path / "no_val", n_val=0)
    res = CliRunner().invoke(app, ["train", str(store), "--out", str(tmp_path / "run"), "--epochs", "1", *TRAIN])
    assert res.exit_code == 0, res.output
    assert "no val split" in res.stderr and "best training loss (no validation split)" in res.stderr.splitlines()[-1]


def test_csv_rows_equal_jsonl_rows_and_stay_equal_across_resume(store, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(store, epochs=2), run, progress=False)
    assert as_text(metrics(run)) == csv_rows(run) and len(csv_rows(run)) == 2
    assert list(csv_rows(run)[0])[:3] == ["epoch", "lr", "train_loss"]  # the header: the jsonl keys, in order
    # killed between the checkpoint and the logs of epoch 2: resume restores the row in both, then goes on
    for name in ("metrics.jsonl", "metrics.csv"):
        path = run / name
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    train(tiny_config(store, epochs=3), run, resume=True, progress=False)
    assert [r["epoch"] for r in metrics(run)] == [1, 2, 3]
    assert as_text(metrics(run)) == csv_rows(run)


def test_trim_logs_rewrites_the_csv_from_the_json_lines(tmp_path):
    rows = [{"epoch": e, "lr": 0.001, "train_loss": 1 / e, "best": e == 3} for e in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_csv(tmp_path / "metrics.csv", rows[:1])  # stale
    trim_logs(tmp_path, 2)
    assert csv_rows(tmp_path) == as_text(rows[:2])


def test_tensorboard_events_hold_every_epoch_once_across_resume(store, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed: pip install "
                        "'blurlatent[tensorboard]' (make test installs it)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    train(tiny_config(store, epochs=2, log="tensorboard"), run, progress=False)
    train(tiny_config(store, epochs=3, log="tensorboard"), run, resume=True, progress=False)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert {"loss/train", "loss/val", "recon/val", "lr", "triplets_per_s"} <= set(events.Tags()["scalars"])
    points = events.Scalars("loss/train")
    assert [p.step for p in points] == [1, 2, 3]
    assert [p.value for p in points] == pytest.approx([m["train_loss"] for m in metrics(run)], rel=1e-6)
    assert scalar_tag("val_interp") == "interp/val" and scalar_tag("triplets_per_s") == "triplets_per_s"


def test_tensorboard_missing_is_one_line_naming_the_extra(store, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(logs.importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else
                        real(name, *a))
    with pytest.raises(UsageError, match=r"blurlatent\[tensorboard\]"):
        train(tiny_config(store, log="tensorboard"), tmp_path / "lib", progress=False)
    res = CliRunner().invoke(app, ["train", str(store), "--out", str(tmp_path / "run"), "--log", "tensorboard",
                                   *TRAIN])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "error: --log tensorboard needs the tensorboard package: pip install 'blurlatent[tensorboard]'"]
    assert not (tmp_path / "run").exists() and not (tmp_path / "lib").exists()
