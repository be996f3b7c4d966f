"""Augmentations of whole (N, C, H, W) batches on the training device: each transform is a callable
`(x, generator) -> x`, a few tensor ops instead of one PIL call per image. Crops and flips work on uint8 too
(cheaper to move); `ToFloat` and `Normalize` end the chain."""

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
    """Per-channel (x - mean) / std; a uint8 batch is read as bytes in [0, 255] (`ToFloat` + `Normalize` in
    two passes over the batch instead of four)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}.")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._cache: dict[tuple[torch.device, torch.dtype, bool], tuple[torch.Tensor, torch.Tensor]] = {}

    def _affine(self, device: torch.device, dtype: torch.dtype, from_bytes: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(scale, shift) with x * scale + shift == (x / 255 - mean) / std for bytes, (x - mean) / std else."""
        key = (device, dtype, from_bytes)
        if key not in self._cache:
            mean = torch.tensor(self.mean, dtype=torch.float64).view(1, -1, 1, 1)
            std = torch.tensor(self.std, dtype=torch.float64).view(1, -1, 1, 1)
            scale = 1 / (std * 255) if from_bytes else 1 / std
            self._cache[key] = (scale.to(device, dtype), (-mean / std).to(device, dtype))
        return self._cache[key]

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.shape[1] != len(self.mean):
            raise ValueError(f"Normalize expects {len(self.mean)} channels, got a batch of shape {tuple(x.shape)}.")
        from_bytes = x.dtype == torch.uint8
        out = x.float() if from_bytes else x.mul(1.0)  # a new tensor: the input is never modified
        scale, shift = self._affine(out.device, out.dtype, from_bytes)
        return out.mul_(scale).add_(shift)


def _randint(high: int, n: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randint(0, high, (n,), generator=generator, device=device).to(x.device)


def _draw_flips(p: float, n: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=generator.device if generator else x.device) < p).to(x.device)


def random_crop(x: torch.Tensor, padding: int, fill: float = 0.0,
                generator: torch.Generator | None = None, flip: float = 0.0) -> torch.Tensor:
    """A random crop of each image padded by `padding` pixels of `fill`, mirrored with probability `flip`. The
    batch is padded once (with `flip`, a mirrored copy beside it); each output row is one contiguous run of `w`
    values there, so one `index_select` over row windows crops and flips in one pass, one index per row.
    Random draws: row offsets, column offsets, then flips."""
    (n, c, h, w), p = x.shape, padding
    hp, wp = h + 2 * p, w + 2 * p
    copies = 2 if flip > 0 else 1
    padded = x.new_full((copies * n, c, hp, wp), fill)
    padded[:n, :, p:p + h, p:p + w] = x
    dy = _randint(2 * p + 1, n, x, generator)
    dx = _randint(2 * p + 1, n, x, generator)
    source = torch.arange(n, device=x.device)
    if copies == 2:
        padded[n:, :, p:p + h, p:p + w] = x.flip(3)
        source = source + _draw_flips(flip, n, x, generator).long() * n
    rows = ((source * (c * hp * wp) + dy * wp + dx).view(n, 1, 1)
            + (torch.arange(c, device=x.device) * (hp * wp)).view(1, c, 1)
            + (torch.arange(h, device=x.device) * wp).view(1, 1, h))
    windows = padded.view(-1).unfold(0, w, 1)  # windows[k] = padded.flat[k : k + w], a view
    return windows.index_select(0, rows.view(-1)).view(n, c, h, w)


class RandomCrop(BatchTransform):
    """Pad each image by `padding` (with `fill`) and crop back to its size at a random offset per
    image; with `flip` > 0 also mirror each image with that probability, in the same pass (about
    half the cost of a separate `RandomHorizontalFlip`)."""

    def __init__(self, padding: int, fill: float = 0.0, flip: float = 0.0) -> None:
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}.")
        if not 0.0 <= flip <= 1.0:
            raise ValueError(f"flip is a probability, got {flip}.")
        self.padding, self.fill, self.flip = padding, fill, flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.padding == 0:
            return RandomHorizontalFlip(self.flip)(x, generator) if self.flip > 0 else x
        return random_crop(x, self.padding, self.fill, generator, self.flip)


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
