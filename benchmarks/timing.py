"""Helpers shared by the benchmark scripts: best-of timing and the CPU's name."""

from __future__ import annotations

import math
import platform
import subprocess
import sys
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
    """``lscpu``'s model name, CPU family and model number (machines that report the same name differ:
    a Zen 4 and a Zen 5 EPYC are both "AMD EPYC"), or the platform's processor string."""
    model = platform.processor() or platform.machine() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return model
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    model = fields.get("Model name", model)
    if "CPU family" in fields:
        model += f" (family {fields['CPU family']}" + \
            (f" model {fields['Model']})" if "Model" in fields else ")")
    return model


def serve_timings(call, info: dict) -> None:
    """The timing-peer protocol (:mod:`jax_peer`, :mod:`kernel_variants`): print ``ready``
    and ``info`` as JSON, then for each ``run`` line on standard input time one ``call()``
    and print its wall seconds and the CPU seconds of this process (all its threads; time
    the process spent waiting for a core is not in it, so it stays meaningful on a busy
    machine); ``quit`` or the end of input ends it."""
    import json

    print("ready", flush=True)
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        t0, c0 = time.perf_counter(), time.process_time()
        call()
        print(f"{time.perf_counter() - t0:.9f} {time.process_time() - c0:.9f}", flush=True)


class TimingServer:
    """A process serving timings with :func:`serve_timings` (a kernel variant, the JAX
    peer); :class:`RuntimeError` with its last line of stderr if it does not start."""

    def __init__(self, command, env=None):
        import json
        import tempfile

        self._log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True, env=env)
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.wait(timeout=120)
            self._log.seek(0)
            lines = [line for line in self._log.read().splitlines() if line.strip()]
            raise RuntimeError(lines[-1] if lines else "no output")
        self.info = json.loads(self.proc.stdout.readline())

    def time_once(self) -> tuple:
        """``(wall seconds, CPU seconds)`` of one call."""
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        wall, cpu = self.proc.stdout.readline().split()
        return float(wall), float(cpu)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        self._log.close()
