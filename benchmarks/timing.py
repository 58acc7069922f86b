"""Helpers shared by the benchmark scripts: best-of timing and the CPU's name."""

from __future__ import annotations

import math
import platform
import subprocess
import time


def best_of(fn, repeats: int) -> float:
    """Shortest wall time (s) of ``repeats`` calls of ``fn`` after one untimed warm-up call
    (which pays for kernel builds and compilation)."""
    fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def cpu_model() -> str:
    """``lscpu``'s model name and CPU family (machines that report the same name differ:
    a Zen 4 and a Zen 5 EPYC are both "AMD EPYC"), or the platform's processor string."""
    model = platform.processor() or platform.machine() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return model
    for line in out.splitlines():
        if line.startswith("Model name"):
            model = line.split(":", 1)[1].strip()
        if line.startswith("CPU family"):
            model += f" (family {line.split(':', 1)[1].strip()})"
    return model
