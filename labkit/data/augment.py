"""Augmentations applied to whole batches on the training device.

Each transform is a callable `(x, generator) -> x` on an (N, C, H, W) batch, so a
batch of 512 images is cropped, flipped and normalised in a few tensor ops
instead of 512 PIL calls. Crops and flips work on uint8 too (cheaper to move);
`ToFloat` and `Normalize` end the chain.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


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
        return torch.sub(x, mean).div_(std)  # one new tensor, not two


def _randint(high: int, n: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randint(0, high, (n,), generator=generator, device=device).to(x.device)


def _draw_flips(p: float, n: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return (torch.rand(n, generator=generator, device=device) < p).to(x.device)


def random_crop(x: torch.Tensor, padding: int, fill: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """A random crop of each image of the batch padded by `padding` pixels of `fill`.

    The batch is padded once; each output row is then one contiguous run of `w` values in the
    padded buffer, so a single `index_select` over row windows builds the whole result: one pass
    over the data, with one index per row instead of one per element (gather) and no per-image
    Python. The same code runs on CUDA.
    """
    n, c, h, w = x.shape
    p = padding
    hp, wp = h + 2 * p, w + 2 * p
    padded = x.new_full((n, c, hp, wp), fill)
    padded[:, :, p:p + h, p:p + w] = x
    dy = _randint(2 * p + 1, n, x, generator)
    dx = _randint(2 * p + 1, n, x, generator)
    rows = ((torch.arange(n, device=x.device) * (c * hp * wp) + dy * wp + dx).view(n, 1, 1)
            + (torch.arange(c, device=x.device) * (hp * wp)).view(1, c, 1)
            + (torch.arange(h, device=x.device) * wp).view(1, 1, h))
    windows = padded.view(-1).unfold(0, w, 1)  # windows[k] = padded.flat[k : k + w], a view
    return windows.index_select(0, rows.view(-1)).view(n, c, h, w)


class RandomCrop(BatchTransform):
    """Pad each image by `padding` (with `fill`) and crop back to its size at a random offset per image."""

    def __init__(self, padding: int, fill: float = 0.0) -> None:
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}.")
        self.padding = padding
        self.fill = fill

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.padding == 0:
            return x
        return random_crop(x, self.padding, self.fill, generator)


class RandomShift(RandomCrop):
    """Shift each image by up to `max_shift` pixels in each direction (a crop of the padded image)."""

    def __init__(self, max_shift: int = 2) -> None:
        super().__init__(padding=max_shift)


class RandomHorizontalFlip(BatchTransform):
    """Mirror each image left-right with probability `p`."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n = x.shape[0]
        flip = _draw_flips(self.p, n, x, generator)
        # pick each image from [batch; mirrored batch]: a row gather, much cheaper than torch.where
        pick = torch.arange(n, device=x.device) + flip.long() * n
        return torch.cat([x, x.flip(3)]).index_select(0, pick)
