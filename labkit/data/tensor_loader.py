"""The one tensor-resident loader: a whole split lives as tensors on the training device. Batches are index
gathers, shuffled by a permutation drawn from `seed` and the epoch (a resumed run sees the same order),
augmented as whole batches (`labkit.data.augment`) and sharded by rank under DDP; no workers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

Transform = Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]


@contextlib.contextmanager
def single_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """The enclosed torch ops on one CPU thread: a batch gather and its augmentation are memory-bound, and on a
    loaded 2-core machine each parallel op waits for a descheduled helper (20x slower, measured); models keep all."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class TensorLoader:
    """Iterate `(tensor_0[idx], tensor_1[idx], ...)` batches of tensors with the same first dimension (e.g. uint8
    images and int64 labels) on `device` (default: where they are); `transform` (e.g. `Compose([RandomCrop(4),
    ToFloat()])`) applies to the first. `shuffle` draws a new permutation each epoch (`set_epoch`) from `seed`;
    `rank`/`world_size` shard it for DDP (every world_size-th index, padded like DistributedSampler).
    """

    def __init__(self, *tensors: torch.Tensor, batch_size: int, shuffle: bool = False, drop_last: bool = False,
                 device: str | torch.device | None = None, transform: Transform | None = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if not tensors:
            raise ValueError("TensorLoader needs at least one tensor.")
        sizes = {int(t.shape[0]) for t in tensors}
        if len(sizes) != 1:
            raise ValueError(f"All tensors must have the same first dimension, got sizes {sorted(sizes)}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}.")
        self.device = torch.device(device) if device is not None else tensors[0].device
        self.tensors = tuple(t.to(self.device) for t in tensors)
        self.batch_size, self.shuffle, self.drop_last, self.transform = batch_size, shuffle, drop_last, transform
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    @property
    def num_items(self) -> int:
        """Items this rank sees per epoch."""
        n = int(self.tensors[0].shape[0])
        return -(-n // self.world_size) if self.world_size > 1 else n

    def __len__(self) -> int:
        n = self.num_items
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation and augmentation draws the next iteration uses."""
        self.epoch = int(epoch)

    def _indices(self) -> torch.Tensor:
        n = int(self.tensors[0].shape[0])
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            total = self.num_items * self.world_size
            if total > n:  # pad by wrapping around, as DistributedSampler does
                order = torch.cat([order, order[: total - n]])
            order = order[self.rank :: self.world_size]
        return order.to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self._indices()
        gen = None
        if self.transform is not None:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(self.seed * 7_919 + self.epoch * 104_729 + self.rank + 1)
        # the next pass reshuffles even without set_epoch (a student's own loop); the engine
        # calls set_epoch before every epoch, which makes the order depend on the epoch alone
        self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            with single_thread_on_cpu(self.device):
                batch = [t.index_select(0, idx) for t in self.tensors]  # 10x+ faster than t[idx] on CPU
                if self.transform is not None:
                    batch[0] = self.transform(batch[0], gen)
            yield tuple(batch)

    def __repr__(self) -> str:
        shapes = ", ".join(str(tuple(t.shape)) for t in self.tensors)
        return (f"TensorLoader({shapes}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"device={self.device}, transform={self.transform!r})")
