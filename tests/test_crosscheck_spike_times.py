"""Spike times inside the step in the cross-check (issue 19): both backends' runs of a case
agree on them to round-off, a shifted crossing is caught by ``--spike-atol``, and the
times are those the torch backend reports."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hh_plugin import HHSpec
from hh_plugin.export import HHRecord
from hh_plugin.export.case import make_case
from hh_plugin.export.crosscheck import compare, spike_times
from hh_plugin.export.report import table
from hh_plugin.export.runner import run_case

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs():
    case = make_case(6, duration=6.0, dt=0.025, seed=3, mean=(8.0, 30.0), noise=2.0,
                     spec=HHSpec(method="rk4"))
    return case, run_case(case, "torch"), run_case(case, "brian2")


def test_both_backends_agree_on_spike_times_inside_the_step(runs):
    _, a, b = runs
    result = compare(a, b, spike_atol=1e-9)
    assert result.passed, table(result)
    assert int(result.spikes_a.sum()) > 0
    assert np.nanmax(result.max_time_shift) <= 1e-9
    assert "spike times (linear interpolation inside the step)" in table(result)


def test_a_moved_crossing_fails_the_spike_time_tolerance_only(runs):
    _, a, b = runs
    V = b.traces["V"].copy()
    rows, neurons = np.nonzero(b.traces["spikes"].reshape(len(V), -1))
    row, j = rows[0], neurons[0]
    assert row > 0
    V.reshape(len(V), -1)[row - 1, j] -= 0.5  # V before the spiking step: a later crossing
    moved = HHRecord(spec=b.spec, dt=b.dt, state=b.state, time=b.time, input=b.input,
                     input_t_start=b.input_t_start, traces={**b.traces, "V": V},
                     provenance=b.provenance)
    assert compare(a, moved, atol_V=1.0).passed  # same spike steps, |dV| within 1 mV
    result = compare(a, moved, atol_V=1.0, spike_atol=1e-5)
    assert result.failed[j] and not result.passed
    assert result.max_time_shift[j] > 1e-5


def test_spike_times_are_those_the_torch_backend_reports(runs):
    from hh_plugin.torch import spike_times as torch_spike_times

    case, a, _ = runs
    steps = len(a.traces["time"])
    z = torch.as_tensor(a.traces["spikes"].reshape(steps, -1).astype(np.float64))
    V = torch.as_tensor(a.traces["V"].reshape(steps, -1))
    V0 = torch.as_tensor(case.state["V"].reshape(-1))
    index, times = torch_spike_times(z, V, V0, a.spec, a.dt * 1e-3,
                                     t0=float(a.traces["time"][0]) - a.dt)
    index, times = np.asarray(index), np.asarray(times)
    for j, ours in enumerate(spike_times(a)):
        theirs = times[index[:, 1] == j]
        steps_j = index[index[:, 1] == j, 0]
        later = steps_j > 0  # row 0: the traces do not hold V before it (placed at its end)
        np.testing.assert_allclose(ours[later], theirs[later], rtol=0, atol=1e-12)


def test_command_line_option(runs, tmp_path):
    _, a, b = runs
    a.save(tmp_path / "a.h5")
    b.save(tmp_path / "b.h5")
    proc = subprocess.run([sys.executable, "-m", "hh_plugin.cli", "crosscheck",
                           str(tmp_path / "a.h5"), str(tmp_path / "b.h5"), "--spike-atol",
                           "0.001"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "spike times inside the step within 0.001 ms" in proc.stdout
    assert "all within 0.001 ms" in proc.stdout
