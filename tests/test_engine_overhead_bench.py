"""bench/engine_overhead.py: the same work both ways, alternating rounds, both RESULT keys in their directions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.bench_result import check_limit_keys

BENCH = Path(__file__).resolve().parent.parent / "bench" / "engine_overhead.py"


def test_quick_run_prints_the_spread_and_both_ratios():
    out = subprocess.run([sys.executable, str(BENCH), "--quick", "--peak-seconds", "0.1"],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    lines = out.strip().splitlines()
    assert "3 alternating rounds" in lines[0]
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and "/" in line}
    assert {"bare PyTorch loop (reference)", "labkit fit()"} <= set(rows)
    result = dict(kv.split("=") for kv in lines[-1].removeprefix("RESULT ").split())
    assert list(result)[:2] == ["tooling_ratio", "ratio"]
    check_limit_keys(lines[-1])
    medians = [float(re.search(r"\| [\d.]+ / ([\d.]+) / ", rows[k]).group(1))
               for k in ("bare PyTorch loop (reference)", "labkit fit()")]
    # tooling_ratio is bare/labkit of the medians (> 1: labkit faster), as in every other bench
    assert abs(float(result["tooling_ratio"]) - medians[0] / medians[1]) < 0.02 * float(result["tooling_ratio"])
    assert float(result["ratio"]) > 0
