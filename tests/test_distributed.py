"""DistributedDataParallel on the CPU: 2 gloo processes under torchrun vs one process.

One torchrun launch (≈15-25 s on 2 busy cores, mostly importing torch) trains a tiny MLP
twice per rank, from a TensorLoader (shared shuffled permutation, sharded by rank) and from
a DataLoader with a DistributedSampler. DDP averages gradients, so 2 ranks of batch B/2 take the same steps as
one process of batch B: parameters must agree across ranks exactly and with the single-process
run within float tolerance; metrics are all-reduced; only rank 0 writes files and progress.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labkit import distributed
from labkit.checkpoint import unwrap
from labkit.errors import SetupError
from labkit.history import History

REPO = Path(__file__).resolve().parent.parent
GLOBAL_BATCH, EPOCHS = 12, 3


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> tuple[Path, dict[int, dict]]:
    """Launch tests/ddp_worker.py under torchrun with 2 CPU processes; load each rank's result."""
    out = tmp_path_factory.mktemp("ddp")
    env = dict(os.environ, PYTHONPATH=str(REPO), LABKIT_DEVICE="cpu", OMP_NUM_THREADS="1")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(REPO / "tests" / "ddp_worker.py"), str(out),
        "--global-batch", str(GLOBAL_BATCH), "--epochs", str(EPOCHS),
    ]  # fmt: skip
    done = subprocess.run(
        command, check=False, cwd=out, env=env, capture_output=True, text=True, timeout=240
    )
    logs = "\n".join(p.read_text() for p in sorted(out.glob("output_rank*.txt")))
    assert done.returncode == 0, f"torchrun failed:\n{done.stderr[-4000:]}\n{logs[-4000:]}"
    results = {r: torch.load(out / f"result_rank{r}.pt", weights_only=True) for r in (0, 1)}
    return out, results


@pytest.fixture(scope="module")
def single_run(tmp_path_factory) -> dict[str, dict]:
    """The same training in this process (no process group) with the whole global batch."""
    from tests import ddp_worker

    assert not distributed.launched_by_torchrun()
    out = tmp_path_factory.mktemp("single")
    return {
        kind: ddp_worker.train(out, GLOBAL_BATCH, EPOCHS, kind, progress=False)
        for kind in ("tensor", "dataloader")
    }


@pytest.mark.parametrize("kind", ["tensor", "dataloader"])
def test_ranks_end_with_identical_parameters(ddp_run, kind):
    _, results = ddp_run
    a, b = results[0][kind], results[1][kind]
    assert a["world_size"] == b["world_size"] == 2
    assert a["params"].keys() == b["params"].keys()
    for name in a["params"]:
        assert torch.equal(a["params"][name], b["params"][name]), f"{name} differs between ranks"


@pytest.mark.parametrize("kind", ["tensor", "dataloader"])
def test_two_ranks_match_one_process_with_the_same_global_batch(ddp_run, single_run, kind):
    _, results = ddp_run
    ddp, single = results[0][kind], single_run[kind]
    start = ddp_worker_initial_params()
    moved = sum((single["params"][n] - start[n]).abs().sum().item() for n in start)
    assert moved > 0.1, "the reference run did not train; the comparison would prove nothing"
    for name, value in single["params"].items():
        torch.testing.assert_close(ddp["params"][name], value, rtol=1e-4, atol=1e-5, msg=name)


def ddp_worker_initial_params() -> dict[str, torch.Tensor]:
    from tests import ddp_worker

    return ddp_worker.build_model().state_dict()


@pytest.mark.parametrize("kind", ["tensor", "dataloader"])
def test_metrics_are_all_reduced_over_ranks(ddp_run, single_run, kind):
    """Each rank sees half the data; all-reduced sums give both ranks the global figures."""
    _, results = ddp_run
    h0, h1, ref = (
        History.from_dict(run[kind]["history"]) for run in (results[0], results[1], single_run)
    )
    assert h0["epoch"] == h1["epoch"] == ref["epoch"] == list(range(1, EPOCHS + 1))
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert h0[key] == pytest.approx(h1[key], rel=1e-6), f"{key} differs between ranks"
        assert h0[key] == pytest.approx(ref[key], rel=1e-4, abs=1e-5), f"{key} is not the global value"
    assert h0.last("val_accuracy") > 1 / 3, "the MLP should beat chance on its own problem"


def test_dataloader_sampler_gets_set_epoch(ddp_run):
    _, results = ddp_run
    assert results[0]["dataloader"]["sampler_epoch"] in (EPOCHS - 1, EPOCHS)


