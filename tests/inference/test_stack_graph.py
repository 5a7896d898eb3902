"""A folder of stacks on Dask (`deblur --stack-dir DIR --z P1 P2 --workers N | --scheduler ADDRESS`): the files of the
one-process folder mode, byte for byte (one torch thread everywhere; batches of 4 stacks as it makes them), a log line
per stack; a worker that dies mid-task ends in one "workers died" line with no output, temp or lock left."""

from __future__ import annotations

import os
import sys

import pytest
from helpers.infer_model import tiny_checkpoint
from helpers.stack_data import write_stacks
from typer.testing import CliRunner

from blurlatent.cli import app
from blurlatent.inference import stack_graph
from blurlatent.inference.stack_graph import stack_batch_task

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
runner = CliRunner()
FOCUS = [4, 4, 4, 5, 4]  # per stack: a batch of three (one α), then two alone
Z = ["--z", "0", "2"]
DIES = "cells 1 day6"  # the stack whose task kills its worker


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stack-graph") / "stacks"
    return folder, write_stacks(folder, FOCUS, planes=7, channels=1)


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes; a task whose worker dies is not retried (allowed-failures 0)."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as local:
        yield local


def deblur(stacks, ckpt, out, *options):
    return runner.invoke(app, ["-v", "deblur", "--stack-dir", str(stacks), *Z, "-c", str(ckpt), "-o", str(out),
                               *map(str, options)])


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_workers_and_a_cluster_write_the_files_of_one_process(tmp_path, ckpt, stacks, cluster):
    folder, truth = stacks
    one = deblur(folder, ckpt, tmp_path / "one")
    assert one.exit_code == 0, one.output
    expected = files(tmp_path / "one")
    assert len(expected) == len(truth)
    for options in (["--workers", 2], ["--scheduler", cluster.scheduler_address]):
        out = tmp_path / options[0].strip("-")
        result = deblur(folder, ckpt, out, *options)
        assert result.exit_code == 0, result.output
        assert files(out) == expected  # names and bytes: pixels, metadata, provenance
        text = " ".join(result.output.split())
        for name, focus in truth.items():  # a line per stack as its task ends; the job's lines as one process
            assert f"{name}: alpha = " in text and f"(target z{focus})" in text
            assert f"{name}: target = z{focus}" in text
        assert f"wrote {len(truth)} images for {len(truth)} stacks into {out}" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "scheduler", "workers"]  # no temp, no lock


def dies_on_one(job, batch):
    """``stack_batch_task``, except that the task of ``DIES`` ends its worker process (pickled by value)."""
    if batch[0].name == DIES:
        os._exit(1)
    return stack_batch_task(job, batch)


def test_a_lost_worker_ends_in_one_line_and_leaves_nothing(tmp_path, ckpt, stacks, cluster, monkeypatch):
    cloudpickle = pytest.importorskip("cloudpickle")
    folder, _ = stacks
    monkeypatch.setattr(stack_graph, "stack_batch_task", dies_on_one)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        result = deblur(folder, ckpt, tmp_path / "out", "--scheduler", cluster.scheduler_address, "--batch-size", 1)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "workers died" in errors[0], result.output
    assert result.output.strip().splitlines()[-1].endswith("(rerun with --debug for the traceback)")
    assert sorted(tmp_path.iterdir()) == []  # no output, no staged temp, no lock


def test_workers_need_a_stack_dir_and_say_so_in_one_line(tmp_path, ckpt, stacks):
    folder, _ = stacks
    result = runner.invoke(app, ["deblur", "--blurriest-dir", str(folder), "--less-blurry-dir", str(folder), "-c",
                                 str(ckpt), "--alpha", "0.5", "-o", str(tmp_path / "o"), "--workers", "2"])
    assert result.exit_code == 2 and "not pairs of two folders" in " ".join(result.output.split()), result.output
    result = deblur(folder, ckpt, tmp_path / "o", "--scheduler", "nowhere")
    assert result.exit_code == 2 and "give the Dask scheduler's address" in result.output, result.output
    assert sorted(tmp_path.iterdir()) == []
