"""NEURON backend, distributed: the same network with 1 and 2 MPI processes (and threads)
gives identical spikes, from Python and from ``hh-plugin run --backend neuron``; the
command line's results cross-check against torch within a spike tolerance.

The MPI tests need an MPI library NEURON can load and ``mpiexec`` (``pip install mpich``,
which ``install.sh`` does); without them they are skipped and say what is missing."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hh_plugin.neuron import Integration, mpi

import neuron_support
from test_neuron_network import feed_forward

mechanisms = neuron_support.mechanisms  # the session fixture

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
STEPS = 1500

needs_mpi = pytest.mark.skipif(mpi.missing() is not None,
                               reason=f"MPI runs: {mpi.missing()}")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    return env


def _mpirun(args, n=2, timeout=300):
    command = [mpi.mpiexec(), "-n", str(n), *args]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from hh_plugin.neuron import Integration, run_network
    from test_neuron_network import feed_forward

    method, threads, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    integration = Integration.fixed(order=2) if method == "fixed" else Integration.cvode(1e-8)
    spec = feed_forward(steps={steps})
    run = run_network(spec, {steps}, integration=integration, threads=threads)
    if run.is_root:
        np.savez(out, nhost=run.nhost, **{{f"{{p}}_t": run.spikes[p][0] for p in run.spikes}},
                 **{{f"{{p}}_i": run.spikes[p][1] for p in run.spikes}})
""").format(steps=STEPS)


def test_mpi_status_is_reported():
    """Where MPI is missing, the sentence names what to install."""
    what = mpi.missing()
    assert what is None or "pip install mpich" in what
    if not mpi.launched_by_mpi():  # pytest itself is not an MPI rank (no srun pytest)
        assert mpi.launcher_rank() == 0


@needs_mpi
@pytest.mark.parametrize("method", ["fixed", "cvode"])
def test_two_processes_give_the_spikes_of_one(mechanisms, tmp_path, method):
    from hh_plugin.neuron import run_network

    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    _mpirun([sys.executable, str(script), method, "2" if method == "fixed" else "1",
             str(tmp_path / "two.npz")])
    two = np.load(tmp_path / "two.npz")
    assert int(two["nhost"]) == 2
    integration = Integration.fixed(order=2) if method == "fixed" else Integration.cvode(1e-8)
    one = run_network(feed_forward(steps=STEPS), STEPS, integration=integration)
    for pop, (times, index) in one.spikes.items():
        assert len(times) > 0
        np.testing.assert_array_equal(two[f"{pop}_i"], index)
        if method == "fixed":  # bit-identical: the same steps on every rank
            np.testing.assert_array_equal(two[f"{pop}_t"], times)
        else:  # each rank's CVODE chooses its own steps: equal within the tolerance
            assert np.abs(two[f"{pop}_t"] - times).max() < 1e-4


