r"""The limit of the fused kernel's step on this CPU: a roofline from the generated code.

One neuron-step of the forward kernel is straight-line code (:func:`.codegen.step_program`)
whose cost is dominated by a handful of operation kinds. :func:`operation_counts` counts
them in the generated C++ of a model's step (the statements left inside the time loop,
after the per-block hoisting of :func:`.cpp_source.hoisted_statements`):

* ``exp`` and ``expm1`` (``cosh`` counts as an ``exp``, ``tanh``, ``sinh`` as an ``expm1``),
* ``exprel`` (an ``expm1``, a division and a select, measured as one operation),
* ``exprel_small``: the kernel's polynomial exprel of the exponential-Euler factors
  (:func:`.cpp_source.small_exprel_code`, which the kernel takes when every lane of a block
  is in its range; counted as taken, with its range check as three adds), unless
  ``HH_PLUGIN_EXACT_EXPREL`` turns it off,
* divisions (``/``, and the one inside ``tanh``, ``cosh``, ``sinh``),
* arithmetic: :math:`\max(\#\times, \#\pm)`, the fewest fused multiply-adds that can do the
  multiplications and additions (each FMA does one of each), comparisons counted as adds.

:func:`measure_throughputs` times each kind on this CPU in a vectorised loop built with the
kernel's own flags and math (the kernel's ``hh_exp``, ``hh_expm1``, ``hh_exprel``):
:math:`x_i \leftarrow a + b\,f(x_i)` over an L1-resident array, many elements independent,
so the loop runs at the operation's *throughput*; the FMA loop's time is subtracted from the
others. The limit per core of a model is then

.. math::
    R_\text{max} = \Big(\sum_k n_k\,\tau_k\Big)^{-1}\ \text{neuron-steps/s},

with :math:`n_k` the counts and :math:`\tau_k` the measured seconds per element of kind
:math:`k` (one core). It assumes the kinds do not overlap and ignores loads, stores and the
spike bookkeeping, so a kernel can only approach it; the fraction achieved says how much a
better kernel could still gain. :func:`clock_hz` measures the core clock (a chain of
dependent integer adds, one cycle each, x86-64 only) to state the costs in cycles.
"""

from __future__ import annotations

import re
from typing import Dict, Optional

from ...model.definition import ModelDefinition
from .codegen import CPP, exprel_constants, step_program
from .cpp_source import (_CPP_HEADER, SMALL_EXPREL_COEFFICIENTS, _small_exprel_forward,
                         hoisted_statements, small_exprel_code)

#: The operation kinds of the roofline, in the order :func:`measure_throughputs` returns.
KINDS = ("exp", "expm1", "exprel", "exprel_small", "div", "fma")

_CALLS = {"hh_exp(": {"exp": 1}, "hh_expm1(": {"expm1": 1}, "hh_exprel(": {"exprel": 1},
          "hh_exprel_small<T>(": {"exprel_small": 1},
          "hh_exprel_outside<T>(": {"add": 3},
          "hh_cosh(": {"exp": 1, "div": 1, "add": 1, "mul": 1},
          "hh_tanh(": {"expm1": 1, "div": 1, "add": 1, "mul": 1},
          "hh_sinh(": {"expm1": 1, "div": 1, "add": 2, "mul": 1},
          "hh_heaviside(": {"add": 1}, "hh_relu(": {"add": 1}}


def _count_statement(expression: str) -> Dict[str, int]:
    counts = {"exp": 0, "expm1": 0, "exprel": 0, "exprel_small": 0, "div": 0, "mul": 0,
              "add": 0}
    for call, costs in _CALLS.items():
        n = expression.count(call)
        for kind, k in costs.items():
            counts[kind] += n * k
    # literals T(-4.0), T(0.1) hold no operators; unary minus binds to a name or "("
    text = re.sub(r"T\([-+0-9.e]+\)", "c", expression).replace("<T>", "")
    counts["div"] += text.count("/")
    counts["mul"] += text.count("*")
    counts["add"] += len(re.findall(r"[\w)\]]\s*[-+]\s*[\w(]", text))
    return counts


