"""Several processes, one model: DistributedDataParallel for any lab, under torchrun (`torchrun --standalone
--nproc_per_node=2 -m labkit run tiny-imagenet`). Outside torchrun the same code runs as one process (rank 0 of 1;
`wrap_model` only moves the model). DDP averages gradients over ranks, so N ranks of batch B/N step like one
process of batch B; files are written on rank 0."""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from labkit.data.tensor_loader import TensorLoader
from labkit.device import model_device, pick_device, prepare_model
from labkit.errors import LabkitError, SetupError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: its rank among `world_size`, its local rank and device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None  # None when no process group was started (a single process)

    is_distributed = property(lambda self: self.world_size > 1)
    is_main_process = property(lambda self: self.rank == 0)


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def _env_int(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise SetupError(f"environment variable {name}={value!r} is not an integer; launch with "
                               "`torchrun --standalone --nproc_per_node=N -m labkit run <lab> ...`") from None


def init_distributed(device: str | torch.device | None = None, backend: str | None = None,
                     timeout_s: float = 600.0) -> DistributedContext:
    """Join the process group torchrun set up (each process on `cuda:<LOCAL_RANK>` with nccl, or the CPU with
    gloo), or describe a plain single process. `device` is a preference (see `pick_device`)."""
    if not launched_by_torchrun():
        return DistributedContext(0, 1, 0, pick_device(device), None)
    rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    if not 0 <= rank < world:
        raise SetupError(f"RANK={rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
    chosen = pick_device(device)
    if chosen.type not in ("cuda", "cpu"):
        raise SetupError(f"distributed training supports 'cuda' (nccl) and 'cpu' (gloo), not "
                         f"{chosen.type!r}; pass device 'cpu' or set LABKIT_DEVICE=cpu")
    if chosen.type == "cuda" and local >= (count := torch.cuda.device_count()):
        raise SetupError(f"local rank {local} has no GPU: only {count} visible; "
                         f"launch with --nproc_per_node={count} or fewer")
    chosen = torch.device(chosen.type, local if chosen.type == "cuda" else None)  # cuda:<LOCAL_RANK>, or the CPU
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if dist.is_initialized():
        return DistributedContext(rank, world, local, chosen, dist.get_backend())
    backend = backend or ("nccl" if chosen.type == "cuda" else "gloo")
    if backend == "nccl" and chosen.type != "cuda":
        raise SetupError("backend 'nccl' needs CUDA devices; use backend 'gloo' on the CPU")
    if missing := [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]:
        raise SetupError(f"{', '.join(missing)} not set; launch with `torchrun --standalone ...` (it sets them)")
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return DistributedContext(rank, world, local, chosen, backend)


@contextlib.contextmanager
def session(device: str | torch.device | None = None, backend: str | None = None,
            timeout_s: float = 600.0) -> Iterator[DistributedContext]:
    """`init_distributed()` on entry and `cleanup()` on exit, even when training raises. A collective that
    waits longer than `timeout_s` for another process is a `SetupError` saying what to do."""
    context = init_distributed(device, backend, timeout_s=timeout_s)
    try:
        yield context
        if context.is_distributed:  # leave together: a rank tearing gloo down early aborts the others
            barrier()
    except RuntimeError as err:
        if not context.is_distributed or isinstance(err, LabkitError):
            raise
        raise SetupError(
            f"rank {context.rank} of {context.world_size}: another process stopped answering (no reply within "
            f"{timeout_s:g} s: it was stopped, killed or is stuck): {str(err).splitlines()[0][:200]}. Every process "
            "of a torchrun job must keep running. Restart the job, continuing from the last checkpoint with "
            "--resume <out>/checkpoints/last.pt; if single steps are just slow, raise --ddp-timeout.") from err
    finally:
        cleanup()


@contextlib.contextmanager
def rank_zero_first() -> Iterator[None]:
    """Under DDP, rank 0 runs the block (e.g. builds a decode cache) before the other ranks do. Rank 0 reaches
    the barrier even when the block fails, so the others fail the same way instead of timing out."""
    distributed, main = is_distributed(), is_main_process()
    if distributed and not main:
        barrier()
    try:
        yield
    finally:
        if distributed and main:
            barrier()


def _started() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_distributed() -> bool:
    return _started() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if _started() else 0


def world_size() -> int:
    return dist.get_world_size() if _started() else 1


def is_main_process() -> bool:
    """True on rank 0, the process that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    if _started():
        dist.barrier()


def cleanup() -> None:
    if _started():
        dist.destroy_process_group()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` from rank `src` on every rank (e.g. a run folder name chosen on rank 0)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def convert_sync_batchnorm(model: nn.Module, device: torch.device | str) -> nn.Module:
    """`nn.SyncBatchNorm.convert_sync_batchnorm`, saying how many layers changed; refused on a CPU (PyTorch's
    SyncBatchNorm trains on GPUs only) before training rather than during it."""
    device = torch.device(device)
    if device.type in ("cpu", "mps"):
        raise LabkitError(f"--sync-bn: PyTorch's SyncBatchNorm trains on GPUs only, not on {device.type} (its "
                          "forward refuses such tensors under a process group). Leave --sync-bn off here: each "
                          "process then normalises with its own per-process batch.")
    count = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if is_main_process():
        print(f"SyncBatchNorm: {count} BatchNorm layers normalise over the global batch of all processes")
    return converted


def wrap_model(model: nn.Module, device: torch.device | str | None = None, sync_batchnorm: bool = False,
               channels_last: bool = False, **ddp_kwargs: Any) -> nn.Module:
    """Move `model` to `device` and, under a process group, wrap it in DistributedDataParallel (which
    broadcasts rank 0's parameters, so every rank starts identical). `channels_last` converts the weights
    before wrapping (on CUDA), so DDP's gradient buckets match the layout `fit` trains with."""
    device = torch.device(device) if device is not None else model_device(model)
    model = prepare_model(model, device, channels_last)
    if not is_distributed():
        return model
    if sync_batchnorm:
        model = convert_sync_batchnorm(model, device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        ddp_kwargs = {"device_ids": [index], "output_device": index, **ddp_kwargs}
    return nn.parallel.DistributedDataParallel(model, **ddp_kwargs)


def per_rank_batch_size(global_batch_size: int, world: int | None = None) -> int:
    """Split a global batch evenly over ranks; an uneven split is an error, not a rounding."""
    world = world_size() if world is None else world
    if global_batch_size < world or global_batch_size % world:
        raise SetupError(f"global batch size {global_batch_size} does not split evenly over {world} "
                               f"processes; choose a multiple of {world}")
    return global_batch_size // world


def tensor_loader(*tensors: torch.Tensor, **kwargs: Any):
    """A `TensorLoader` of this rank's shard (`rank`/`world_size` default to this process's). Give every
    rank the same `seed` so they agree on the permutation they shard."""
    return TensorLoader(*tensors, **{"rank": rank(), "world_size": world_size(), **kwargs})

