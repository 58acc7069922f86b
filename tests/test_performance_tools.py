"""The performance tools: the roofline's operation counts and micro-benchmark, the prepared
GPU check (its no-GPU exit, and its comparisons run on the CPU), the COBAHH scaling
network with a fixed in-degree, and the per-machine choice of the kernel's vector width."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hh_plugin.model import HODGKIN_HUXLEY, MORRIS_LECAR
from hh_plugin.torch.fused import cpp, roofline

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import cobahh_scaling  # noqa: E402
import gpu_check  # noqa: E402


def test_operation_counts_follow_the_generated_step(monkeypatch):
    """HH's step: exp for beta_m, alpha_h, beta_h and beta_n; exprel for alpha_m, alpha_n,
    the membrane's exponential-Euler factor and the three gates' ones, the last four by the
    polynomial (``exprel_small``) unless ``HH_PLUGIN_EXACT_EXPREL`` is set."""
    monkeypatch.delenv("HH_PLUGIN_EXACT_EXPREL", raising=False)
    for dtype in ("float32", "float64"):
        counts = roofline.operation_counts(HODGKIN_HUXLEY, dtype=dtype)
        assert counts["exp"] == 4 and counts["exprel"] == 2 and counts["expm1"] == 0
        assert counts["exprel_small"] == 4
        assert counts["div"] >= 1 and counts["fma"] > 20
    monkeypatch.setenv("HH_PLUGIN_EXACT_EXPREL", "1")
    exact = roofline.operation_counts(HODGKIN_HUXLEY)
    assert exact["exprel"] == 6 and exact["exprel_small"] == 0
    assert counts["fma"] > exact["fma"]  # the polynomials' range checks
    # Morris-Lecar writes its rates with tanh and cosh: an expm1 and an exp each
    ml = roofline.operation_counts(MORRIS_LECAR)
    assert ml["expm1"] >= 1 and ml["exp"] >= 1
    # RK4 evaluates the six rates four times and has no exponential-Euler factors
    rk4 = roofline.operation_counts(HODGKIN_HUXLEY, "rk4")
    assert rk4["exp"] == 4 * 4 and rk4["exprel"] == 4 * 2


def test_roofline_limit_is_the_inverse_of_the_summed_costs():
    counts = {"exp": 2, "expm1": 0, "exprel": 1, "exprel_small": 0, "div": 1, "fma": 10}
    seconds = {"exp": 1e-9, "expm1": 5.0, "exprel": 2e-9, "exprel_small": 7.0, "div": 1e-9,
               "fma": 1e-10}
    assert roofline.limit(counts, seconds) == pytest.approx(1 / 6e-9)
    with pytest.raises(ValueError, match="no measured cost"):
        roofline.limit(counts, dict.fromkeys(seconds, 0.0))


@pytest.mark.skipif(cpp.compiler_available() is not None, reason="needs a C++ compiler")
def test_micro_benchmark_measures_every_kind():
    seconds = roofline.measure_throughputs("float32", reps=200, rounds=1)
    assert set(seconds) == set(roofline.KINDS)
    assert all(np.isfinite(v) and v >= 0 for v in seconds.values())
    assert seconds["fma"] > 0
    with pytest.raises(ValueError, match="float32 or float64"):
        roofline.measure_throughputs("float16")
    hz = roofline.clock_hz(iterations=200_000, rounds=1)
    assert hz is None or hz > 1e8


def test_vector_width_is_chosen_by_the_environment(monkeypatch):
    monkeypatch.setattr(cpp.platform, "machine", lambda: "x86_64")
    monkeypatch.setenv("HH_PLUGIN_VECTOR_WIDTH", "256")
    assert "-mprefer-vector-width=256" in cpp.compile_flags()
    monkeypatch.setenv("HH_PLUGIN_VECTOR_WIDTH", "300")
    with pytest.raises(ValueError, match="HH_PLUGIN_VECTOR_WIDTH='300'"):
        cpp.compile_flags()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_exits_at_once_without_a_gpu(tmp_path):
    done = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--json",
                           str(tmp_path / "out.json")], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == gpu_check.NO_GPU_EXIT
    assert "no CUDA GPU here" in done.stdout
    assert not (tmp_path / "out.json").exists()


@pytest.mark.skipif(cpp.compiler_available() is not None, reason="needs a C++ compiler")
def test_gpu_check_comparisons_on_the_cpu(monkeypatch):
    """The check's own logic, run with the CPU standing in for the GPU and the step loop
    for the Triton kernel: the float64 forward agrees with the fused kernel, the gradient
    too, and a failing part is reported while the others go on."""
    monkeypatch.setattr(gpu_check, "DEVICE", "cpu")
    monkeypatch.setattr(gpu_check, "FORWARD_PATH", "naive")
    forward = gpu_check.triton_forward(torch, 64, 300)
    f64 = next(r for r in forward if r["dtype"] == "float64")
    assert f64["spikes"] > 0 and f64["spikes_differing"] == 0
    assert f64["max_abs_dV_final_mV"] < 1e-9
    backward = gpu_check.cuda_backward(torch, 16, 200)
    assert next(r for r in backward if r["dtype"] == "float64")[
        "max_rel_grad_difference"] < 1e-9

    def broken(*_):
        raise RuntimeError("no nvcc")

    rows, _ = gpu_check.run_parts([("Brian2CUDA", broken, ()),
                                   ("network", gpu_check.network_cuda, (torch, 100, 5.0))])
    assert rows[0]["error"] == "RuntimeError: no nvcc"
    assert rows[1]["steps"] == 50 and rows[1]["spikes"] >= 0
    table = gpu_check.markdown(rows + forward)
    assert "RuntimeError: no nvcc" in table and "spikes_differing" in table


def test_scaled_cobahh_has_a_fixed_in_degree():
    spec, exc, inh = cobahh_scaling.scaled_cobahh(500, seed=1)
    assert spec.populations["P"].size == 500
    for (pre, post), k, n_src in ((exc, 64, 400), (inh, 16, 100)):
        assert np.bincount(post, minlength=500).tolist() == [k] * 500
        assert pre.max() < n_src
        pairs = pre.astype(np.int64) * 500 + post
        assert len(np.unique(pairs)) == len(pairs)  # distinct sources per target
    degree = cobahh_scaling.out_degrees(500, exc, inh)
    assert degree.sum() == 500 * 80
    with pytest.raises(ValueError, match="in-degree 64 exceeds"):
        cobahh_scaling.fixed_in_degree(10, 5, 64, np.random.default_rng(0))
