"""Shared fixtures: where the real data sets are, one torch thread, a private cache.

The real data lives in ``../shared/data`` beside a clone (``make test`` passes it on
through ``OPTIMLAB_DATA``). Real-data tests must run in CI, so when the data cannot
be found under CI they fail instead of skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _find_real_data() -> Path | None:
    candidates = []
    if os.environ.get("OPTIMLAB_DATA"):
        candidates.append(Path(os.environ["OPTIMLAB_DATA"]))
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for path in candidates:
        wanted = ("fashion-mnist", "cifar-10-batches-bin")
        if all((path / name).is_dir() for name in wanted):
            return path
    return None


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """Folder holding ``fashion-mnist/`` and ``cifar-10-batches-bin/``."""
    path = _find_real_data()
    if path is None:
        message = (
            "real data not found: set OPTIMLAB_DATA or put ../shared/data "
            "beside the clone"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def one_thread():
    """torch on one thread while a test runs: the CI box has 2 shared cores, and
    threaded CPU kernels only contend there. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A data cache of the test's own, and no OPTIMLAB_DATA from the environment."""
    monkeypatch.setenv("OPTIMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPTIMLAB_DATA", raising=False)
