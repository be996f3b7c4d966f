"""bench/gpu_check.py without a GPU: never a pass without CUDA; its tables and RESULT line; each piece
(smoke loop, resume check, throughput sides, torchrun launch) at tiny size on the CPU."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labkit import lab as labmod
from tests.test_lab_core import blobs  # noqa: F401 - the toy lab of docs/ARCHITECTURE.md, as a fixture

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "gpu_check.py"
RESULT = re.compile(r"RESULT (\w+=(\"[^\"]*\"|\S+) ?)+")


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def result_fields(line: str) -> dict[str, str]:
    assert RESULT.fullmatch(line), line
    return {k: v.strip('"') for k, v in re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", line[len("RESULT "):])}


# --- no CUDA: never a pass ---------------------------------------------------------------------------

def test_main_without_cuda_exits_non_zero_with_one_line(gc, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gc.main(["--quick"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("gpu_check: CUDA not available: ") and err.count("\n") == 1, err
    assert "RESULT" not in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the command would run the whole check")
def test_the_command_refuses_to_run_without_cuda():
    proc = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=False)
    assert proc.returncode == 2, proc
    assert proc.stderr.startswith("gpu_check: CUDA not available: ") and proc.stderr.count("\n") == 1
    assert proc.stdout == ""


def test_bad_options_are_usage_errors(gc):
    with pytest.raises(SystemExit) as info:
        gc.parse_args(["--only", "smoke,speed"])
    assert info.value.code == 2
    assert gc.parse_args(["--only", "ddp, smoke"]).sections == ["ddp", "smoke"]


# --- formatting ---------------------------------------------------------------------------------------

def test_result_line_formatting(gc):
    line = gc.format_result({"smoke_ok": "5/5", "resume_ok": True, "resume_max_rel": 2.1e-7, "ddp2_ok": None,
                             "resnet20_amp_img_s": 23456.7, "amp_speedup": 1.8349, "failed": 0, "nan": math.nan,
                             "device": "NVIDIA H200"})
    assert line == ('RESULT smoke_ok=5/5 resume_ok=1 resume_max_rel=2.1e-07 ddp2_ok=na resnet20_amp_img_s=23457 '
                    'amp_speedup=1.83 failed=0 nan=na device="NVIDIA H200"')
    assert result_fields(line)["device"] == "NVIDIA H200"
    assert gc.format_value(False) == "0" and gc.format_value(0.0) == "0" and gc.format_value("cpu") == "cpu"
    with pytest.raises(ValueError, match="RESULT key"):
        gc.format_result({"Bad Key": 1})


def test_tables_escape_errors_and_align_figures(gc):
    smoke = [gc.SmokeResult("a", True, "ok", 1.5, "test_accuracy", 0.91234),
             gc.SmokeResult("b", False, "failed (run): RuntimeError: x | y", 0.5)]
    table = gc.smoke_table(smoke)
    assert "| a | ok | test_accuracy | 0.9123 | 1.5 |" in table
    assert "x \\| y" in table  # a '|' in an error message does not split the cell
    resume = gc.resume_table([gc.ResumeResult("a", True, "ok", 4, 2, 0.5, 0.5, 0.0, "train_loss", 0.5, 0.5, 0.0,
                                              True, 1.0)])
    assert "| a | ok | train_loss | yes | 4 | 2 |" in resume and "tolerance: relative 0.001" in resume
    ddp = gc.ddp_table([gc.DdpResult(1, True, "ok", 0, 12.3, "metrics.json, last.pt", "NCCL version 2.21.5")])
    assert "| 1 | ok | metrics.json, last.pt | NCCL version 2.21.5 |  | 0 | 12.3 |" in ddp


def fake_rows(gc):
    """Rows with known rates: labkit 2x the reference, AMP 2x fp32, channels_last 1.5x, compile 1.25x."""
    rows = []
    for model in gc.CNNS:
        for amp in (False, True):
            for cl in (False, True):
                base = 100.0 * (2 if amp else 1) * (1.5 if cl and amp else 1)
                rows.append(gc.Row(f"{model} eager", gc.Case(model, "reference", amp, cl, False), "ok", base))
                rows.append(gc.Row(f"{model} eager", gc.Case(model, "labkit", amp, cl, False), "ok", 2 * base))
    for amp in (False, True):
        rows.append(gc.Row("lm eager", gc.Case("lm", "labkit", amp, False, False), "ok", 1000.0 * (2 if amp else 1)))
    for model in gc.MODELS:
        cl = model != "lm"
        eager = gc.find_rate(rows, gc.Case(model, "labkit", True, cl, False))
        rows.append(gc.Row(f"{model} compile AMP", gc.Case(model, "labkit", True, cl, False), "ok", eager))
        rows.append(gc.Row(f"{model} compile AMP", gc.Case(model, "labkit", True, cl, True), "ok", 1.25 * eager))
    rows.append(gc.Row("lm compile fp32", gc.Case("lm", "labkit", False, False, True), "skipped: time budget"))
    return rows


def test_ratios_and_result_values(gc):
    rows = fake_rows(gc)
    ratios = gc.throughput_ratios(rows)
    assert ratios["labkit_vs_ref"][0] == pytest.approx(2.0)
    assert ratios["channels_last_speedup"][0] == pytest.approx(1.5)
    assert ratios["compile_speedup"][0] == pytest.approx(1.25)
    assert ratios["amp_speedup"][0] == pytest.approx((3.0 * 3.0 * 2.0) ** (1 / 3))  # CNNs 2 x 1.5, the LM 2
    assert ratios["labkit_amp_vs_ref_fp32"][0] == pytest.approx(6.0)
    assert "NOT the same precision" in ratios["labkit_amp_vs_ref_fp32"][1]
    text = gc.throughput_table(rows) + gc.ratio_table(ratios)
    assert "| resnet18 eager | ResNet-18 3x64x64 | labkit | AMP | channels_last | off | ok | images/s | 600 |" in text
    assert "skipped: time budget" in text and "| Transformer LM |" in text

    smoke = [gc.SmokeResult("a", True, "ok", 1.0), gc.SmokeResult("b", False, "failed", 1.0)]
    resume = [gc.ResumeResult("a", True, "ok", loss_rel=1e-6, metric_rel=3e-5),
              gc.ResumeResult("m", True, "skipped: not ported", skipped=True)]
    ddp = [gc.DdpResult(1, True, "ok")]
    values = gc.result_values("NVIDIA H200", 412.4, smoke, resume, rows, ddp, 1)
    assert list(values) == ["smoke_ok", "resume_ok", "resume_max_rel", "resnet20_amp_img_s", "resnet18_amp_img_s",
                            "lm_amp_tok_s", "amp_speedup", "channels_last_speedup", "compile_speedup",
                            "labkit_vs_ref", "labkit_amp_vs_ref_fp32", "peak_fraction", "precision",
                            "matmul_fp32_gflops", "matmul_bf16_gflops", "matmul_fp16_gflops", "ddp_ok", "ddp2_ok",
                            "failed", "seconds", "device"]
    fields = result_fields(gc.format_result(values))
    assert fields["smoke_ok"] == "1/2" and fields["resume_ok"] == "1" and fields["resume_max_rel"] == "3e-05"
    assert fields["resnet18_amp_img_s"] == "600" and fields["lm_amp_tok_s"] == "2000"
    assert fields["ddp_ok"] == "1" and fields["ddp2_ok"] == "na" and fields["failed"] == "1"
    assert fields["device"] == "NVIDIA H200" and fields["seconds"] == "412" and fields["peak_fraction"] == "na"
    nothing = gc.result_values("x", 1.0, None, None, None, None, 0)
    assert nothing["smoke_ok"] is None and nothing["amp_speedup"] is None and nothing["failed"] == 0


def test_the_plan_fits_the_budget(gc):
    groups = gc.plan(gc.REAL)
    eager = [g for g in groups if not g.optional]
    assert [len(g.cases) for g in eager] == [8, 8, 2]
    assert {(c.amp, c.channels_last) for c in eager[0].cases} == {(a, c) for a in (False, True) for c in (False, True)}
    assert all(any(c.compiled for c in g.cases) for g in groups if g.optional)
    assert [g.name for g in gc.plan(gc.QUICK) if g.optional] == ["resnet20 compile AMP", "resnet18 compile AMP",
                                                                "lm compile AMP"]
    assert not any(g.optional for g in gc.plan(gc.REAL, compile_on=False))
    labs = labmod.lab_names()
    for sizes in (gc.REAL, gc.QUICK):
        total, _ = gc.estimate_seconds(gc.SECTIONS, sizes, labs, gc.RESUME_LABS, 2, True, gc.BUDGET_S)
        assert total <= gc.BUDGET_S


# --- the pieces, at tiny size on the CPU -------------------------------------------------------------------

def test_smoke_loop_over_ported_labs(gc, blobs, tmp_path, monkeypatch):  # noqa: F811 - the fixture
    results = gc.smoke_check(["function-fitting", "blobs", "ghost"], "cpu", tmp_path)
    by_lab = {r.lab: r for r in results}
    assert by_lab["function-fitting"].ok and by_lab["function-fitting"].metric == "train_loss"
    assert by_lab["blobs"].ok and by_lab["blobs"].metric == "test_accuracy" and by_lab["blobs"].value > 0.6
    assert not by_lab["ghost"].ok and "registers a lab named 'ghost'" in by_lab["ghost"].status
    assert (tmp_path / "blobs" / "metrics.json").is_file() and (tmp_path / "function-fitting" / "fit.png").is_file()


def test_resume_check_equals_the_uninterrupted_run(gc, blobs, tmp_path):  # noqa: F811 - the fixture
    for name in ("blobs", "function-fitting"):
        result = gc.resume_check(name, "cpu", tmp_path / name)
        assert result.ok, result.status
        assert result.stopped_at == result.epochs // 2 and result.exact  # the CPU is deterministic
        assert result.loss_rel == 0 and result.metric_rel == 0
    assert gc.resume_check("blobs", "cpu", tmp_path / "b").metric == "test_accuracy"


def test_resume_check_catches_a_resume_that_changes_the_run(gc, blobs, tmp_path, monkeypatch):  # noqa: F811
    from labkit import runner

    real_run = runner.run

    def broken_resume(lab, cfg, **kwargs):
        if kwargs.get("resume") is not None:  # the second half sees other data (another seed's)
            kwargs["data"] = runner.load_data(lab, cfg.replace(seed=cfg.seed + 1))
        return real_run(lab, cfg, **kwargs)

    monkeypatch.setattr(runner, "run", broken_resume)
    result = gc.resume_check("blobs", "cpu", tmp_path)
    assert not result.ok and "train loss differs" in result.status and not result.exact


def test_resume_check_skips_an_unavailable_lab(gc, monkeypatch, tmp_path):
    result = gc.resume_check("ghost", "cpu", tmp_path)
    assert result.skipped and result.status.startswith("skipped:")
    assert gc.result_values("x", 1.0, None, [result], None, None, 0)["resume_ok"] is None


def test_metric_tolerance(gc):
    assert gc.metric_tolerance("test_accuracy", 0.9) == pytest.approx(0.01)
    assert gc.metric_tolerance("test_perplexity", 200.0) == pytest.approx(0.2)
    assert gc.rel_diff(1.0, 1.0) == 0 and gc.rel_diff(1.0, float("nan")) == float("inf")


def test_throughput_sides_run_on_the_cpu(gc):
    sizes = gc.TINY
    cases = (gc.Case("resnet20", "reference", False, False, False), gc.Case("resnet20", "labkit", False, False, False))
    rows = gc.throughput_check("cpu", sizes, [gc.Group("resnet20 eager", cases),
                                              gc.Group("lm eager", (gc.Case("lm", "labkit", False, False, False),
                                                                    gc.Case("lm", "reference", False, False, False)))],
                               workers=0, log=lambda _: None)
    by_case = {(r.case.model, r.case.pipeline): r for r in rows}
    for key in (("resnet20", "reference"), ("resnet20", "labkit"), ("lm", "labkit")):
        row = by_case[key]
        assert row.ok and row.rate > 0 and len(row.rounds) == sizes.rounds and row.first_step_s > 0, row
    assert by_case[("resnet20", "reference")].wait_share is not None
    assert by_case[("resnet20", "labkit")].wait_share is None
    assert by_case[("lm", "reference")].status.startswith("failed: ValueError: the LM is measured on labkit's")


def test_the_labkit_side_takes_exactly_the_asked_steps(gc):
    bench = gc.Bench(torch.device("cpu"), gc.TINY, workers=0)
    side = bench.side(gc.Case("resnet20", "labkit", False, False, False))
    seen = []
    real_step = side.optimizer.step
    side.optimizer.step = lambda *a, **k: (seen.append(1), real_step(*a, **k))[1]
    side.run(3)
    assert len(seen) == 3
    with pytest.raises(ValueError, match="fewer than"):
        side.run(len(side.loader) + 1)


def test_reference_workers_fit_in_dev_shm(gc):
    batch = 128 * 3 * 64 * 64 * 4  # a float32 ResNet-18 batch: 6 MiB
    assert gc.worker_settings(8, batch, 64 * 2**30) == (8, 4)
    assert gc.worker_settings(8, batch, 300 * 2**20) == (8, 1)
    assert gc.worker_settings(8, batch, 64 * 2**20) == (2, 1)  # Docker's default 64 MiB /dev/shm
    assert gc.worker_settings(8, batch, None) == (8, 2) and gc.worker_settings(0, batch, None) == (0, 0)


def test_an_optional_group_over_budget_is_skipped_whole(gc):
    bench = gc.Bench(torch.device("cpu"), gc.TINY, workers=0)
    group = gc.Group("resnet20 compile AMP", (gc.Case("resnet20", "labkit", True, True, False),
                                              gc.Case("resnet20", "labkit", True, True, True)), optional=True)
    rows = gc.measure_group(bench, group, gc.Budget(0.0))
    assert [r.status for r in rows] == ["skipped: time budget"] * 2 and not bench.sides


def test_ddp_check_launches_torchrun(gc, tmp_path):
    result = gc.ddp_check(1, "cpu", tmp_path / "ddp")  # gloo on the CPU; NCCL on a GPU
    assert result.ok, result
    assert result.rc == 0 and result.outputs == "metrics.json, last.pt"
    command = gc.ddp_command(2, "function-fitting", "cuda", Path("OUT"))
    assert command[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "labkit",
                           "run", "function-fitting", "--smoke", "--device", "cuda", "--out", "OUT"]


def test_the_limit_is_resnet20s_amp_row_against_the_matmul_of_its_precision(gc, monkeypatch):
    peaks = {"fp32": 200e9, "bf16": 400e9, "fp16": None}
    monkeypatch.setattr(gc, "matmul_flops", lambda device, seconds: peaks)
    monkeypatch.setattr(gc, "training_flops", lambda model, images, targets: 8 * 1e8)  # 0.1 GFLOP an image
    monkeypatch.setattr(gc, "amp_dtype", lambda device, amp: torch.bfloat16 if amp else None)
    limit = gc.limit_values(torch.device("cpu"), fake_rows(gc))
    # the labkit ResNet-20 AMP + channels_last eager row: 2 x 100 x 2 x 1.5 = 600 images/s, against bf16's peak
    assert limit["precision"] == "bf16" and limit["peak_fraction"] == pytest.approx(600 * 1e8 / 400e9)
    assert (limit["matmul_fp32_gflops"], limit["matmul_bf16_gflops"], limit["matmul_fp16_gflops"]) == (200, 400, None)
    no_amp = [r for r in fake_rows(gc) if not r.case.amp]  # falls back to the fp32 eager row (2 x 100)
    limit = gc.limit_values(torch.device("cpu"), no_amp)
    assert limit["precision"] == "fp32" and limit["peak_fraction"] == pytest.approx(200 * 1e8 / 200e9)
    assert gc.limit_values(torch.device("cpu"), [])["peak_fraction"] is None
    assert "peak_fraction 0.15" in gc.limit_text(gc.limit_values(torch.device("cpu"), fake_rows(gc)))


def test_main_in_test_mode_prints_tables_and_the_result_line(gc, blobs, tmp_path, capsys, monkeypatch):  # noqa: F811
    tiny_plan = [gc.Group("resnet20 eager", (gc.Case("resnet20", "reference", False, False, False),
                                             gc.Case("resnet20", "labkit", False, False, False))),
                 gc.Group("lm eager", (gc.Case("lm", "labkit", False, False, False),
                                       gc.Case("lm", "labkit", True, False, False)))]
    monkeypatch.setattr(gc, "plan", lambda sizes, compile_on=True: tiny_plan)
    out, report = tmp_path / "runs", tmp_path / "report" / "check.md"
    code = gc.main(["--only", "smoke,resume,throughput", "--labs", "function-fitting,blobs", "--resume-labs",
                    "blobs", "--workers", "0", "--out", str(out), "--report", str(report)], _test_device="cpu")
    text = capsys.readouterr().out
    assert code == 0, text
    assert "test mode: not a GPU check" in text and "estimated time:" in text
    for title in ("## Smoke runs", "## Resume equals", "## Training throughput", "## Ratios"):
        assert title in text
    fields = result_fields(text.strip().splitlines()[-1])
    assert fields["smoke_ok"] == "2/2" and fields["resume_ok"] == "1" and fields["failed"] == "0"
    assert float(fields["lm_amp_tok_s"]) > 0 and fields["ddp_ok"] == "na" and fields["device"] == "cpu (test mode)"
    assert "## Against the limit" in text
    # the plan's only ResNet-20 labkit row is fp32 eager: against the fp32 matmul
    assert fields["precision"] == "fp32" and 0 < float(fields["peak_fraction"]) <= 1.5
    assert float(fields["matmul_fp32_gflops"]) > 0 and fields["matmul_fp16_gflops"] == "na"
    saved = report.read_text()
    assert saved.startswith("gpu_check on ") and saved.strip().endswith(text.strip().splitlines()[-1])
    assert json.loads(report.with_suffix(".json").read_text())["values"]["smoke_ok"] == "2/2"
    assert (out / "smoke" / "blobs" / "metrics.json").is_file()  # --out keeps the runs
