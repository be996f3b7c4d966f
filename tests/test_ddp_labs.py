"""Every lab under torchrun on the CPU (gloo): two processes, different shards, rank 0 alone writes.

Also the multi-node form of the launch, tried on one machine: two processes meeting through the
c10d rendezvous on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.lab import lab_names

REPO = Path(__file__).resolve().parent.parent


def _launch(args: list[str], out: Path, timeout: int = 420) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), LABKIT_DEVICE="cpu", OMP_NUM_THREADS="1",
               LABKIT_PROGRESS="0")
    command = [sys.executable, "-m", "torch.distributed.run", *args]
    return subprocess.run(command, check=False, cwd=out.parent, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _check_two_rank_run(done: subprocess.CompletedProcess, out: Path) -> dict:
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    record = json.loads((out / "metrics.json").read_text())
    assert record["written_by"]["rank"] == 0, "only rank 0 writes the run's files"
    ddp = record["ddp"]
    assert ddp["world_size"] == 2
    first = {entry["rank"]: entry for entry in ddp["first_batches"]}
    assert set(first) == {0, 1}
    assert first[0]["fingerprint"] != first[1]["fingerprint"], "the two ranks trained on the same batch"
    events = list((out / "tensorboard").glob("**/events.*")) if (out / "tensorboard").exists() else []
    assert len({p.parent for p in events}) <= 1, "TensorBoard logs from one process only"
    leftovers = list(out.glob("**/.*.tmp-*"))
    assert not leftovers, leftovers
    return record


@pytest.mark.slow
@pytest.mark.parametrize("lab", lab_names())
def test_every_lab_trains_under_torchrun_on_two_cpu_processes(lab, tmp_path):
    out = tmp_path / lab
    done = _launch(["--standalone", "--nproc_per_node=2", "-m", "labkit", "run", lab, "--smoke",
                    "--out", str(out)], out)
    _check_two_rank_run(done, out)


@pytest.mark.slow
def test_the_multi_node_launch_form_through_a_c10d_rendezvous(tmp_path):
    out = tmp_path / "rdzv"
    port = _free_port()
    done = _launch(["--nnodes=1", "--nproc_per_node=2", "--rdzv-backend=c10d",
                    f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=labkit-test", "-m", "labkit", "run",
                    "function-fitting", "--smoke", "--out", str(out)], out)
    _check_two_rank_run(done, out)
