"""Lab 04's refusals and degraded reports: resume on other classes, images of the wrong size, a diverged or
cut-short run, and where smoke data are written."""

from __future__ import annotations

import pytest
from PIL import Image

from labkit import runner
from labkit.errors import DataError
from labkit.labs import tiny_imagenet as lab
from labkit.labs.tiny_imagenet.data import tiny_imagenet_loaders, write_synthetic_tiny_imagenet


def _root(tmp_path, name, seed):
    return write_synthetic_tiny_imagenet(tmp_path / name, n_classes=3, n_train_per_class=4, n_val_per_class=2,
                                         seed=seed)


def test_resume_on_data_of_other_classes_is_refused_like_evaluate(tmp_path, capsys):
    from labkit.cli import main

    root_a, root_b = _root(tmp_path, "a", 0), _root(tmp_path, "b", 1)
    cfg = lab.LAB.config("smoke", data=str(root_a), epochs=2, width=4, batch_size=6, at_epochs=(1,),
                         out=str(tmp_path / "run"), tensorboard=False)
    run = runner.run(lab.LAB, cfg, progress=False)
    ckpt = run.checkpoint_dir / "epoch_001.pt"
    for extra in (["--evaluate"], []):
        capsys.readouterr()
        assert main(["run", "tiny-imagenet", "--resume", str(ckpt), "--data", str(root_b), *extra]) == 1
        err = capsys.readouterr().err
        assert "trained on other classes" in err and "3 of its 3 classes are not in the data" in err
        assert "--data" in err and str(root_b) in err
    assert main(["run", "tiny-imagenet", "--resume", str(ckpt), "--data", str(root_a),
                 "--out", str(tmp_path / "resumed")]) == 0  # the run's own data: resumes


def test_an_image_that_is_not_64x64_is_refused_naming_it(tmp_path):
    root = _root(tmp_path, "a", 0)
    wnid = sorted(p.name for p in (root / "train").iterdir())[1]
    big = root / "train" / wnid / "images" / f"{wnid}_2.JPEG"
    Image.new("RGB", (500, 375), (120, 30, 200)).save(big)
    with pytest.raises(DataError, match=r"1 of 12 images .* are not 64×64.*_2\.JPEG is 500×375"):
        tiny_imagenet_loaders(root, batch_size=4, verbose=False)


@pytest.mark.parametrize("setting, said", [({"lr": 1e3}, "diverged"), ({"time_budget": 0.001}, "no epoch")])
def test_report_copes_with_a_diverged_or_cut_short_run(tmp_path, capsys, setting, said):
    cfg = lab.LAB.config("smoke", out=str(tmp_path / "run"), tensorboard=False, **setting)
    run = runner.run(lab.LAB, cfg, progress=False, write_files=False)
    assert said != "diverged" or run.history.diverged
    capsys.readouterr()
    lab.LAB.report(run)
    assert said in capsys.readouterr().out


def test_smoke_data_are_written_under_the_cache_not_into_labkit_data(tmp_path, monkeypatch):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    monkeypatch.setenv("LABKIT_DATA", str(data))
    monkeypatch.setenv("LABKIT_CACHE", str(cache))
    root = lab.smoke_data_root()
    assert root.is_relative_to(cache) and (root / "wnids.txt").is_file()
    assert list(data.iterdir()) == []
