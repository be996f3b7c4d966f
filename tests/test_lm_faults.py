"""Lab 05's refusals and degraded reports: a blank or too short split, validating on the test file, a diverged
or cut-short run, and where the smoke corpus is written."""

from __future__ import annotations

import pytest

from labkit import runner
from labkit.errors import DataError, UsageError
from labkit.labs import lm as lab
from labkit.labs.lm.data import write_synthetic_wikitext


def test_a_blank_or_too_short_validation_file_names_the_file_and_the_option(tmp_path):
    root = write_synthetic_wikitext(tmp_path / "wt", tokens=(2000, 400, 400))
    cfg = lab.LAB.config("smoke", data=str(root))
    (root / "valid.txt").write_text("\n \n\n")
    with pytest.raises(DataError, match=r"valid\.txt has no tokens"):
        runner.load_data(lab.LAB, cfg)
    (root / "valid.txt").write_text(" a b c\n")  # 4 tokens with <eos>: too few for 8 rows
    with pytest.raises(DataError, match=r"valid\.txt \(4 tokens\) is too short for --eval-batch-size 8.*--bptt"):
        runner.load_data(lab.LAB, cfg)


def test_validating_on_the_test_file_is_refused():
    with pytest.raises(UsageError, match="--val-split test is also --test-split"):
        lab.LAB.config("full", val_split="test")
    assert lab.LAB.config("full", val_split="test", test_split="none").test_split is None


@pytest.mark.parametrize("setting, said", [({"lr": 1e3}, "the run diverged"), ({"time_budget": 0.001}, "no epoch")])
def test_report_copes_with_a_diverged_or_cut_short_run(tmp_path, capsys, setting, said):
    cfg = lab.LAB.config("smoke", out=str(tmp_path / "run"), tensorboard=False, **setting)
    run = runner.run(lab.LAB, cfg, progress=False, write_files=False)
    capsys.readouterr()
    lab.LAB.report(run)
    assert said in capsys.readouterr().out
    assert not (tmp_path / "run" / "sample.txt").exists()


def test_the_smoke_corpus_is_written_under_the_cache_not_into_labkit_data(tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    monkeypatch.setenv("LABKIT_DATA", str(data))
    monkeypatch.setenv("LABKIT_CACHE", str(cache))
    root = lab.synthetic_root()
    assert root.is_relative_to(cache) and (root / "valid.txt").is_file()
    assert list(data.iterdir()) == []
