"""Shared test set-up: one thread (2-core CI box), no network, tiny models."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)
    yield


TINY_WIDTHS = [4, 8, 8]