def operation_counts(model: ModelDefinition, method: str = "exponential_euler",
                     dtype: str = "float32") -> Dict[str, int]:
    """Operations of one neuron-step of the forward kernel of ``model`` in ``dtype`` (see
    the module docstring): ``exp``, ``expm1``, ``exprel``, ``exprel_small``, ``div`` and
    ``fma`` (the arithmetic as the fewest fused multiply-adds), counted in the generated
    C++ with no reset (the reference model's default)."""
    from .cpp import small_exprel_enabled

    program = step_program(model, CPP, method=method)
    _, statements = hoisted_statements(program)
    ctype = {"float32": "float", "float64": "double"}[dtype]
    if small_exprel_enabled() and ctype in SMALL_EXPREL_COEFFICIENTS:
        statements = _small_exprel_forward(program, statements) or statements
    total = {"exp": 0, "expm1": 0, "exprel": 0, "exprel_small": 0, "div": 0, "mul": 0,
             "add": 0}
    for line in statements:
        expression = line.split("=", 1)[1]
        if "RESET == 0" in expression:  # the compile-time reset choice: no reset
            continue
        for kind, n in _count_statement(expression).items():
            total[kind] += n
    return {"exp": total["exp"], "expm1": total["expm1"], "exprel": total["exprel"],
            "exprel_small": total["exprel_small"], "div": total["div"],
            "fma": max(total["mul"], total["add"])}


_MICRO = r"""

template <typename T, int KIND> HH_INLINE T roofline_op(T x) {
  if (KIND == 0) return T(-1.0) + T(-0.5) * hh_exp<T>(x);     // x stays in (-1.5, -1)
  if (KIND == 1) return T(-1.0) + T(-0.5) * hh_expm1<T>(x);   // (-1, -0.5)
  if (KIND == 2) return T(-0.25) + T(-0.25) * hh_exprel<T>(x);  // (-0.5, -0.45): the
  // exponential-Euler factors' range, exprel(-(a + b) dt), where most exprel calls fall
  if (KIND == 3) return T(-0.25) + T(-0.25) * hh_exprel_small<T>(x);  // the same range
  if (KIND == 4) return T(0.5) / (x + T(2.0));               // (0.2, 0.25)
  return T(0.25) + T(0.5) * x;                               // -> 0.5
}

template <typename T, int KIND> double roofline_time(int64_t reps) {
  constexpr int n = 2048;
  alignas(64) static T x[n];
  for (int i = 0; i < n; ++i) x[i] = T(-1.2) + T(0.0001) * T(i % 1000);
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < reps; ++r) {
#pragma omp simd
    for (int i = 0; i < n; ++i) x[i] = roofline_op<T, KIND>(x[i]);
  }
  auto t1 = std::chrono::steady_clock::now();
  volatile T sink = x[7];
  (void)sink;
  return std::chrono::duration<double>(t1 - t0).count() / (double(reps) * n);
}

template <typename T> void roofline_times(int64_t reps, double* t) {
  t[0] = roofline_time<T, 0>(reps); t[1] = roofline_time<T, 1>(reps);
  t[2] = roofline_time<T, 2>(reps); t[3] = roofline_time<T, 3>(reps);
  t[4] = roofline_time<T, 4>(reps); t[5] = roofline_time<T, 5>(reps);
}

// seconds per element of each kind (exp, expm1, exprel, exprel_small, div, fma), best of
// `rounds`
std::vector<double> roofline_measure(int64_t reps, int64_t rounds, bool dbl) {
  std::vector<double> best(6, 1e300);
  for (int64_t k = 0; k < rounds; ++k) {
    double t[6];
    if (dbl) roofline_times<double>(reps, t);
    else roofline_times<float>(reps, t);
    for (int j = 0; j < 6; ++j) best[j] = std::min(best[j], t[j]);
  }
  return best;
}

// core clock (Hz): a chain of dependent integer adds, one cycle each; 0 off x86-64
double roofline_clock_hz(int64_t iterations) {
#if defined(__x86_64__)
  uint64_t x = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < iterations; ++i) {
    asm volatile(
        "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
        "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
        "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
        "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
        : "+r"(x));
  }
  auto t1 = std::chrono::steady_clock::now();
  return 20.0 * double(iterations) / std::chrono::duration<double>(t1 - t0).count();
#else
  (void)iterations;
  return 0.0;
#endif
}
"""


