"""The val-labelling exercise check: accepts the solution, explains the usual mistakes."""

from __future__ import annotations

import pytest

from labkit.check import CheckFailed
from labkit.labs.tiny_imagenet.check import check_val_labels
from labkit.labs.tiny_imagenet.data import TinyImageNet, write_synthetic_tiny_imagenet


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_synthetic_tiny_imagenet(tmp_path_factory.mktemp("chk"), n_classes=4, n_train_per_class=1,
                                         n_val_per_class=3, seed=5)


def _annotations(root):
    return [line.split("\t")[:2] for line in (root / "val" / "val_annotations.txt").read_text().splitlines()]


def test_solution_passes(root, capsys):
    class_to_idx = TinyImageNet(root, "train").class_to_idx
    check_val_labels({name: class_to_idx[wnid] for name, wnid in _annotations(root)}, root)
    check_val_labels([(name, class_to_idx[wnid]) for name, wnid in _annotations(root)], root)
    assert "training set's class indices" in capsys.readouterr().out


def test_order_of_appearance_is_explained(root):
    order: dict[str, int] = {}
    labels = {name: order.setdefault(wnid, len(order)) for name, wnid in _annotations(root)}
    assert labels != {n: TinyImageNet(root, "train").class_to_idx[w] for n, w in _annotations(root)}
    with pytest.raises(CheckFailed, match="numbered the classes in another order"):
        check_val_labels(labels, root)


def test_wnids_instead_of_indices_missing_and_wrong(root):
    with pytest.raises(CheckFailed, match="those are wnids"):
        check_val_labels({name: wnid for name, wnid in _annotations(root)}, root)
    class_to_idx = TinyImageNet(root, "train").class_to_idx
    good = {name: class_to_idx[wnid] for name, wnid in _annotations(root)}
    with pytest.raises(CheckFailed, match="1 val images have no label"):
        check_val_labels(dict(list(good.items())[1:]), root)
    wrong = dict(good)
    first = next(iter(wrong))
    wrong[first] = (wrong[first] + 1) % 4
    with pytest.raises(CheckFailed, match="1 of 12 val labels use a different class index"):
        check_val_labels(wrong, root)


def test_forgotten_return_is_explained(root):
    with pytest.raises(CheckFailed, match="forget to `return`"):
        check_val_labels(None, root)
