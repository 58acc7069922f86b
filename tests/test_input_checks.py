"""Issue 13, faults 10-11: no silent NaN, no meaningless dt.

- NaN/inf input currents are refused before the run by the sequence module (whole input)
  and by the cell on the CPU; 1e6 uA draws an ImplausibleInputWarning.
- A dt longer than the model's ``max_dt`` is refused by every entry point: torch cells,
  sequence module, step and sequence functions (dt in seconds), Brian2 groups at creation
  and at every run (runtime and standalone), and case files (``test_cli.py``).
"""

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from hh_plugin import HODGKIN_HUXLEY, HHSpec
from hh_plugin.model.limits import ImplausibleInputWarning, StepTooLong
from hh_plugin.torch import HH, HHCell, HHParameters
from hh_plugin.torch.functional.hh import hh_step
from hh_plugin.torch.functional.parameters import initial_state

MAX_DT_S = HODGKIN_HUXLEY.max_dt * 1e-3


# ------------------------------------------------------------------ fault 10: non-finite
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("path", ["naive", "auto"])
def test_sequence_module_refuses_non_finite_input_before_the_run(bad, path):
    current = torch.full((50, 2, 3), 10.0, dtype=torch.float64)
    current[31, 1, 2] = bad
    module = HH(p=HHSpec(), dt=1e-5, V_init="default", seed=0, path=path)
    with pytest.raises(ValueError, match=r"NaN or infinite values \(first at index "
                                         r"\(31, 1, 2\)\)"):
        module(current)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_cell_refuses_non_finite_input_on_the_cpu(bad):
    cell = HHCell(p=HHSpec(), dt=1e-5, V_init="default", seed=0)
    z, state = cell(torch.full((2, 3), 10.0))
    current = torch.full((2, 3), 10.0)
    current[0, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        cell(current, state)


def test_checks_pass_gradients_and_finite_inputs_through():
    current = torch.full((30, 4), 10.0, dtype=torch.float64, requires_grad=True)
    z, state = HH(p=HHSpec(), dt=1e-5, V_init="default", seed=0)(current)
    state.V.sum().backward()
    assert torch.isfinite(current.grad).all() and current.grad.abs().sum() > 0


@pytest.mark.parametrize("make", [
    lambda I: HH(p=HHSpec(), dt=1e-5, V_init="default", seed=0)(I.expand(20, -1)),
    lambda I: HHCell(p=HHSpec(), dt=1e-5, V_init="default", seed=0)(I),
])
def test_implausible_current_draws_a_warning(make):
    # 1e6 uA gave V = 27,680 mV without a word
    with pytest.warns(ImplausibleInputWarning, match=r"1e\+06 uA .* currents are in uA"):
        make(torch.tensor([10.0, 1e6], dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImplausibleInputWarning)
        make(torch.tensor([10.0, 100.0], dtype=torch.float64))  # strong but plausible


def test_implausible_current_scales_with_capacitance():
    p = HHSpec(C=np.array([1.0, 100.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImplausibleInputWarning)
        HH(p=p, dt=1e-5)(torch.tensor([[5.0, 5e5]], dtype=torch.float64).expand(5, -1))
    with pytest.warns(ImplausibleInputWarning):
        HH(p=p, dt=1e-5)(torch.tensor([[5e5, 5.0]], dtype=torch.float64).expand(5, -1))


# ------------------------------------------------------------------ fault 11: dt
@pytest.mark.parametrize("dt", [1e-3, 1e-2, 2e-4])
@pytest.mark.parametrize("module", [HH, HHCell])
def test_torch_modules_refuse_a_step_beyond_max_dt(module, dt):
    # dt of 1 or 10 ms was accepted
    with pytest.raises(StepTooLong, match=r"longer than 0.1 ms, the longest step for which "
                                          r"model 'hodgkin_huxley' is accurate"):
        module(p=HHSpec(), dt=dt)
    module(p=HHSpec(), dt=MAX_DT_S)  # the bound itself is allowed


def test_torch_functions_and_changed_dt_are_checked():
    p = HHParameters.from_spec(HHSpec())
    state = initial_state(p, (3,), seed=0)
    current = torch.full((3,), 10.0, dtype=torch.float64)
    with pytest.raises(StepTooLong, match="dt is in seconds"):
        hh_step(current, state, p, dt=1e-3)
    from hh_plugin.torch.fused.sequence import hh_sequence

    for path in ("naive", "auto"):
        with pytest.raises(StepTooLong):
            hh_sequence(current.expand(4, -1), state, p, dt=1e-3, path=path)
    cell = HHCell(p=HHSpec(), dt=1e-5)
    cell.dt = 1e-3  # changed after construction
    with pytest.raises(StepTooLong):
        cell(current)
    module = HH(p=HHSpec(), dt=1e-5)
    module.dt = 1e-3
    with pytest.raises(StepTooLong):
        module(current.expand(4, -1))


def test_bound_keeps_spike_counts_of_a_fine_step():
    """The measurement behind max_dt: 10 uA for 200 ms gives the same spike count at
    dt = max_dt as at a 20 times finer step; 10 times the bound loses spikes."""
    def spikes(dt_s):
        steps = int(round(0.2 / dt_s))
        module = HH(p=HHSpec(), dt=dt_s, V_init=-65.0)
        with torch.no_grad():
            z, _ = module(torch.full((steps, 1), 10.0, dtype=torch.float64))
        return int(z.sum())

    fine = spikes(MAX_DT_S / 20)
    assert fine == 14
    assert spikes(MAX_DT_S) == fine
    # beyond the bound: the same model with a looser max_dt, on the step loop
    coarse = dataclasses.replace(HODGKIN_HUXLEY, name="hh_coarse_step_test",
                                 max_dt=HODGKIN_HUXLEY.max_dt * 10)
    module = HH(p=HHSpec(model=coarse), dt=coarse.max_dt * 1e-3, V_init=-65.0, path="naive")
    with torch.no_grad():
        z, _ = module(torch.full((200, 1), 10.0, dtype=torch.float64))
    assert int(z.sum()) < fine


brian2 = pytest.importorskip("brian2")


def test_brian2_group_refuses_a_step_beyond_max_dt():
    from brian2 import ms, uA

    from hh_plugin.brian2 import neuron_group

    with pytest.raises(StepTooLong, match="longer than 0.1 ms"):
        neuron_group(3, HHSpec(), dt=1 * ms)
    group = neuron_group(3, HHSpec(), current=10 * uA, dt=0.01 * ms)
    group.clock.dt = 10 * ms  # changed before the run
    net = brian2.Network(group)
    with pytest.raises(brian2.core.base.BrianObjectException) as info:
        net.run(20 * ms)
    assert isinstance(info.value.__cause__, StepTooLong)
    group.clock.dt = 0.1 * ms
    net.run(1 * ms)  # the bound itself is allowed


def test_brian2_default_clock_and_standalone_runs_are_checked(tmp_path):
    from brian2 import ms, uA

    from hh_plugin.brian2 import neuron_group, use_device

    old = brian2.defaultclock.dt
    try:
        brian2.defaultclock.dt = 1 * ms
        with pytest.raises(StepTooLong):
            neuron_group(3, HHSpec(), current=10 * uA)
        with use_device("cpp_standalone", directory=str(tmp_path / "sa"),
                        build_on_run=False):
            brian2.defaultclock.dt = 0.05 * ms
            group = neuron_group(3, HHSpec(), current=10 * uA)
            brian2.defaultclock.dt = 0.5 * ms
            with pytest.raises(brian2.core.base.BrianObjectException) as info:
                brian2.Network(group).run(1 * ms)
            assert isinstance(info.value.__cause__, StepTooLong)
    finally:
        brian2.defaultclock.dt = old


def test_brian2_constant_current_checks():
    from hh_plugin.brian2 import neuron_group

    with pytest.raises(ValueError, match="NaN or infinite"):
        neuron_group(2, HHSpec(), current=[10.0, float("nan")])
    # plain numbers of an implausible size are refused with a units hint (issue 10) ...
    with pytest.raises(ValueError, match="plain numbers are in uA"):
        neuron_group(2, HHSpec(), current=[10.0, 1e6])
    # ... a quantity of that size is taken, with a warning
    with pytest.warns(ImplausibleInputWarning):
        neuron_group(2, HHSpec(), current=np.array([10.0, 1e6]) * brian2.uA)
