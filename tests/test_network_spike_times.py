"""Issue 19: network files carry each spike's time inside its step (format 1.2), and
``hh-plugin crosscheck --spike-atol`` compares them population by population.

A small network of RK4 populations runs on torch and Brian2 (numpy target), float64; the
spike times stored from each run agree to round-off, lie inside their steps, equal what
:func:`hh_plugin.torch.spike_times` reports for the same run, and a file without the new
fields is still written as 1.1. A crafted 1.2 file whose times leave their steps, or a 1.1
file that claims times, is refused.
"""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hh_plugin import HHSpec
from hh_plugin.export import FormatError, load_network, save_network, write_checksum
from hh_plugin.export.network_run import run_network
from hh_plugin.model import WANG_BUZSAKI
from hh_plugin.network import (CurrentInput, FixedProbability, NetworkSpec, Population,
                               Projection, exponential_conductance)

ROOT = Path(__file__).resolve().parents[1]
STEPS = 600  # 15 ms at dt = 0.025 ms


def _spec(method="rk4"):
    exc = exponential_conductance("e", tau=2.0, E_rev=0.0)
    return NetworkSpec(
        [Population("HH", 12, HHSpec(method=method), seed=1),
         Population("WB", 6, HHSpec(model=WANG_BUZSAKI, method=method), seed=2)],
        [Projection("HH", "WB", FixedProbability(0.3, 0.02, seed=3), exc, delay=2)],
        [CurrentInput("HH", np.linspace(6.0, 14.0, 12)), CurrentInput("WB", 1.0)],
        dt=0.025)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    pytest.importorskip("brian2")
    folder = tmp_path_factory.mktemp("net_times")
    spec = _spec()
    paths = {}
    for backend in ("torch", "brian2"):
        results = run_network(spec, backend, STEPS, record=("V",))
        paths[backend] = save_network(folder / f"{backend}.h5", spec, results,
                                      backend=backend)
    return spec, paths


def test_runs_that_record_V_store_spike_times_in_format_1_2(files):
    spec, paths = files
    for backend, path in paths.items():
        record = load_network(path)
        assert record.version == "1.2"
        with h5py.File(path, "r") as f:
            assert f.attrs["format_version"] == "1.2"
        for pop in spec.populations:
            k, _ = record.spikes[pop]
            times = record.spike_times[pop]
            assert len(k) > 0 and times.shape == k.shape, (backend, pop)
            inside = (times >= k * spec.dt) & (times <= (k + 1) * spec.dt)
            assert inside.all()
            # sub-step resolution: not merely the step's start or end
            assert np.mean((times > k * spec.dt) & (times < (k + 1) * spec.dt)) > 0.9


def test_torch_and_brian2_spike_times_agree_to_round_off(files):
    spec, paths = files
    a, b = load_network(paths["torch"]), load_network(paths["brian2"])
    for pop in spec.populations:
        assert np.array_equal(a.spikes[pop][0], b.spikes[pop][0])
        assert np.array_equal(a.spikes[pop][1], b.spikes[pop][1])
        np.testing.assert_allclose(a.spike_times[pop], b.spike_times[pop], rtol=0,
                                   atol=1e-9)


def test_stored_times_are_those_the_torch_backend_reports(files):
    from hh_plugin.torch import spike_times as torch_spike_times
    from hh_plugin.torch.network import NetworkModule

    spec, paths = files
    record = load_network(paths["torch"])
    with torch.no_grad():
        out = NetworkModule(spec, dtype=torch.float64)(steps=STEPS, record=("V",))
    pop = "HH"
    V0 = torch.tensor(spec.initial_state(pop)["V"])
    index, times = torch_spike_times(out.spikes[pop], out.traces[pop]["V"], V0,
                                     spec.populations[pop].spec, spec.dt * 1e-3)
    assert np.array_equal(index[:, 0], record.spikes[pop][0])
    np.testing.assert_allclose(times, record.spike_times[pop], rtol=0, atol=1e-12)


