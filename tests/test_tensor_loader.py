"""The tensor-resident loader and batched augmentations."""

from __future__ import annotations

import pytest
import torch

from labkit.data.augment import (
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    ToFloat,
)
from labkit.data.tensor_loader import TensorLoader
from labkit.labs.mnist import RandomShift


def test_batches_cover_the_data_once_per_epoch():
    x = torch.arange(10)
    loader = TensorLoader(x, x * 2, batch_size=4, shuffle=True, seed=1)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    seen = torch.cat([b[0] for b in batches])
    assert sorted(seen.tolist()) == list(range(10))
    assert all(torch.equal(b[1], b[0] * 2) for b in batches)


def test_shuffle_depends_on_seed_and_epoch_only():
    x = torch.arange(50)
    a = TensorLoader(x, batch_size=50, shuffle=True, seed=3)
    b = TensorLoader(x, batch_size=50, shuffle=True, seed=3)
    a.set_epoch(5)
    b.set_epoch(5)
    epoch5 = next(iter(a))[0]
    assert torch.equal(epoch5, next(iter(b))[0])
    b.set_epoch(6)
    assert not torch.equal(epoch5, next(iter(b))[0])


def test_without_set_epoch_each_pass_reshuffles():
    loader = TensorLoader(torch.arange(50), batch_size=50, shuffle=True)
    assert not torch.equal(next(iter(loader))[0], next(iter(loader))[0])


def test_drop_last_and_sharding():
    x = torch.arange(10)
    assert len(TensorLoader(x, batch_size=4, drop_last=True)) == 2
    shards = [torch.cat([b[0] for b in TensorLoader(x, batch_size=2, rank=r, world_size=3)]) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # padded like DistributedSampler
    assert set(torch.cat(shards).tolist()) == set(range(10))


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="same first dimension"):
        TensorLoader(torch.zeros(3), torch.zeros(4), batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(torch.zeros(3), batch_size=0)


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5)
    gen = torch.Generator().manual_seed(0)
    out = RandomCrop(2)(x, gen)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, dy:dy + 5, dx:dx + 5] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_random_crop_offsets_vary_and_zero_padding_appears():
    x = torch.ones(256, 1, 8, 8)
    out = RandomShift(2)(x, torch.Generator().manual_seed(0))
    zeros_per_image = (out == 0).flatten(1).sum(1)
    assert (zeros_per_image == 0).any() and (zeros_per_image > 0).any()
    assert len(set(zeros_per_image.tolist())) > 3


def test_flip_mirrors_about_half_the_batch():
    x = torch.arange(4, dtype=torch.float32).view(1, 1, 1, 4).repeat(1000, 1, 1, 1)
    out = RandomHorizontalFlip()(x, torch.Generator().manual_seed(0))
    flipped = (out == x.flip(3)).all(dim=(1, 2, 3))
    kept = (out == x).all(dim=(1, 2, 3))
    assert bool((flipped | kept).all())
    assert 400 < int(flipped.sum()) < 600


def test_to_float_and_normalize():
    x = torch.full((2, 3, 2, 2), 255, dtype=torch.uint8)
    out = Compose([ToFloat(), Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))])(x)
    assert out.dtype == torch.float32 and torch.allclose(out, torch.full_like(out, 2.0))
    with pytest.raises(ValueError, match="channels"):
        Normalize((0.5,), (0.5,))(out)


def test_augmentation_is_reproducible_per_epoch():
    x = torch.randint(0, 255, (64, 3, 8, 8), dtype=torch.uint8)
    make = lambda: TensorLoader(x, batch_size=64, shuffle=True,
                                transform=Compose([RandomCrop(2), RandomHorizontalFlip()]))
    a, b = make(), make()
    a.set_epoch(2)
    b.set_epoch(2)
    assert torch.equal(next(iter(a))[0], next(iter(b))[0])
