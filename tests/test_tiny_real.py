"""The real Tiny-ImageNet subset in ../shared/datasets (skipped when absent): layout and label mapping."""

from __future__ import annotations

import pytest

from labkit.labs.tiny_imagenet.data import TinyImageNet

pytestmark = pytest.mark.shared


def test_real_subset_layout_and_shared_class_order(shared_datasets):
    root = shared_datasets / "tiny-imagenet-200"
    train, val = TinyImageNet(root, "train"), TinyImageNet(root, "val")
    assert len(train.classes) == 200 and train.classes == val.classes == sorted(train.classes)
    assert len(train) == 10_000 and len(val) == 10_000
    assert sorted(val.targets) == sorted(train.targets)  # 50 per class in both splits
    first_val = dict(line.split("\t")[:2] for line in
                     (root / "val" / "val_annotations.txt").read_text().splitlines()[:3])
    assert first_val["val_0.JPEG"] == "n03444034"
    assert val.classes[val.targets[0]] == "n03444034"
    assert train.class_names[train.class_to_idx["n01443537"]] == "goldfish"
