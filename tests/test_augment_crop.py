"""The row-window crop and the gather-free flip give exactly the per-image reference results."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from labkit.data.augment import Normalize, RandomCrop, RandomHorizontalFlip, ToFloat, random_crop


@pytest.mark.parametrize("dtype, fill", [(torch.uint8, 0.0), (torch.float32, -1.5)])
def test_random_crop_equals_per_image_slices_of_the_padded_batch(dtype, fill):
    x = torch.randint(0, 250, (37, 3, 9, 7)).to(dtype)
    out = random_crop(x, 3, fill, torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(4)  # the same draws: dy, then dx
    dy = torch.randint(0, 7, (37,), generator=gen)
    dx = torch.randint(0, 7, (37,), generator=gen)
    padded = F.pad(x, (3, 3, 3, 3), value=fill)
    expected = torch.stack([padded[i, :, dy[i]:dy[i] + 9, dx[i]:dx[i] + 7] for i in range(37)])
    assert out.dtype == dtype and torch.equal(out, expected)
    assert len(set(zip(dy.tolist(), dx.tolist()))) > 20  # offsets really vary


def test_crop_with_flip_mirrors_exactly_the_drawn_images_in_the_same_pass():
    x = torch.randint(0, 250, (41, 3, 6, 8), dtype=torch.uint8)
    out = random_crop(x, 2, 0.0, torch.Generator().manual_seed(5), flip=0.5)
    gen = torch.Generator().manual_seed(5)  # the same draws: dy, dx, then flips
    dy = torch.randint(0, 5, (41,), generator=gen)
    dx = torch.randint(0, 5, (41,), generator=gen)
    flipped = torch.rand(41, generator=gen) < 0.5
    plain, mirrored = F.pad(x, (2, 2, 2, 2)), F.pad(x.flip(3), (2, 2, 2, 2))
    expected = torch.stack([(mirrored if flipped[i] else plain)[i, :, dy[i]:dy[i] + 6, dx[i]:dx[i] + 8]
                            for i in range(41)])
    assert torch.equal(out, expected) and 5 < int(flipped.sum()) < 36
    assert torch.equal(RandomCrop(0, flip=1.0)(x), x.flip(3))
    with pytest.raises(ValueError, match="probability"):
        RandomCrop(2, flip=1.5)


def test_random_crop_accepts_channels_last_and_leaves_the_input_alone():
    x = torch.randint(0, 255, (8, 3, 6, 6), dtype=torch.uint8)
    before = x.clone()
    a = RandomCrop(2)(x.contiguous(memory_format=torch.channels_last), torch.Generator().manual_seed(1))
    b = RandomCrop(2)(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(x, before)
    assert RandomCrop(0)(x) is x


def test_flip_mirrors_exactly_the_drawn_images():
    x = torch.randint(0, 255, (64, 3, 5, 5), dtype=torch.uint8)
    out = RandomHorizontalFlip(0.5)(x, torch.Generator().manual_seed(2))
    flipped = torch.rand(64, generator=torch.Generator().manual_seed(2)) < 0.5
    expected = torch.stack([x[i].flip(2) if flipped[i] else x[i] for i in range(64)])
    assert torch.equal(out, expected)
    assert torch.equal(RandomHorizontalFlip(1.0)(x), x.flip(3))
    assert torch.equal(RandomHorizontalFlip(0.0)(x), x)


def test_normalize_does_not_modify_its_input():
    x = torch.rand(4, 3, 2, 2)
    before = x.clone()
    out = Normalize((0.5, 0.4, 0.3), (0.2, 0.2, 0.2))(x)
    assert torch.equal(x, before)
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    assert torch.allclose(out, (x - mean) / 0.2)


def test_normalize_reads_uint8_as_bytes_in_one_step():
    x = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    before = x.clone()
    norm = Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    out = norm(x)
    assert out.dtype == torch.float32 and torch.equal(x, before)
    assert torch.allclose(out, norm(ToFloat()(x)), atol=1e-5)
    assert torch.allclose(out[:, 1], (x[:, 1].float() / 255 - 0.4) / 0.25, atol=1e-5)


def test_cpu_batches_are_made_on_one_thread_and_the_count_is_restored():
    from labkit.data.tensor_loader import TensorLoader

    seen = []

    def transform(x, generator):
        seen.append(torch.get_num_threads())
        return x

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        loader = TensorLoader(torch.zeros(10, 1, 2, 2), batch_size=4, transform=transform)
        for _ in loader:
            assert torch.get_num_threads() == 2  # the training step between batches keeps all threads
        assert seen == [1, 1, 1]
    finally:
        torch.set_num_threads(before)