_ENTRY_POINTS = r"""
extern "C" {
int roofline_measure_c(long long reps, long long rounds, int dbl, double* out) {
  std::vector<double> t = roofline_measure(reps, rounds, dbl != 0);
  for (int j = 0; j < 6; ++j) out[j] = t[j];
  return 0;
}
double roofline_clock_hz_c(long long iterations) { return roofline_clock_hz(iterations); }
}
"""


def _source() -> str:
    """The kernel's math header (without torch's headers: a plain shared library compiles
    in a few seconds) with the micro-kernels and C entry points."""
    header = (exprel_constants(_CPP_HEADER).replace("MODEL_NAME", "roofline")
              .replace("NUM_STATES", "1").replace("NUM_PARAMS", "1")
              .replace("BLOCK_DOUBLE", "32").replace("BLOCK_FLOAT", "64")
              .replace("#include <torch/extension.h>\n", "")
              .replace("#include <ATen/Parallel.h>\n", ""))
    # the header ends inside its anonymous namespace: the micro-kernels go in it
    return ("#include <chrono>\n" + header + small_exprel_code() + _MICRO
            + "\n}  // namespace\n" + _ENTRY_POINTS)


_LIBRARY = []


def _library():
    """The micro-benchmark, compiled (first use) with the fused kernel's flags
    (:func:`.cpp.compile_flags`) into the plugin's cache and loaded with ``ctypes``."""
    if _LIBRARY:
        return _LIBRARY[0]
    import ctypes
    import os
    import subprocess

    from ...build_lock import build_lock, build_timeout, cache_dir
    from .codegen import source_hash
    from .cpp import PathUnavailable, build_environment, compile_flags

    source = _source()
    flags = compile_flags()
    cxx = os.environ.get("CXX", "c++")
    key = source_hash("\n".join([source, " ".join(flags), *build_environment()]))
    build = cache_dir() / "roofline" / key
    build.mkdir(parents=True, exist_ok=True)
    library = build / "roofline.so"
    with build_lock(build, build_timeout(), "the roofline micro-benchmark", PathUnavailable):
        if not library.is_file():
            (build / "roofline.cpp").write_text(source)
            done = subprocess.run([cxx, *flags, "-std=c++17", "-shared", "-fPIC",
                                   "roofline.cpp", "-o", "roofline.tmp.so", "-lm"], cwd=build,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise PathUnavailable(f"compiling the roofline micro-benchmark failed: "
                                      f"{done.stderr.strip()[-500:]}")
            os.replace(build / "roofline.tmp.so", library)
    lib = ctypes.CDLL(str(library))
    lib.roofline_measure_c.argtypes = [ctypes.c_longlong, ctypes.c_longlong, ctypes.c_int,
                                       ctypes.POINTER(ctypes.c_double)]
    lib.roofline_clock_hz_c.argtypes = [ctypes.c_longlong]
    lib.roofline_clock_hz_c.restype = ctypes.c_double
    _LIBRARY.append(lib)
    return lib


def measure_throughputs(dtype: str = "float32", reps: int = 2000,
                        rounds: int = 5) -> Dict[str, float]:
    """Seconds per element of each kind of :data:`KINDS` on one core, vectorised, with the
    FMA loop's time taken off the others (their loops also do one FMA), best of
    ``rounds``."""
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype {dtype!r}: float32 or float64")
    import ctypes

    out = (ctypes.c_double * len(KINDS))()
    _library().roofline_measure_c(reps, rounds, int(dtype == "float64"), out)
    times = list(out)
    fma = times[-1]
    out = {kind: max(t - fma, 0.0) for kind, t in zip(KINDS[:-1], times[:-1])}
    out["fma"] = fma
    return out


def clock_hz(iterations: int = 20_000_000, rounds: int = 3) -> Optional[float]:
    """The core clock in Hz (best of ``rounds``), or ``None`` where it cannot be measured
    (not x86-64)."""
    hz = max(_library().roofline_clock_hz_c(iterations) for _ in range(rounds))
    return hz or None


def limit(counts: Dict[str, int], seconds: Dict[str, float]) -> float:
    r"""Neuron-steps per second per core: :math:`(\sum_k n_k \tau_k)^{-1}`."""
    per_step = sum(counts[kind] * seconds[kind] for kind in KINDS)
    if per_step <= 0:
        raise ValueError("no measured cost: every operation timed at zero")
    return 1.0 / per_step
