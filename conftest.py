"""Test configuration shared by every test and by the nbval notebook runs.

The environment is set at import time, before nbval starts any kernel, so the
notebooks run at smoke size with progress bars off and a non-interactive
matplotlib backend.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ["LABKIT_SMOKE"] = "1"
os.environ["LABKIT_PROGRESS"] = "0"
os.environ["LABKIT_SETTLE_SECONDS"] = "0"  # `labkit reproduce` in tests: no wait before reading the load after
os.environ.setdefault("MPLBACKEND", "Agg")
# Notebook kernels (nbval) start outside the per-test fixture below: their runs (checkpoints, logs) go to a
# temporary folder, not to labs/runs/ in the checkout.
os.environ.setdefault("LABKIT_RUNS", tempfile.mkdtemp(prefix="labkit-runs-"))
# Smoke-size models are tiny: one intra-op thread per process is faster than two (no OpenMP
# hand-offs) and keeps the suite fast when the 2-core CI machine is shared. Notebook kernels and
# subprocesses inherit it; torch reads it at import, which happens after this file is loaded.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The kernel nbval starts must import this checkout's labkit even without an install.
_REPO = Path(__file__).resolve().parent
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(_REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)
# bench/throughput.py (the benches' timers) is imported by the bench tests as `throughput`.
sys.path.insert(0, str(_REPO / "bench"))


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    """Every test writes data, caches and runs into its own temporary folders."""
    base = tmp_path_factory.mktemp("labkit")
    monkeypatch.setenv("LABKIT_DATA", str(base / "data"))
    monkeypatch.setenv("LABKIT_RUNS", str(base / "runs"))
    yield


@pytest.fixture
def shared_datasets() -> Path:
    """The read-only real datasets in ../shared/datasets; skips the test when absent."""
    from labkit.config import shared_datasets as find

    path = find()
    if path is None:
        pytest.skip("real data not available: ../shared/datasets is absent (a fresh clone)")
    return path
