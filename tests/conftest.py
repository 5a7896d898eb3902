"""Shared test set-up: one thread (2-core CI box), no network, tiny models."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
from helpers.badinput import build_paths


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)
    yield


TINY_WIDTHS = [4, 8, 8]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """The bad-input matrix's good data and broken inputs (``badinput.build_paths``), built once per matrix
    module; a module may override it to add its own files (test_bad_inputs_validation does)."""
    return build_paths(tmp_path_factory)
