"""Augmentations applied to whole batches on the training device.

Each transform is a callable `(x, generator) -> x` on an (N, C, H, W) batch, so a
batch of 512 images is cropped, flipped and normalised in a few tensor ops
instead of 512 PIL calls. Crops and flips work on uint8 too (cheaper to move);
`ToFloat` and `Normalize` end the chain.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


class BatchTransform:
    """Base: `__call__(x, generator=None)` returns the transformed batch."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class Compose(BatchTransform):
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[BatchTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for transform in self.transforms:
            x = transform(x, generator)
        return x


class ToFloat(BatchTransform):
    """uint8 [0, 255] -> float32 [0, 1]; float input is passed through."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dtype == torch.uint8:
            return x.float().div_(255.0)
        return x.float()


class Normalize(BatchTransform):
    """Per-channel (x - mean) / std."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}.")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.shape[1] != len(self.mean):
            raise ValueError(f"Normalize expects {len(self.mean)} channels, got a batch of shape {tuple(x.shape)}.")
        key = (x.device, x.dtype)
        if key not in self._cache:
            shape = (1, -1, 1, 1)
            self._cache[key] = (
                torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(shape),
                torch.tensor(self.std, device=x.device, dtype=x.dtype).view(shape),
            )
        mean, std = self._cache[key]
        return (x - mean) / std


def _randint(high: int, n: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randint(0, high, (n,), generator=generator, device=device).to(x.device)


class RandomCrop(BatchTransform):
    """Pad each image by `padding` (zeros) and crop back to its size at a random offset per image.

    Implemented as two gathers over the padded batch, so the cost is one pass over the data.
    """

    def __init__(self, padding: int, fill: float = 0.0) -> None:
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}.")
        self.padding = padding
        self.fill = fill

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        p = self.padding
        if p == 0:
            return x
        n, c, h, w = x.shape
        padded = F.pad(x, (p, p, p, p), value=self.fill)
        dy = _randint(2 * p + 1, n, x, generator)
        dx = _randint(2 * p + 1, n, x, generator)
        rows = (dy[:, None] + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * p)
        out = padded.gather(2, rows)
        cols = (dx[:, None] + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
        return out.gather(3, cols)


class RandomShift(RandomCrop):
    """Shift each image by up to `max_shift` pixels in each direction (a crop of the padded image)."""

    def __init__(self, max_shift: int = 2) -> None:
        super().__init__(padding=max_shift)


class RandomHorizontalFlip(BatchTransform):
    """Mirror each image left-right with probability `p`."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        device = generator.device if generator is not None else x.device
        flip = (torch.rand(x.shape[0], generator=generator, device=device) < self.p).to(x.device)
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
