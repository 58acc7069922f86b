"""Issue 11: the network module trains under DistributedDataParallel, and the kernel cache
is safe when several processes start at once.

- Two CPU processes started by ``torchrun`` (gloo backend), each on half of the global
  batch, give the gradients and the updated weights of one process on the whole batch,
  to round-off in float64 (``examples/ddp_network.py``).
- Processes that build the same fused kernels at once into a fresh cache all succeed and
  agree, and only one of them compiles each kernel (the others wait for it and load it).
- The network kernel's build follows the cell kernels' lock (``hh_plugin.torch.fused.cpp``):
  a build killed mid-way does not block later runs, and a wait for another build times out
  into the naive path. These builds are simulated (a stand-in for ``load_inline`` that
  guards itself with torch's own lock file, as in ``test_kernel_lock.py``).
"""

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from hh_plugin.torch.fused.cpp import compiler_available

from test_kernel_lock import FAKE_BUILD, _wait_for  # the simulated kernel build

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ddp_network.py"

needs_compiler = pytest.mark.skipif(compiler_available() is not None,
                                    reason="the fused path needs a C++ compiler and ninja")


def _env(**extra):
    env = {**os.environ, **extra,
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # one thread per process: the workers share the cores
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _run_launcher(cmd, cwd, timeout=600):
    """Run ``cmd`` (a torchrun launch); if it outlives ``timeout`` s, make every process of
    its tree print its Python stack (faulthandler, on SIGABRT) and fail with those stacks,
    so that a hang names the line it hangs on."""
    proc = subprocess.Popen(cmd, env=_env(PYTHONFAULTHANDLER="1"), cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in _descendants(proc.pid) + [proc.pid]:
            try:
                os.kill(pid, signal.SIGABRT)
                time.sleep(0.5)  # one stack after another, not interleaved
            except ProcessLookupError:
                pass
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        pytest.fail(f"{' '.join(cmd[:6])} ... still ran after {timeout} s; the stacks of its "
                    f"processes:\n{out[-3000:]}\n{err[-12000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _descendants(pid):
    """Process ids below ``pid`` (from /proc), children first."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found[::-1]


def _load_example():
    spec = importlib.util.spec_from_file_location("ddp_network", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_close(a, b, what):
    assert a.shape == b.shape, what
    if a.numel() == 0:
        return
    scale = max(float(a.abs().max()), 1e-300)
    err = float((a - b).abs().max())
    assert err <= 1e-12 * scale, f"{what}: max |difference| {err:.3e} (scale {scale:.3e})"


@pytest.mark.skipif(not torch.distributed.is_available() or
                    not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_two_torchrun_processes_give_the_gradients_of_one(tmp_path):
    dump = tmp_path / "ddp.pt"
    args = ["--quick", "--dtype", "float64", "--dump", str(dump)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node=2", str(EXAMPLE), *args]
    done = _run_launcher(cmd, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    ddp = torch.load(dump)
    assert ddp["world_size"] == 2

    single = _load_example().main(args[:-2])
    assert single["world_size"] == 1
    assert set(ddp["first_grads"]) == set(single["first_grads"]) == {
        "projections.In_to_H_in.weight", "projections.H_to_H_rec.weight"}
    for name, grad in single["first_grads"].items():
        assert float(grad.abs().max()) > 0, f"{name}: no gradient, the test would be void"
        _assert_close(grad, ddp["first_grads"][name], f"gradient of {name}")
    for name, weight in single["weights"].items():
        _assert_close(weight, ddp["weights"][name], f"trained {name}")
    assert ddp["losses"] == pytest.approx(single["losses"], rel=1e-12)


# Projections that deliver nothing in a run: one without synapses, one whose delay is longer
# than the run. DistributedDataParallel needs a gradient of every parameter in every
# backward pass ("Expected to have finished reduction in the prior iteration" otherwise).
IDLE_WORKER = textwrap.dedent("""
    import gc, os, sys, torch
    import torch.distributed as dist
    from hh_plugin import HHSpec
    from hh_plugin.network import (AllToAll, FixedProbability, NetworkSpec, OneToOne,
                                   PoissonInput, Population, Projection, current_pulse,
                                   exponential_conductance, exponential_current)
    from hh_plugin.torch.network import NetworkModule

    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = 0
    spec = NetworkSpec(
        [Population("H", 5, HHSpec(), initial={"V": -65.0})],
        [Projection("P", "H", AllToAll(1.5), exponential_current("in", 2.0), delay=1),
         Projection("H", "H", FixedProbability(0.0, 0.01, seed=1),
                    exponential_conductance("rec", 5.0, 0.0), delay=2),
         Projection("P", "H", OneToOne(1.0), current_pulse("late"), delay=500)],
        [PoissonInput("P", 5, 200.0, seed=2)], dt=0.025)
    module = NetworkModule(spec, dtype=torch.float64)
    model = module
    if world > 1:
        dist.init_process_group("gloo")
        rank = dist.get_rank()
        model = torch.nn.parallel.DistributedDataParallel(module)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    currents = torch.linspace(4.0, 12.0, 4, dtype=torch.float64)[:, None].expand(4, 5)
    share = 4 // world
    local = currents[rank * share:(rank + 1) * share].expand(400, share, 5)
    for _ in range(3):
        out = model({"H": local})
        loss = ((out.spikes["H"].sum(0) - 2.0) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if rank == 0:
        torch.save({n: p.detach() for n, p in module.named_parameters()}, sys.argv[1])
    if world > 1:  # as in examples/ddp_network.py: DDP released, then the group, together
        del model
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
""")


@pytest.mark.skipif(not torch.distributed.is_available() or
                    not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_projections_that_deliver_nothing_do_not_stop_ddp(tmp_path):
    script = tmp_path / "idle.py"
    script.write_text(IDLE_WORKER)
    runs = {}
    for label, launcher in (("ddp", [sys.executable, "-m", "torch.distributed.run",
                                     "--standalone", "--nproc_per_node=2"]),
                            ("single", [sys.executable])):
        out = tmp_path / f"{label}.pt"
        done = _run_launcher([*launcher, str(script), str(out)], tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
        runs[label] = torch.load(out)
    assert runs["ddp"]["projections.H_to_H_rec.weight"].numel() == 0
    trained = runs["single"]["projections.P_to_H_in.weight"]
    assert not torch.all(trained == 1.5), "the used projection did not train: a void test"
    for name, weight in runs["single"].items():
        _assert_close(weight, runs["ddp"][name], f"trained {name}")


CONCURRENT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, sys.argv[1])
    import ddp_network
    from hh_plugin.torch.network import NetworkModule

    torch.set_num_threads(1)
    module = NetworkModule(ddp_network.build_spec(), dtype=torch.float64, path="fused")
    with torch.no_grad():
        net = module(steps=400, record=("V",))
    print("NETWORK", int(net.spikes["H"].sum()), float(net.traces["H"]["V"].sum()))
""")


@pytest.mark.slow
@needs_compiler
def test_processes_building_the_same_kernels_at_once_all_succeed_and_agree(tmp_path):
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(EXAMPLE.parent)],
                              env=_env(HH_PLUGIN_CACHE_DIR=str(cache)), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL)
             for _ in range(3)]
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=900)
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for rc, out, err in results:
        assert rc == 0, err[-5000:]
    outputs = {tuple(line for line in out.splitlines() if line.startswith("NETWORK"))
               for _, out, _ in results}
    assert len(outputs) == 1, outputs
    (lines,) = outputs
    assert len(lines) == 1 and int(lines[0].split()[1]) > 0
    stderr = "".join(err for _, _, err in results)
    # one process compiled the kernel; the others waited for it, then loaded its build (the
    # cell kernels are built by the same function, hh_plugin.torch.fused.cpp.cached_build)
    assert stderr.count("compiling the fused network kernel") == 1, stderr[-5000:]
    assert len(list(cache.rglob("hh_network_*.so"))) == 1
    assert not list(cache.rglob("lock")), "torch's build lock file was left behind"