def _cli(args, mpirun=False):
    base = [sys.executable, "-m", "hh_plugin.cli", *args]
    if mpirun:
        return _mpirun(base)
    done = subprocess.run(base, env=_env(), capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    return done


@pytest.fixture(scope="module")
def network_file(tmp_path_factory):
    from hh_plugin.export import save_network

    path = tmp_path_factory.mktemp("neuron_cli") / "net.h5"
    save_network(path, feed_forward(steps=1000))
    return path


def test_cli_runs_a_network_file_and_crosschecks_with_torch(mechanisms, network_file,
                                                            tmp_path):
    from hh_plugin.export import load_network

    ran = _cli(["run", "--backend", "neuron", "--atol", "1e-8", str(network_file),
                "-o", str(tmp_path / "neuron.h5")])
    assert ran.returncode == 0, ran.stderr
    assert "network on neuron, 1000 steps" in ran.stdout
    record = load_network(tmp_path / "neuron.h5")
    assert record.backend == "neuron" and record.steps == 1000
    assert "V" in record.traces["A"]
    ran = _cli(["run", "--backend", "torch", "--dtype", "float64", str(network_file),
                "-o", str(tmp_path / "torch.h5")])
    assert ran.returncode == 0, ran.stderr
    assert record.version == "1.2" and len(record.spike_times["A"]) == \
        len(record.spikes["A"][0])
    # continuous time against the step schedule: not step for step, but within 0.05 ms
    # (V, compared where a population's spikes fall in the same steps, differs by a few
    # mV on the flanks of the spikes)
    check = _cli(["crosscheck", str(tmp_path / "torch.h5"), str(tmp_path / "neuron.h5"),
                  "--spike-atol", "0.05", "--atol-V", "10"])
    assert check.returncode == 0, check.stdout + check.stderr
    assert "the same spikes per neuron, times within 0.05 ms" in check.stdout
    exact = _cli(["crosscheck", str(tmp_path / "torch.h5"), str(tmp_path / "neuron.h5")])
    assert exact.returncode == 1  # and they are not identical step for step
    wrong = _cli(["run", "--backend", "neuron", "--dtype", "float32", str(network_file),
                  "-o", str(tmp_path / "x.h5")])
    assert wrong.returncode == 2 and "--dtype does not apply to --backend neuron" in \
        wrong.stderr
    wrong = _cli(["run", "--backend", "torch", "--threads", "2", str(network_file),
                  "-o", str(tmp_path / "x.h5")])
    assert wrong.returncode == 2 and "--threads applies to --backend neuron" in wrong.stderr


@needs_mpi
def test_cli_under_mpirun_writes_what_one_process_writes(mechanisms, network_file, tmp_path):
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    ran = _cli(["run", "--backend", "neuron", "--integration", "fixed", str(network_file),
                "-o", str(one)])
    assert ran.returncode == 0, ran.stderr
    _cli(["run", "--backend", "neuron", "--integration", "fixed", "--threads", "2",
          str(network_file), "-o", str(two)], mpirun=True)
    check = _cli(["crosscheck", str(one), str(two), "--atol-V", "0"])
    assert check.returncode == 0, check.stdout + check.stderr
    assert "identical spikes" in check.stdout
    from hh_plugin.export import load_network

    assert load_network(two).provenance["processes"] == "2"


@needs_mpi
def test_three_processes_give_the_spikes_of_one(mechanisms, tmp_path):
    """K = 3 with the fixed step: bit-identical to one process."""
    from hh_plugin.neuron import run_network

    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    _mpirun([sys.executable, str(script), "fixed", "1", str(tmp_path / "three.npz")], n=3)
    three = np.load(tmp_path / "three.npz")
    assert int(three["nhost"]) == 3
    one = run_network(feed_forward(steps=STEPS), STEPS, integration=Integration.fixed(order=2))
    for pop, (times, index) in one.spikes.items():
        np.testing.assert_array_equal(three[f"{pop}_i"], index)
        np.testing.assert_array_equal(three[f"{pop}_t"], times)


@needs_mpi
def test_a_rank_that_exits_first_does_not_take_the_others_down(tmp_path):
    """Rank 0 leaves while ranks 1 and 2 are still tearing down: every rank finalises MPI
    at exit, so MPICH's launcher does not kill the late ones (signal 9, intermittently
    with 3 processes, every time in this arrangement before the fix)."""
    script = tmp_path / "late_teardown.py"
    script.write_text(textwrap.dedent(f"""
        import atexit, time
        def tear_down_slowly():  # registered first: runs after the plugin's exit handler
            if rank != 0:
                time.sleep(2)
                open({str(tmp_path)!r} + f"/late.{{rank}}", "w").write("done")
        atexit.register(tear_down_slowly)
        from hh_plugin.neuron.mpi import parallel_context
        rank = int(parallel_context().id())
    """))
    _mpirun([sys.executable, str(script)], n=3)
    assert sorted(p.name for p in tmp_path.glob("late.*")) == ["late.1", "late.2"]


@needs_mpi
def test_rank_zero_may_work_on_after_the_others_are_done(tmp_path):
    """Every rank waits for the others at exit: rank 0 finishes writing (a rank that ended
    first used to take the job down with it)."""
    script = tmp_path / "late.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from hh_plugin.neuron.mpi import parallel_context
        pc = parallel_context()
        assert int(pc.nhost()) == 2
        if int(pc.id()) == 0:
            time.sleep(2)
            open({str(tmp_path / "late.txt")!r}, "w").write("written")
    """))
    _mpirun([sys.executable, str(script)])
    assert (tmp_path / "late.txt").read_text() == "written"


@needs_mpi
def test_cobahh_example_runs_under_mpiexec_with_its_rasters(tmp_path):
    """``mpiexec -n 2 python examples/neuron_cobahh.py``, at a size CI can afford: NEURON on
    2 processes, Brian2 on rank 0, both rasters in one figure."""
    figure = tmp_path / "rasters.png"
    done = _mpirun([sys.executable, str(ROOT / "examples" / "neuron_cobahh.py"),
                    "--n-exc", "40", "--n-inh", "10", "--p", "0.2", "--duration", "20",
                    "--target", "numpy", "--output", str(figure)])
    assert "NEURON (CVODE (atol 1e-06, rtol 0), 2 processes)" in done.stdout
    assert "Brian2 (numpy)" in done.stdout and "first spike differing" in done.stdout
    assert figure.stat().st_size > 10_000 and figure.read_bytes()[:4] == b"\x89PNG"
