"""Standalone devices (:func:`hh_plugin.brian2.use_device`): C++ standalone against the
runtime target, several builds in one process, Brian2CUDA code generation for sm_90.

The C++ and CUDA tests compile code and are marked ``slow``. Brian2CUDA pins its Brian2
(brian2cuda 1.0a7: brian2==2.8.0), so the CUDA test uses a second virtual environment
(``tests/environments.py``: installed by ``HH_PLUGIN_TEST_ENVS=all bash install.sh`` in
``~/.cache/hh_plugin``, never by the tests; ``HH_PLUGIN_CUDA_ENV`` overrides the path)
with Brian2CUDA, Brian2 2.8 and hh_plugin on its ``PYTHONPATH``, and runs
``examples/gpu_large_run.py --generate-only`` there: generation and nvcc compilation of
the plugin's group for sm_90, no GPU needed. The same environment checks the plugin on
Brian2 2.8 against the reference data.
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

brian2 = pytest.importorskip("brian2")

from brian2 import (SpikeMonitor, StateMonitor, defaultclock, get_device, ms, mV,  # noqa: E402
                    prefs, run, start_scope, uA)

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.brian2 import equations, neuron_group, use_device  # noqa: E402
from hh_plugin.brian2 import device as device_module  # noqa: E402
from hh_plugin.model.expressions import exprel_numpy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_device():
    """Runtime device, numpy target and dt before and after each test."""
    old_target, old_dt = prefs.codegen.target, defaultclock.dt
    start_scope()
    assert get_device().__class__.__name__ == "RuntimeDevice"
    yield
    if get_device().__class__.__name__ != "RuntimeDevice":  # a failed test left it
        brian2.set_device("runtime")
    prefs.codegen.target = old_target
    defaultclock.dt = old_dt
    start_scope()


# ------------------------------------------------------------------ quick checks
def test_unknown_device_name(clean_device):
    with pytest.raises(ValueError, match="unknown device 'gpu'.*cpp_standalone"):
        use_device("gpu")
    assert get_device().__class__.__name__ == "RuntimeDevice"


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="runtime", threads=2), "cpp_standalone"),
    (dict(name="cpp_standalone", threads=-1), "non-negative"),
    (dict(name="cpp_standalone", compute_capability=9.0), "cuda_standalone"),
    (dict(name="runtime", directory="x"), "standalone"),
    (dict(name="cpp_standalone", target="cython"), "runtime"),
])
def test_bad_device_options(clean_device, kwargs, match):
    with pytest.raises(ValueError, match=match):
        use_device(**kwargs)
    assert get_device().__class__.__name__ == "RuntimeDevice"


def test_cuda_without_brian2cuda_names_what_to_install(clean_device):
    try:
        import brian2cuda  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("brian2cuda is importable in this environment")
    with pytest.raises(ImportError, match=r"Brian2CUDA.*hh_plugin\[cuda\].*brian2==2\.8\.0"):
        use_device("cuda_standalone", compute_capability=9.0)
    assert get_device().__class__.__name__ == "RuntimeDevice"


def test_missing_nvcc_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(device_module, "find_nvcc", lambda: None)
    saved = {}
    with pytest.raises(RuntimeError, match="nvcc was not found.*CUDA toolkit"):
        device_module._configure_cuda(saved, 9.0, None, 0, compile_=True)
    with pytest.raises(RuntimeError, match="cuda_runtime_version"):
        device_module._configure_cuda(saved, 9.0, None, 0, compile_=False)
    assert saved == {}
    with pytest.raises(RuntimeError, match="nvcc"):
        device_module._check_cuda_compile("cuda_standalone")


def test_curand_wheel_names():
    assert device_module.curand_wheel(13.0) == "nvidia-curand~=10.4.0"
    assert device_module.curand_wheel(12.6) == "nvidia-curand-cu12"


def test_runtime_session_restores_preferences_and_dt(clean_device):
    from brian2.devices.device import previous_devices

    stack = len(previous_devices)
    defaultclock.dt = 0.05 * ms
    prefs.codegen.target = "numpy"
    with use_device("runtime", target="cython") as session:
        assert prefs.codegen.target == "cython" and not session.is_standalone
        assert defaultclock.dt == 0.05 * ms
        defaultclock.dt = 0.02 * ms
    assert prefs.codegen.target == "numpy"
    assert defaultclock.dt == 0.05 * ms
    assert len(previous_devices) == stack


def test_standalone_session_without_build_restores_runtime(clean_device, tmp_path):
    defaultclock.dt = 0.05 * ms
    session = use_device("cpp_standalone", directory=str(tmp_path), threads=2,
                         build_on_run=False)
    assert get_device().__class__.__name__ == "CPPStandaloneDevice"
    assert prefs.devices.cpp_standalone.openmp_threads == 2
    assert defaultclock.dt == 0.05 * ms
    session.close()
    session.close()  # idempotent
    assert get_device().__class__.__name__ == "RuntimeDevice"
    assert prefs.devices.cpp_standalone.openmp_threads == 0
    assert defaultclock.dt == 0.05 * ms
    with use_device("runtime") as runtime:
        with pytest.raises(RuntimeError, match="runtime device"):
            runtime.build()


def test_standalone_make_runs_one_compiler_per_core_unless_the_user_chose(clean_device,
                                                                         tmp_path):
    """Brian2's default ``make -j`` ran out of memory compiling a network's CUDA project."""
    import os

    key = "devices.cpp_standalone.extra_make_args_unix"
    assert list(prefs[key]) == ["-j"]  # Brian2's unbounded default
    with use_device("cpp_standalone", directory=str(tmp_path), build_on_run=False):
        assert list(prefs[key]) == [f"-j{os.cpu_count()}"]
    assert list(prefs[key]) == ["-j"]
    prefs[key] = ["-j1"]
    try:
        with use_device("cpp_standalone", directory=str(tmp_path), build_on_run=False):
            assert list(prefs[key]) == ["-j1"]
    finally:
        prefs[key] = ["-j"]


EXPREL_POINTS = np.concatenate([
    [0.0, 1e-300, -1e-12, 1e-8, -9.99e-4, 1e-3, -1e-3, 0.5, -700.0, 700.0],
    np.linspace(-30, 30, 1001), np.geomspace(1e-7, 1, 50), -np.geomspace(1e-7, 1, 50)])


@pytest.mark.slow
@pytest.mark.parametrize("where", ["cython", "cpp_standalone"])
def test_compiled_hh_exprel_is_accurate(clean_device, tmp_path, where):
    """The branch-free guarded form of the cython and C++ implementations of hh_exprel."""
    from brian2 import NeuronGroup

    from hh_plugin.brian2 import namespace

    def evaluate():
        group = NeuronGroup(len(EXPREL_POINTS), "x : 1\ny : 1", namespace=namespace())
        group.x = EXPREL_POINTS
        group.run_regularly("y = hh_exprel(x, exp(x))")
        run(defaultclock.dt)
        return group

    if where == "cython":
        prefs.codegen.target = "cython"
        values = np.asarray(evaluate().y[:])
    else:
        with use_device("cpp_standalone", directory=str(tmp_path / "exprel")):
            group = evaluate()
        values = np.asarray(group.y[:])
    np.testing.assert_allclose(values, exprel_numpy(EXPREL_POINTS), rtol=1e-12, atol=0)


def test_equation_forms():
    function = equations()
    assert "hh_exprel(" in str(function["alpha_m"].expr)
    assert "exprel(" in str(equations(exprel_form="brian2")["alpha_n"].expr)
    assert "hh_exprel" not in str(equations(exprel_form="brian2")["alpha_n"].expr)
    # whole numbers written as floats: Brian2 would turn 65/18 into a pow() per rate
    assert "/18.0" in str(function["beta_m"].expr)
    with pytest.raises(ValueError, match="exprel_form"):
        equations(exprel_form="guarded")


# ----------------------------------------------------------- C++ standalone (slow)
def _heterogeneous_case(n=1000, seed=7):
    rng = np.random.default_rng(seed)
    spec = HHSpec(gNa=rng.uniform(100.0, 140.0, n), gL=rng.uniform(0.01, 0.3, n),
                  V_th=rng.uniform(0.0, 30.0, n))
    current = rng.uniform(0.0, 25.0, n)
    return spec, current


def _simulate(n, spec, current, steps, dt, seed=3, record=True):
    group = neuron_group(n, spec, current=current * uA, seed=seed)
    state = StateMonitor(group, "V", record=record if record is True else list(record),
                         when="end")
    spikes = SpikeMonitor(group)
    run(steps * dt * ms)
    return state, spikes


def _results(state, spikes):
    return {"V": np.asarray(state.V / mV), "i": np.asarray(spikes.i),
            "t": np.asarray(spikes.t / ms)}


@pytest.mark.slow
def test_cpp_standalone_matches_runtime(clean_device, tmp_path):
    n, dt, steps = 1000, 0.01, 2000
    spec, current = _heterogeneous_case(n)
    defaultclock.dt = dt * ms
    prefs.codegen.target = "numpy"
    runtime = _results(*_simulate(n, spec, current, steps, dt))
    start_scope()

    with use_device("cpp_standalone", directory=str(tmp_path / "cpp"),
                    build_on_run=False) as session:
        assert defaultclock.dt == dt * ms
        monitors = _simulate(n, spec, current, steps, dt)
        timings = session.build(with_output=False)
    standalone = _results(*monitors)  # results stay readable after the block
    assert timings["make"] > 0 and timings["simulation"] > 0
    assert get_device().__class__.__name__ == "RuntimeDevice"
    assert defaultclock.dt == dt * ms

    assert len(runtime["i"]) > 500  # many neurons spike
    np.testing.assert_array_equal(standalone["i"], runtime["i"])
    np.testing.assert_array_equal(standalone["t"], runtime["t"])
    assert standalone["V"].shape == (n, steps)
    assert np.abs(standalone["V"] - runtime["V"]).max() <= 1e-9


@pytest.mark.slow
def test_two_standalone_builds_in_one_process(clean_device, tmp_path):
    """Two builds (1 and 2 OpenMP threads, different dt) in one process, then runtime."""
    n, steps = 200, 1000
    spec, current = _heterogeneous_case(n, seed=11)
    results = []
    for k, (threads, dt) in enumerate([(0, 0.02), (2, 0.01)]):
        defaultclock.dt = dt * ms
        with use_device("cpp_standalone", directory=str(tmp_path / f"build{k}"),
                        threads=threads, build_on_run=False) as session:
            assert defaultclock.dt == dt * ms
            assert prefs.devices.cpp_standalone.openmp_threads == threads
            monitors = _simulate(n, spec, current, steps, dt, record=range(0, n, 20))
            session.build(with_output=False)
            session.run(with_output=False)  # the binary runs again
            results.append(_results(*monitors))
            assert results[-1]["V"].shape == (10, steps)
        assert prefs.devices.cpp_standalone.openmp_threads == 0
    assert len(results[0]["i"]) > 0 and len(results[1]["i"]) > 0
    assert not np.array_equal(results[0]["V"], results[1]["V"][:, :steps])

    # the second build (2 threads) agrees with the runtime target
    start_scope()
    defaultclock.dt = 0.01 * ms
    prefs.codegen.target = "numpy"
    runtime = _results(*_simulate(n, spec, current, steps, 0.01, record=range(0, n, 20)))
    np.testing.assert_array_equal(results[1]["i"], runtime["i"])
    assert np.abs(results[1]["V"] - runtime["V"]).max() <= 1e-9


# ------------------------------------------------------- Brian2CUDA in a second env
@pytest.fixture(scope="module")
def cuda_env():
    """The Brian2CUDA environment of ``tests/environments.py`` (installed by ``install.sh``
    with ``HH_PLUGIN_TEST_ENVS=all``, never by the tests)."""
    import environments

    requirements, why_not = environments.cuda_requirements()
    if requirements is None:
        pytest.skip(why_not)
    python = environments.cuda_env_python(requirements)
    if python is None:
        pytest.skip(f"no Brian2CUDA environment at {environments.cuda_env_path()}: "
                    + environments.INSTALL_HINT.format("cuda"))
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "VIRTUAL_ENV")}
    environ["PYTHONPATH"] = str(ROOT)
    return python, environ


@pytest.mark.slow
def test_plugin_on_brian2_2_8_matches_reference(cuda_env):
    python, environ = cuda_env
    script = r"""