def test_a_file_without_times_or_methods_stays_1_1(tmp_path):
    spec = _spec(method="exponential_euler")
    results = run_network(spec, "torch", 40, record=())
    path = save_network(tmp_path / "plain.h5", spec, results, backend="torch")
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == "1.1"
    record = load_network(path)
    assert record.spike_times == {} and record.version == "1.1"
    # an RK4 population alone makes it 1.2 (a 1.1 reader must not run it with another method)
    path = save_network(tmp_path / "rk4.h5", _spec(), None)
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == "1.2"


def _rewrite(path, edit):
    with h5py.File(path, "r+") as f:
        meta = json.loads(f.attrs["metadata"])
        edit(meta, f)
        f.attrs["metadata"] = json.dumps(meta)
        f.attrs["format_version"] = meta["format_version"]
    write_checksum(path)


def _times_dataset(meta):
    return "arrays/" + meta["results"]["populations"]["HH"]["spike_times"]["$array"]


def test_crafted_spike_times_are_refused(files, tmp_path):
    _, paths = files
    source = Path(paths["torch"]).read_bytes()

    def crafted(name, edit):
        path = tmp_path / name
        path.write_bytes(source)
        _rewrite(path, edit)
        return path

    def outside(meta, f):
        data = f[_times_dataset(meta)][()]
        data[0] += 1.0  # 40 steps later than its step
        f[_times_dataset(meta)][...] = data

    with pytest.raises(FormatError, match="outside its step"):
        load_network(crafted("outside.h5", outside))

    def nan(meta, f):
        data = f[_times_dataset(meta)][()]
        data[1] = np.nan
        f[_times_dataset(meta)][...] = data

    with pytest.raises(FormatError, match="NaN"):
        load_network(crafted("nan.h5", nan))

    def old_version(meta, f):
        meta["format_version"] = "1.1"

    # relabelled 1.1: its RK4 populations and its spike times are refused, each naming 1.2
    with pytest.raises(FormatError, match=r"method 'rk4' needs format 1\.2, the file says 1\.1"):
        load_network(crafted("old.h5", old_version))

    def old_version_euler(meta, f):
        meta["format_version"] = "1.1"
        for pop in meta["network"]["populations"]:
            pop["spec"].pop("method", None)

    with pytest.raises(FormatError, match="spike_times need format 1.2"):
        load_network(crafted("old_euler.h5", old_version_euler))


def _crosscheck(a, b, *extra):
    return subprocess.run([sys.executable, "-m", "hh_plugin.cli", "crosscheck", str(a),
                           str(b), *extra], capture_output=True, text=True, cwd=ROOT,
                          stdin=subprocess.DEVNULL, timeout=600)


def test_crosscheck_compares_network_spike_times(files, tmp_path):
    _, paths = files
    done = _crosscheck(paths["torch"], paths["brian2"], "--spike-atol", "1e-6")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "times within 1e-06 ms" in done.stdout
    assert "max |dt spike| (ms)" in done.stdout

    # one spike moved by 0.01 ms inside its step: fails at 0.001 ms, passes at 0.02 ms
    moved = tmp_path / "moved.h5"
    moved.write_bytes(Path(paths["brian2"]).read_bytes())

    def shift(meta, f):
        where = _times_dataset(meta)
        data = f[where][()]
        k = f["arrays/" + meta["results"]["populations"]["HH"]["spike_steps"]["$array"]][()]
        dt = meta["network"]["dt"]
        start = k[0] * dt
        data[0] = start + dt / 2 if abs(data[0] - (start + dt / 2)) > 0.01 else start + 0.1 * dt
        f[where][...] = data

    _rewrite(moved, shift)
    fail = _crosscheck(paths["torch"], moved, "--spike-atol", "0.001")
    assert fail.returncode == 1, fail.stdout + fail.stderr
    assert "spike times over 0.001 ms" in fail.stdout
    ok = _crosscheck(paths["torch"], moved, "--spike-atol", "0.03")
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_spike_atol_needs_times_in_both_files(files, tmp_path):
    spec, paths = files
    results = run_network(spec, "torch", STEPS, record=())
    untimed = save_network(tmp_path / "untimed.h5", spec, results, backend="torch")
    done = _crosscheck(paths["torch"], untimed, "--spike-atol", "0.01")
    assert done.returncode == 2
    assert "no spike times for HH, WB" in done.stderr
