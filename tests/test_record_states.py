"""Recording chosen state variables: ``record_states=('V',)`` on the sequence modules (every
path), the network module's ``record`` names, and their errors (issue 26)."""

import numpy as np
import pytest
import torch

from hh_plugin import HHSpec
from hh_plugin.network import CurrentInput, NetworkSpec, Population
from hh_plugin.torch import HH, HHRecurrent
from hh_plugin.torch.fused.cpp import compiler_available
from hh_plugin.torch.network import NetworkModule

needs_compiler = pytest.mark.skipif(compiler_available() is not None,
                                    reason="no C++ compiler for the fused kernel")
PATHS = ["naive", pytest.param("fused_cpp", marks=needs_compiler),
         pytest.param("compiled", marks=pytest.mark.slow)]


def _input(T=1500, n=4):
    return torch.tensor([3.0, 7.0, 10.0, 20.0][:n], dtype=torch.float64).expand(T, n).clone()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("names", [("V",), ("n", "V"), "h"])
def test_recording_some_variables_gives_their_trajectories_and_none_for_the_rest(path, names):
    I = _input()
    # without gradients: with them (the initial V requires them, as in Norse), the
    # compiled path's graphs differ by their outputs and inductor rounds them differently
    with torch.no_grad():
        z_all, everything = HH(p=HHSpec(), dt=1e-5, V_init=-65.0, path=path,
                               record_states=True)(I)
        z, part = HH(p=HHSpec(), dt=1e-5, V_init=-65.0, path=path, record_states=names)(I)
    chosen = {names} if isinstance(names, str) else set(names)
    assert torch.equal(z, z_all) and z.sum() > 0
    for field in ("V", "m", "h", "n"):
        value = getattr(part, field)
        if field in chosen:
            assert value.shape == I.shape
            if path == "compiled":
                # inductor fuses each output set on its own, so the two graphs round
                # differently: 1.3e-12 mV apart after 1,500 steps with spikes was seen
                # (float64), round-off compounded by the spikes' sensitivity
                torch.testing.assert_close(value, getattr(everything, field),
                                           rtol=1e-12, atol=1e-10)
            else:
                assert torch.equal(value, getattr(everything, field))  # same path
        else:
            assert value is None


@needs_compiler
def test_gradient_through_a_recorded_voltage_equals_the_naive_paths():
    """The fused backward takes the recorded V's gradient (and none for the gates that
    were not recorded)."""
    grads = {}
    for path in ("naive", "fused_cpp"):
        x = _input(800).requires_grad_(True)
        z, states = HH(p=HHSpec(), dt=1e-5, V_init=-65.0, path=path, record_states=("V",))(x)
        (1e-3 * states.V.sum() + z.sum()).backward()
        grads[path] = x.grad
    assert grads["naive"].abs().max() > 0
    torch.testing.assert_close(grads["fused_cpp"], grads["naive"], rtol=1e-9, atol=1e-12)


def test_recurrent_module_records_chosen_variables():
    torch.manual_seed(0)
    x = torch.rand(200, 2, 3, dtype=torch.float64) * 20
    module = HHRecurrent(3, 4, dt=1e-5, V_init=-65.0, record_states=True)
    z_all, everything = module(x)
    module.record_states = ("V",)
    z, part = module(x)
    assert torch.equal(z, z_all)
    assert torch.equal(part.V, everything.V) and part.V.shape == (200, 2, 4)
    assert part.m is None and part.n is None and part.z is None
    assert torch.equal(everything.z, z_all)  # the flat state's spikes, stacked
    module.record_states = False
    assert module(x)[1].V.shape == (2, 4)


@pytest.mark.parametrize("bad, error, message", [
    (("V", "w"), ValueError, "unknown state variable 'w'; model 'hodgkin_huxley' has V, m, h, n"),
    (("v",), ValueError, "unknown state variable 'v'"),
    (3, TypeError, "record_states must be True, False or state variable names"),
    ((1,), TypeError, "names must be strings"),
])
def test_bad_record_names_are_refused_naming_the_problem(bad, error, message):
    with pytest.raises(error, match=message):
        HH(p=HHSpec(), record_states=bad)
    with pytest.raises(error, match=message):
        HHRecurrent(2, 3, record_states=bad)


@pytest.mark.parametrize("path", ["naive", pytest.param("fused", marks=needs_compiler)])
def test_network_module_records_only_the_names_given_and_refuses_unknown_ones(path):
    net = NetworkSpec([Population("P", 3, initial={"V": -65.0})], [],
                      [CurrentInput("P", np.array([0.0, 10.0, 20.0]))], dt=0.01)
    module = NetworkModule(net, dtype=torch.float64, path=path)
    with torch.no_grad():
        out = module(steps=300, record="V")
        both = module(steps=300, record=("V", "n"))
    assert set(out.traces["P"]) == {"V"} and out.traces["P"]["V"].shape == (300, 3)
    assert set(both.traces["P"]) == {"V", "n"}
    assert torch.equal(both.traces["P"]["V"], out.traces["P"]["V"])
    with pytest.raises(ValueError, match="record: unknown variable 'g_e'; the populations "
                                         "have V, m, h, n"):
        module(steps=10, record=("V", "g_e"))


@pytest.mark.parametrize("path", PATHS)
def test_return_final_continues_a_run_recorded_in_part(path):
    """hh_sequence(return_final=True) also gives the final state, all variables, so a run
    that records only V continues exactly where one long run goes."""
    from hh_plugin.torch.functional import as_parameters, initial_state
    from hh_plugin.torch.fused.sequence import hh_sequence

    p = as_parameters(HHSpec())
    I = _input(1200)
    s0 = initial_state(p, (4,), V=-65.0, dtype=torch.float64)
    z_long, V_long = hh_sequence(I, s0, p, 1e-5, path=path, record_states=("V",))
    z1, V1, final = hh_sequence(I[:700], s0, p, 1e-5, path=path, record_states=("V",),
                                return_final=True)
    assert all(t.shape == (4,) for t in final)
    z2, V2, _ = hh_sequence(I[700:], final, p, 1e-5, path=path, record_states="V",
                            return_final=True)
    assert torch.equal(torch.cat([z1, z2]), z_long) and z_long.sum() > 0
    torch.testing.assert_close(torch.cat([V1.V, V2.V]), V_long.V, rtol=0, atol=1e-12)
    _, final_only = hh_sequence(I[:700], s0, p, 1e-5, path=path)
    for a, b in zip(final, final_only):
        assert torch.equal(a, b)
