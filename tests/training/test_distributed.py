"""distributed.py: two gloo processes on CPU train to bitwise identical replicas, and what rank 0 saves is them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.train_store import make_store, metrics, tiny_config

from blurlatent.nets.checkpoint import load_checkpoint, state_digest
from blurlatent.training.distributed import DistInfo, all_sum, gather, torchrun_env
from blurlatent.training.trainer import train


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("store") / "prepared")


def test_one_process_helpers_are_no_ops(monkeypatch):
    one = DistInfo()
    assert one.main and all_sum([1.0, 2.0], one, None) == [1.0, 2.0] and gather("x", one) == ["x"]
    monkeypatch.delenv("RANK", raising=False)
    assert torchrun_env() is None
    monkeypatch.setenv("RANK", "1"), monkeypatch.setenv("WORLD_SIZE", "4"), monkeypatch.setenv("LOCAL_RANK", "1")
    assert torchrun_env() == DistInfo(1, 4, 1) and not torchrun_env().main


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
