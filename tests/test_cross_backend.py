"""The two backends agree with each other on a heterogeneous 1,000-neuron population."""

import numpy as np
import pytest
import torch

from hh_plugin import HHSpec
from hh_plugin.torch import HH, initial_state

b2 = pytest.importorskip("brian2")
from hh_plugin.brian2 import neuron_group  # noqa: E402

N, STEPS, DT_MS = 1000, 2000, 0.01


def _case(seed=0):
    rng = np.random.default_rng(seed)
    # piecewise-constant random input, changed every 1 ms, 0-25 uA, per neuron
    blocks = rng.uniform(0.0, 25.0, size=(STEPS // 100, N))
    current = np.repeat(blocks, 100, axis=0)
    spec = HHSpec(gL=rng.uniform(0.01, 0.1, N), ENa=rng.uniform(45.0, 55.0, N),
                  V_reset=None)
    return spec, current


def _run_brian2(spec, current, target):
    b2.start_scope()
    old = b2.prefs.codegen.target
    b2.prefs.codegen.target = target
    try:
        stim = b2.TimedArray(current * b2.uA, dt=DT_MS * b2.ms)
        group = neuron_group(N, spec, current="stim(t, i)", V_init="uniform", seed=11,
                             dt=DT_MS * b2.ms, namespace={"stim": stim})
        mon = b2.StateMonitor(group, ["V", "m", "h", "n"], record=True, when="end")
        spikes = b2.SpikeMonitor(group)
        b2.run(STEPS * DT_MS * b2.ms)
    finally:
        b2.prefs.codegen.target = old
    raster = np.zeros((STEPS, N))
    steps = np.round(np.asarray(spikes.t / b2.ms) / DT_MS).astype(int)
    raster[steps, np.asarray(spikes.i)] = 1
    return {"V": mon.V.T / b2.mV, "m": mon.m.T, "h": mon.h.T, "n": mon.n.T, "spike": raster}


def _run_torch(spec, current):
    module = HH(p=spec, dt=DT_MS * 1e-3, record_states=True)
    s0 = initial_state(module.p, (N,), V="uniform", seed=11, dtype=torch.float64)
    with torch.no_grad():
        z, states = module(torch.tensor(current), s0)
    return {"V": states.V.numpy(), "m": states.m.numpy(), "h": states.h.numpy(),
            "n": states.n.numpy(), "spike": z.numpy()}


def test_torch_and_brian2_agree_on_random_heterogeneous_population():
    spec, current = _case()
    a = _run_torch(spec, current)
    b = _run_brian2(spec, current, "numpy")
    assert a["spike"].sum() > 1000  # a real spiking case
    np.testing.assert_array_equal(a["spike"], b["spike"])
    assert np.abs(a["V"] - b["V"]).max() <= 1e-6
    for gate in "mhn":
        assert np.abs(a[gate] - b[gate]).max() <= 1e-9
