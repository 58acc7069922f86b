"""The prepared GPU check: one command, a few minutes, every GPU path of the plugin against
the CPU in float64.

    python benchmarks/gpu_check.py                     # writes benchmarks/output/gpu_check.json
    python benchmarks/gpu_check.py --quick             # smaller sizes, about a minute

Without a CUDA GPU it exits at once with status 1, saying so. Otherwise, each part timed
and checked, each reported on its own (a part that cannot run says why; the others go on):

1. **Triton kernel, forward** (``hh_sequence(path='triton')``), float32 and float64, at
   N = 1e5 and 1e6 neurons, T steps of 0.01 ms with currents drawn from 5 to 20 uA:
   neuron-steps/s, and against the CPU's fused kernel in float64 (``path='fused_cpp'``) the
   (step, neuron) spikes that differ and the largest difference of the final V (mV).
2. **Forward and backward on CUDA**: the Triton kernel is forward-only, so gradients come
   from the autograd step loop (``path='naive'``) on the GPU, at N = 1e5 (T steps) and 1e6
   (T/10 steps): neuron-steps/s and the relative difference of the input gradient from the
   CPU fused kernel's float64 backward (loss: spikes + 1e-3 of the final V).
3. **The network module on CUDA**: COBAHH scaled with in-degree 80
   (:mod:`cobahh_scaling`) at 4,000 and 400,000 neurons, float32, ``--duration`` ms:
   wall time, spikes, rate.
4. **Brian2CUDA**: the same 400,000-neuron network generated, compiled by nvcc and run
   (``cuda_standalone``), in this Python or ``$HH_PLUGIN_CUDA_PYTHON`` (Brian2CUDA pins
   its own Brian2, see the README): compile and run time, spikes.

A JSON (``--json``) and a Markdown table (printed) hold the figures; put them in
docs/performance.md with the device named.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

DT_S = 1e-5
NO_GPU_EXIT = 1
#: Where the GPU parts run and which path is the forward kernel (tests point them at the
#: CPU and the step loop to run this script's own logic without a GPU).
DEVICE = "cuda"
FORWARD_PATH = "triton"


def gpu_or_reason():
    """``(torch, None)`` with a CUDA GPU, else ``(None, why)``."""
    try:
        import torch
    except ImportError as exc:
        return None, f"torch is not installed ({exc})"
    if not torch.cuda.is_available():
        return None, (f"no CUDA GPU here (torch {torch.__version__}: "
                      f"torch.cuda.is_available() is False)")
    return torch, None


def _hh_inputs(torch, N, T, dtype, device):
    from hh_plugin import HHSpec
    from hh_plugin.torch.functional.parameters import as_parameters, initial_state

    g = torch.Generator().manual_seed(0)
    current = (5.0 + 15.0 * torch.rand(T, N, generator=g, dtype=torch.float64)).to(dtype)
    p = as_parameters(HHSpec()).to(dtype=dtype)
    s0 = initial_state(p, (N,), V=-65.0, dtype=dtype)
    return current.to(device), s0.to(device=device), p.to(device=device)


def _timed(torch, fn):
    sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def triton_forward(torch, N, T):
    from hh_plugin.torch.fused import hh_sequence

    I, s0, p = _hh_inputs(torch, N, T, torch.float64, "cpu")
    with torch.no_grad():
        cpu_z, cpu_state = hh_sequence(I, s0, p, DT_S, path="fused_cpp")
    rows = []
    for dtype in (torch.float32, torch.float64):
        Ig, sg, pg = _hh_inputs(torch, N, T, dtype, DEVICE)
        with torch.no_grad():
            hh_sequence(Ig[:10], sg, pg, DT_S, path=FORWARD_PATH)  # compiles the kernel
            seconds, (z, state) = _timed(torch, lambda: hh_sequence(Ig, sg, pg, DT_S,
                                                                   path=FORWARD_PATH))
        differing = int((z.cpu().to(torch.float64) != cpu_z).sum())
        rows.append({"part": "triton forward", "N": N, "T": T,
                     "dtype": str(dtype).replace("torch.", ""),
                     "neuron_steps_per_s": N * T / seconds, "seconds": seconds,
                     "spikes": int(cpu_z.sum()), "spikes_differing": differing,
                     "max_abs_dV_final_mV": float((state.V.cpu().to(torch.float64)
                                                   - cpu_state.V).abs().max())})
    return rows


def cuda_backward(torch, N, T):
    from hh_plugin.torch.fused import hh_sequence

    def loss_and_grad(I, s0, p, path):
        I = I.clone().requires_grad_(True)
        z, state = hh_sequence(I, s0, p, DT_S, path=path)
        (z.sum() + 1e-3 * state.V.sum()).backward()
        return I.grad

    I, s0, p = _hh_inputs(torch, N, T, torch.float64, "cpu")
    reference = loss_and_grad(I, s0, p, "fused_cpp")
    rows = []
    for dtype in (torch.float32, torch.float64):
        Ig, sg, pg = _hh_inputs(torch, N, T, dtype, DEVICE)
        seconds, grad = _timed(torch, lambda: loss_and_grad(Ig, sg, pg, "naive"))
        scale = float(reference.abs().max())
        rows.append({"part": "cuda fwd+bwd (autograd step loop)", "N": N, "T": T,
                     "dtype": str(dtype).replace("torch.", ""),
                     "neuron_steps_per_s": N * T / seconds, "seconds": seconds,
                     "max_rel_grad_difference": float((grad.cpu().to(torch.float64)
                                                       - reference).abs().max()) / scale})
    return rows


def network_cuda(torch, n, duration):
    from cobahh_scaling import scaled_cobahh

    from hh_plugin.torch.network import NetworkModule

    spec, _, _ = scaled_cobahh(n)
    steps = int(round(duration / spec.dt))
    module = NetworkModule(spec, dtype=torch.float32, device=DEVICE)
    with torch.no_grad():
        module(steps=10)
        seconds, out = _timed(torch, lambda: module(steps=steps))
    spikes = int(out.spikes["P"].sum())
    return [{"part": "network module on CUDA (COBAHH scaled)", "N": n, "steps": steps,
             "dtype": "float32", "seconds": seconds, "spikes": spikes,
             "rate_hz": spikes / n / (duration * 1e-3)}]


BRIAN2CUDA_SCRIPT = """
import json, sys, time
sys.path[:0] = [{root!r}, {here!r}]
import brian2
from brian2 import ms
from cobahh_scaling import scaled_cobahh
from hh_plugin.brian2 import use_device
from hh_plugin.brian2.network import build_network
spec, _, _ = scaled_cobahh({n})
steps = int(round({duration} / spec.dt))
t0 = time.perf_counter()
with use_device("cuda_standalone", directory={directory!r}, build_on_run=False) as session:
    brian2.defaultclock.dt = spec.dt * ms
    net = build_network(spec, steps, record=())
    net.run()
    timings = session.build(with_output=False)
    spikes = len(net.spike_monitors["P"].i)