def test_only_rank_zero_writes_checkpoints_logs_and_progress(ddp_run):
    out, _ = ddp_run
    for kind in ("tensor", "dataloader"):
        assert (out / f"ckpt_{kind}_rank0" / "last.pt").is_file()
        assert any((out / f"tb_{kind}_rank0").rglob("events.out.tfevents.*"))
        assert not (out / f"ckpt_{kind}_rank1").exists(), "rank 1 wrote checkpoints"
        assert not (out / f"tb_{kind}_rank1").exists(), "rank 1 wrote TensorBoard logs"
    assert (out / "output_rank0.txt").read_text().strip(), "rank 0 showed no progress"
    assert (out / "output_rank1.txt").read_text().strip() == "", "rank 1 printed progress"


def test_rank_zero_checkpoint_loads_into_a_plain_model(ddp_run):
    """A checkpoint written from the DDP-wrapped model has no `module.` prefix."""
    from labkit.checkpoint import load_checkpoint
    from tests import ddp_worker

    out, results = ddp_run
    model = ddp_worker.build_model()
    load_checkpoint(out / "ckpt_tensor_rank0" / "last.pt", model=model)
    for name, value in model.state_dict().items():
        assert torch.equal(value, results[0]["tensor"]["params"][name])


@pytest.fixture(scope="module")
def ddp_stops(tmp_path_factory) -> tuple[Path, dict[int, dict]]:
    """tests/ddp_worker.py --stops under torchrun: mid-epoch stops asked for on one rank only."""
    out = tmp_path_factory.mktemp("ddp_stops")
    env = dict(os.environ, PYTHONPATH=str(REPO), LABKIT_DEVICE="cpu", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO / "tests" / "ddp_worker.py"), str(out), "--stops"]
    done = subprocess.run(command, check=False, cwd=out, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"torchrun failed:\n{done.stderr[-4000:]}"
    return out, {r: torch.load(out / f"stops_rank{r}.pt", weights_only=True) for r in (0, 1)}


def test_ranks_agree_to_stop_every_few_steps_not_every_step(ddp_stops):
    """Stop agreement is one MAX all-reduce every STOP_CHECK_EVERY steps (and one per epoch end), not per step."""
    _, results = ddp_stops
    every, per_epoch = results[0]["every"], results[0]["steps_per_epoch"]
    assert every > 1 and per_epoch > every
    for rank in (0, 1):
        run = results[rank]["callback"]  # asked to stop at epoch 2, step 5: ended at epoch 2, step `every`
        steps = per_epoch + every
        assert run["agreements"] == 1 + 1 + 1, run["agreements"]  # epoch 1: step 16 and its end; epoch 2: step 16
        assert run["agreements"] < steps / 10


def test_a_stop_asked_on_one_rank_lands_on_the_same_step_on_both(ddp_stops):
    out, results = ddp_stops
    every = results[0]["every"]
    for name, where, reason in (("callback", (2, every), "rank 1 asked to stop"),
                                ("budget", (1, every), f"time budget of 10 s reached ({every} s)")):
        a, b = results[0][name], results[1][name]
        assert tuple(a["ended_at"]) == tuple(b["ended_at"]) == where, (name, a["ended_at"], b["ended_at"])
        assert a["epochs"] == b["epochs"] == list(range(1, where[0]))
        for key in a["params"]:  # the same steps on both ranks: DDP kept them identical
            assert torch.equal(a["params"][key], b["params"][key]), (name, key)
        asked, other = (b, a) if name == "callback" else (a, b)
        assert asked["stop_reason"].startswith(f"{reason} at epoch {where[0]}, step {every} of "), asked["stop_reason"]
        assert other["stop_reason"].startswith(f"stopped at epoch {where[0]}, step {every} of ")
        from labkit.checkpoint import load_checkpoint

        partial = load_checkpoint(out / f"stop_{name}" / "last.pt").partial  # rank 0's mid-epoch checkpoint
        assert (partial["epoch"], partial["steps"]) == where
        assert "resume with --resume" in a["stop_reason"]


def test_single_process_fallbacks():
    assert not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main_process()) == (0, 1, True)
    context = distributed.init_distributed(device="cpu")
    assert (context.rank, context.world_size, context.backend) == (0, 1, None)
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap_model(model, "cpu") is model
    assert unwrap(model) is model
    distributed.barrier()
    distributed.cleanup()
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    with distributed.session("cpu") as context:
        assert context.is_main_process and not context.is_distributed
        assert context.device == torch.device("cpu")


def test_per_rank_batch_size_requires_an_even_split():
    assert distributed.per_rank_batch_size(128, world=4) == 32
    with pytest.raises(SetupError, match="multiple of 3"):
        distributed.per_rank_batch_size(128, world=3)


def test_bad_launch_environment_gives_clear_errors(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "two")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(SetupError, match="WORLD_SIZE='two' is not an integer"):
        distributed.init_distributed(device="cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(SetupError, match="MASTER_ADDR, MASTER_PORT not set"):
        distributed.init_distributed(device="cpu")
    with pytest.raises(SetupError, match="nccl"):
        distributed.init_distributed(device="cpu", backend="nccl")
