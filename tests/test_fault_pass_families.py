"""The fault pass's own machinery (tools/fault_pass.py): the generators cover their axes, the oracles
see a changed byte, wrong advice and an error on stdout, and the probes break what they claim to break."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fp():
    spec = importlib.util.spec_from_file_location("fault_pass", ROOT / "tools" / "fault_pass.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["fault_pass"] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_quick_cover_holds_every_value_of_every_axis_and_the_musts(fp):
    axes = [["a", "b", "c"], [1, 2], ["x", "y", "z", "w"]]
    full = fp.cover(axes, quick=False)
    assert full == list(itertools.product(*axes))
    quick = fp.cover(axes, quick=True, must=[("c", 2, "w"), ("a", 1, "x")])
    assert len(quick) < len(full)
    for i, axis in enumerate(axes):
        assert {row[i] for row in quick} == set(axis)
    assert ("c", 2, "w") in quick
    assert quick.count(("a", 1, "x")) == 1  # a must already covered is not repeated


def test_snapshot_sees_a_changed_byte_a_removed_file_a_new_file_and_a_moved_link(fp, tmp_path):
    (tmp_path / "a").write_bytes(b"\x00" * 100)
    (tmp_path / "b").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "b")
    before = fp.snapshot([tmp_path])
    assert fp.changed_files(before, fp.snapshot([tmp_path])) == []
    raw = bytearray((tmp_path / "a").read_bytes())
    raw[50] ^= 1
    (tmp_path / "a").write_bytes(bytes(raw))
    (tmp_path / "b").unlink()
    (tmp_path / "c").write_text("new")
    (tmp_path / "link").unlink()
    (tmp_path / "link").symlink_to(tmp_path / "c")
    changed = fp.changed_files(before, fp.snapshot([tmp_path]))
    assert f"{tmp_path / 'a'} (changed)" in changed
    assert f"{tmp_path / 'b'} (removed)" in changed
    assert f"{tmp_path / 'c'} (written)" in changed
    assert f"{tmp_path / 'link'} (changed)" in changed


def test_classify_tells_a_clear_error_from_wrong_advice_and_an_error_on_stdout(fp, tmp_path):
    case = fp.Case("x", "y", advice=("--width",), misadvice=("Build the same architecture",))
    right = fp.Result(2, "", "labkit: error: --width cannot change on --resume: drop the option.\n", 1.0)
    assert fp.classify(case, right, tmp_path)[0] == "clear error"
    unnamed = fp.Result(2, "", "labkit: error: the checkpoint does not match the model.\n", 1.0)
    assert fp.classify(case, unnamed, tmp_path)[0] == "wrong advice"
    wrong = fp.Result(2, "", "labkit: error: --width: Build the same architecture.\n", 1.0)
    outcome, why = fp.classify(case, wrong, tmp_path)
    assert outcome == "wrong advice" and "Build the same architecture" in why
    stdout = fp.Result(1, "labkit release: error: --out is a file\n", "", 1.0)
    assert fp.classify(fp.Case("x", "y"), stdout, tmp_path)[0] == "wrong advice"
    crash = fp.Result(1, "", "Traceback (most recent call last):\n  ...\nKeyError: 'momentum'\n", 1.0)
    assert fp.classify(fp.Case("x", "y"), crash, tmp_path) == ("traceback", "KeyError: 'momentum'")


def test_other_value_differs_from_every_labs_default_for_every_option_it_tries(fp):
    from labkit.lab import config_fields, get_lab, lab_names

    tried = 0
    for name in lab_names():
        lab = get_lab(name)
        cfg = lab.config("smoke")
        for f, annotation in config_fields(lab.Config):
            if not f.metadata.get("cli", True) or f.name in lab.unused_options or f.name in fp.NOT_TRAINING:
                continue
            current = getattr(cfg, f.name)
            value = fp.other_value(f, annotation, current)
            if value is None:
                continue
            tried += 1
            shown = {"yes": True, "no": False}.get(value, value)
            assert str(shown) != str(current), (name, f.name, value)
            if f.metadata.get("choices"):
                assert value in f.metadata["choices"]
            if f.name in fp.FRACTIONS:
                assert 0 <= float(value) < 1, (name, f.name, value)
    assert tried > 50  # the family grows with the labs' options


def test_optimizer_kind_from_the_saved_param_groups(fp):
    params = [torch.nn.Parameter(torch.zeros(2))]
    for name, opt in {"sgd": torch.optim.SGD(params, lr=0.1, momentum=0.9),
                      "nadam": torch.optim.NAdam(params), "adamw": torch.optim.AdamW(params),
                      "adam": torch.optim.Adam(params)}.items():
        assert fp.optimizer_kind(opt.state_dict()["param_groups"]) == name


def test_flipped_tensor_byte_changes_a_weight_and_the_file_still_loads(fp, tmp_path):
    path = tmp_path / "c.pt"
    weights = {"w": torch.linspace(-1, 1, 4096), "b": torch.zeros(3)}
    torch.save({"model": weights}, path)
    fp._flip_tensor_byte(path)
    loaded = torch.load(path, weights_only=True)  # the zip format does not notice: the pass's point
    assert not torch.equal(loaded["model"]["w"], weights["w"])
    assert torch.equal(loaded["model"]["b"], weights["b"])


def test_an_empty_idx_file_says_zero_items_in_both_copies(fp, tmp_path):
    import gzip

    from labkit.labs.mnist.data import write_synthetic_mnist

    raw = next(write_synthetic_mnist(tmp_path, n_train=20, n_test=10).rglob("raw"))
    fp._idx_empty(raw / "t10k-images-idx3-ubyte")
    plain = (raw / "t10k-images-idx3-ubyte").read_bytes()
    assert int.from_bytes(plain[4:8], "big") == 0 and len(plain) == 16
    assert gzip.decompress((raw / "t10k-images-idx3-ubyte.gz").read_bytes()) == plain


def test_every_family_is_selectable_and_the_api_cases_name_the_issues_calls(fp):
    assert set(fp.FAMILIES) >= {"resume-options", "resume-place", "output-targets", "env-folders", "timing",
                                "data-content", "checkpoint-bytes", "python-api", "cache"}
    assert len(fp.api_family(fp.Ctx(fx={}, quick=True, users=("root",)))) == len(fp.API_CASES)