import numpy as np, brian2
from brian2 import ms, uA, mV, StateMonitor, SpikeMonitor, defaultclock, run, prefs
from hh_plugin import HHSpec
from hh_plugin.brian2 import neuron_group
assert brian2.__version__ == "2.8.0", brian2.__version__
prefs.codegen.target = "numpy"
data = np.load("tests/data/brainpy_hh_const_dt0.1_f64.npz")
steps, n = data["V"].shape
defaultclock.dt = 0.1 * ms
group = neuron_group(n, HHSpec(), current=data["I"][0] * uA, V_init=data["V0"])
group.m, group.h, group.n = data["m0"], data["h0"], data["n0"]
state = StateMonitor(group, "V", record=True, when="end")
spikes = SpikeMonitor(group)
run(steps * 0.1 * ms)
dV = np.abs(state.V.T / mV - data["V"]).max()
raster = np.zeros((steps, n))
raster[np.rint(np.asarray(spikes.t / ms) / 0.1).astype(int), np.asarray(spikes.i)] = 1
assert dV <= 1e-6, dV
assert np.array_equal(raster, data["spike"]) and raster.sum() > 0
print("brian2", brian2.__version__, "max |dV| =", dV)
"""
    proc = subprocess.run([str(python), "-c", script], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "brian2 2.8.0" in proc.stdout


@pytest.mark.slow
def test_cuda_standalone_example_generates_the_project_for_sm90(cuda_env, tmp_path):
    # nvcc compiles the plugin's code objects once per test run, on the network project of
    # tests/test_network_brian2.py (a superset of this group's: HH state update, threshold,
    # gate initialisation, plus synapses); compiling this project as well cost another
    # ~250 s of CPU time (issue 18).
    python, environ = cuda_env
    out = tmp_path / "result.json"
    project = tmp_path / "cuda_project"
    cmd = [str(python), str(ROOT / "examples" / "gpu_large_run.py"), "-N", "1000",
           "--duration", "1", "--generate-only", "--no-compile", "--compute-capability",
           "9.0", "--directory", str(project), "--json", str(out)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=environ, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cuda_standalone" and not result["compile_s"]
    makefile = (project / "makefile").read_text()
    assert "-arch=sm_90" in makefile and "-std=c++17" in makefile
    kernels = "".join(p.read_text() for p in (project / "code_objects").glob("*stateupdater*.cu"))
    assert "exp(" in kernels and "__global__" in kernels