# --------------------------------------------------------------- simulated network builds
STAND_IN = FAKE_BUILD + textwrap.dedent("""
    from hh_plugin.network import CurrentInput, NetworkSpec, Population
    from hh_plugin.torch.network import NetworkModule
    spec = NetworkSpec([Population("A", 3, initial={"V": -65.0})], [], [CurrentInput("A", 10.0)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            out = NetworkModule(spec, dtype=torch.float64)(steps=2000)
    print("RESULT", int(out.spikes["A"].sum()), flush=True)
    for w in caught:
        print("WARNING", str(w.message).replace(chr(10), " "), flush=True)
""")


def _start(cache, seconds, **extra):
    return subprocess.Popen([sys.executable, "-c", STAND_IN, str(seconds)],
                            env=_env(HH_PLUGIN_CACHE_DIR=str(cache), **extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def _run(cache, seconds, timeout=120, **extra):
    return subprocess.run([sys.executable, "-c", STAND_IN, str(seconds)],
                          env=_env(HH_PLUGIN_CACHE_DIR=str(cache), **extra),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@needs_compiler
def test_network_build_killed_mid_way_does_not_block_later_runs(tmp_path):
    # without the flock the later run waited forever on torch's stale lock file
    first = _start(tmp_path, 600)
    try:
        _wait_for(first, "BUILDING")
    finally:
        first.kill()
        first.wait()
    assert list(tmp_path.rglob("lock")), "the killed build should have left torch's lock"
    later = _run(tmp_path, 0.1, timeout=600)
    assert later.returncode == 0, later.stderr[-3000:]
    assert "BUILDING" in later.stdout  # built itself, did not wait for the dead process
    warning = [line for line in later.stdout.splitlines() if line.startswith("WARNING")]
    assert any("falling back to the naive path" in w for w in warning), later.stdout


@needs_compiler
def test_waiting_for_a_live_network_build_times_out_into_the_naive_path(tmp_path):
    import torch as _torch

    from hh_plugin.network import CurrentInput, NetworkSpec, Population
    from hh_plugin.torch.network import NetworkModule

    first = _start(tmp_path, 3600)
    try:
        _wait_for(first, "BUILDING")
        later = _run(tmp_path, 0.1, timeout=600, HH_PLUGIN_BUILD_TIMEOUT="2")
        holding = first.poll() is None  # the first still builds: the later one gave up
    finally:
        first.kill()
        first.wait()
    assert later.returncode == 0, later.stderr[-3000:]
    assert holding and "BUILDING" not in later.stdout
    assert "waiting for another process" in later.stderr
    warning = [line for line in later.stdout.splitlines() if line.startswith("WARNING")]
    assert any("more than 2 s" in w and "falling back" in w for w in warning), later.stdout
    spec = NetworkSpec([Population("A", 3, initial={"V": -65.0})], [], [CurrentInput("A", 10.0)])
    with _torch.no_grad():
        expected = NetworkModule(spec, dtype=_torch.float64, path="naive")(steps=2000)
    assert f"RESULT {int(expected.spikes['A'].sum())}" in later.stdout
