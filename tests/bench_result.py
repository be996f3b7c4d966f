"""What every training bench's RESULT line must carry (issue 21): peak_fraction and the matmul figures."""

from __future__ import annotations

import math


def check_limit_keys(line: str) -> dict[str, str]:
    """The RESULT line's keys; asserts a finite positive peak_fraction <= 1.5 and the matmul figures."""
    assert line.startswith("RESULT "), line
    result = dict(kv.split("=", 1) for kv in line.removeprefix("RESULT ").split())
    fraction = float(result["peak_fraction"])
    assert math.isfinite(fraction) and 0 < fraction <= 1.5, line
    assert float(result["matmul_fp32_gflops"]) > 0, line
    assert result["matmul_bf16_gflops"] == "na" or float(result["matmul_bf16_gflops"]) > 0, line
    assert result["precision"] in ("fp32", "bf16", "fp16"), line
    return result
