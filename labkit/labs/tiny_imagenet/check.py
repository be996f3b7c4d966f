"""Check for Lab 04's exercise: labelling the val images from `val/val_annotations.txt`.

The student returns `{file name: class index}` (or a list of `(file name, class index)`
pairs). The class index must be the training set's: the position of the wnid among the
**sorted** wnids. The usual mistakes get a specific hint: numbering classes in the order
they appear in the annotations or in wnids.txt (a silent shuffle that keeps val accuracy
at chance), returning wnids instead of indices, or missing images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from labkit.check import CheckFailed, fail, passed, require


def _as_mapping(answer: Mapping[str, int] | Sequence[tuple[str, int]]) -> dict[str, object]:
    if isinstance(answer, Mapping):
        return {Path(str(k)).name: v for k, v in answer.items()}
    try:
        return {Path(str(name)).name: label for name, label in answer}
    except (TypeError, ValueError):
        raise CheckFailed("Return a dict {file name: class index} such as {'val_0.JPEG': 107, ...} "
                          "(or a list of (file name, class index) pairs).") from None


def check_val_labels(answer: Mapping[str, int] | Sequence[tuple[str, int]], root: str | Path) -> None:
    """The student's val labels equal the reference: sorted-wnid indices for every annotated image."""
    from labkit.labs.tiny_imagenet.data import TinyImageNet

    reference = TinyImageNet(root, "val")
    truth = {Path(path).name: target for path, target in reference.samples}
    if answer is None:
        raise CheckFailed("Your function returned None: did it forget to `return` the labels?")
    given = _as_mapping(answer)
    if not given:
        raise CheckFailed("Your answer is empty: read every line of val/val_annotations.txt "
                          "(fields are separated by tabs: file name, wnid, box).")
    sample = next(iter(given.values()))
    if isinstance(sample, str):
        raise CheckFailed(f"The labels are strings such as {sample!r}: those are wnids. Turn each into the "
                          "training set's class index with train_set.class_to_idx[wnid].")
    missing = sorted(set(truth) - set(given))
    extra = sorted(set(given) - set(truth))
    if missing or extra:
        detail = f"{len(missing)} val images have no label (e.g. {missing[:2]})" if missing else \
            f"{len(extra)} names are not val images (e.g. {extra[:2]})"
        raise CheckFailed(f"{detail}. Use the file name (first field) of each line of "
                          "val_annotations.txt as the key, one entry per line.")
    files = sorted(truth)
    labels = [int(given[f]) for f in files]
    wnids = [reference.classes[truth[f]] for f in files]
    # same partition into classes but other numbers: a mapping built in the wrong order
    pairs = set(zip(wnids, labels))
    if labels != [truth[f] for f in files] and len(pairs) == len(set(wnids)) == len(set(labels)):
        raise CheckFailed(
            "Every class got one consistent index, but not the training set's: you numbered the classes in "
            "another order (the order of appearance in val_annotations.txt, or of wnids.txt, which is not "
            "sorted). Training labels come from the sorted wnids (train_set.class_to_idx); with any other "
            "order each image is scored against a different class and val accuracy stays at chance.")
    check_class_indices(labels, wnids, reference.class_to_idx, what="val labels")
    passed(f"all {len(files):,} val images are labelled with the training set's class indices")


def check_class_indices(labels: Sequence[int], names: Sequence[str],
                        reference: dict[str, int], what: str = "labels", hint: str | None = None) -> None:
    """Class indices agree with a reference mapping (e.g. train's sorted wnids)."""
    require(labels, what, hint)
    labels = [int(v) for v in labels]
    if len(labels) != len(names):
        raise fail(f"{what}: {len(labels)} labels for {len(names)} items; give exactly one label per item.", hint)
    unknown = sorted({n for n in names if n not in reference})
    if unknown:
        raise fail(f"{what}: {len(unknown)} class name(s) are not in the training classes "
                   f"(e.g. {unknown[0]!r}); read the class of each item from the right column/folder.", hint)
    wrong = [(n, got, reference[n]) for n, got in zip(names, labels) if reference[n] != got]
    if wrong:
        name, got, want = wrong[0]
        raise fail(
            f"{len(wrong)} of {len(labels)} {what} use a different class index than the training set "
            f"(e.g. {name!r}: {got}, training uses {want}). Build the mapping once, from the sorted "
            "class ids, and use it for both splits; otherwise accuracy stays at chance.", hint,
        )
    passed(f"{what} use the training set's class indices")
