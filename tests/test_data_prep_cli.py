"""data_prep scripts share their options through labkit.data.prep_cli and can write synthetic data offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from labkit.data.prep_cli import dataset_parser

DATA_PREP = Path(__file__).resolve().parent.parent / "data_prep"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"data_prep_{name}", DATA_PREP / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dataset_parser_has_the_shared_options():
    args = dataset_parser("d", "x/", synthetic_sizes=(10, 2)).parse_args(["--synthetic", "--n-test", "5"])
    assert (args.root, args.synthetic, args.n_train, args.n_test, args.seed) == (None, True, 10, 5, 0)
    with pytest.raises(SystemExit):
        dataset_parser("d", "x/").parse_args(["--n-train", "3"])  # only with synthetic_sizes


@pytest.mark.parametrize("name, extra", [("mnist", ["--pth", "p"]), ("cifar10", []), ("wikitext2", ["--force"])])
def test_each_script_keeps_its_own_options_beside_the_shared_ones(name, extra):
    args = _script(name).build_parser().parse_args(["--root", "r", "--synthetic", *extra])
    assert args.root == Path("r") and args.synthetic and args.seed == 0


def test_cifar10_script_writes_synthetic_data_offline(tmp_path, capsys):
    assert _script("cifar10").main(["--synthetic", "--root", str(tmp_path), "--n-train", "20", "--n-test", "10"]) == 0
    assert (tmp_path / "cifar-10-batches-py" / "data_batch_1").is_file()