print(json.dumps({{"compile_s": timings.get("make"), "simulation_s": timings.get("simulation"),
                  "total_s": time.perf_counter() - t0, "spikes": spikes}}))
"""


def brian2cuda(n, duration, directory):
    python = os.environ.get("HH_PLUGIN_CUDA_PYTHON", sys.executable)
    script = BRIAN2CUDA_SCRIPT.format(root=str(ROOT), here=str(HERE), n=n, duration=duration,
                                      directory=str(directory))
    done = subprocess.run([python, "-c", script], capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0:
        last = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise RuntimeError(f"{python}: {last[-1] if last else 'failed'}"[:300])
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row.update({"part": "Brian2CUDA (COBAHH scaled)", "N": n, "dtype": "float64",
                "python": python, "rate_hz": row["spikes"] / n / (duration * 1e-3)})
    return [row]


def markdown(rows) -> str:
    keys = ["part", "N", "T", "steps", "dtype", "neuron_steps_per_s", "seconds",
            "spikes", "spikes_differing", "max_abs_dV_final_mV", "max_rel_grad_difference",
            "rate_hz", "compile_s", "simulation_s", "error"]
    used = [k for k in keys if any(k in r for r in rows)]

    def cell(value):
        if isinstance(value, float):
            return f"{value:.3g}"
        return "-" if value is None else str(value)

    lines = ["| " + " | ".join(used) + " |", "|" + "---|" * len(used)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k in used) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 1e4 and 1e5, 100 ms networks "
                                                         "of 4,000 and 40,000 neurons")
    ap.add_argument("--steps", type=int, default=1000, help="T of the kernel parts")
    ap.add_argument("--duration", type=float, default=None,
                    help="ms of network activity (default 200; 100 with --quick)")
    ap.add_argument("--json", type=Path, default=HERE / "output" / "gpu_check.json")
    ap.add_argument("--skip", nargs="*", default=[],
                    choices=["triton", "backward", "network", "brian2cuda"])
    args = ap.parse_args(argv)
    torch, why = gpu_or_reason()
    if torch is None:
        print(f"gpu_check: {why}; nothing to check (run it on a machine with a GPU)")
        return NO_GPU_EXIT
    sizes = (10_000, 100_000) if args.quick else (100_000, 1_000_000)
    networks = (4_000, 40_000) if args.quick else (4_000, 400_000)
    duration = args.duration or (100.0 if args.quick else 200.0)
    device = torch.cuda.get_device_name(0)
    print(f"gpu_check on {device}, torch {torch.__version__}", flush=True)
    parts = []
    if "triton" not in args.skip:
        parts += [("triton forward", triton_forward, (torch, N, args.steps)) for N in sizes]
    if "backward" not in args.skip:
        parts += [("cuda fwd+bwd", cuda_backward, (torch, sizes[0], args.steps)),
                  ("cuda fwd+bwd", cuda_backward, (torch, sizes[1], max(args.steps // 10, 1)))]
    if "network" not in args.skip:
        parts += [("network on CUDA", network_cuda, (torch, n, duration)) for n in networks]
    if "brian2cuda" not in args.skip:
        parts.append(("Brian2CUDA", brian2cuda,
                      (networks[-1], duration, HERE / "output" / "gpu_check_brian2cuda")))
    rows, total = run_parts(parts)
    result = {"device": device, "torch": torch.__version__, "rows": rows, "total_s": total}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print()
    print(f"GPU check on {device} ({result['total_s']:.0f} s in all)")
    print(markdown(rows))
    print(f"\nwrote {args.json}")
    return 0


def run_parts(parts):
    """Run each ``(name, function, arguments)``; a part that fails gives a row with its
    error and the others go on. Returns ``(rows, seconds)``."""
    rows = []
    t_start = time.perf_counter()
    for name, fn, fn_args in parts:
        t0 = time.perf_counter()
        try:
            new = fn(*fn_args)
        except Exception as exc:  # noqa: BLE001  (one part failing does not stop the rest)
            traceback.print_exc()
            new = [{"part": name, "error": f"{exc.__class__.__name__}: {exc}"[:300]}]
        for row in new:
            row["part_wall_s"] = time.perf_counter() - t0
            print("  ", row, flush=True)
        rows += new
    return rows, time.perf_counter() - t_start


if __name__ == "__main__":
    sys.exit(main())
