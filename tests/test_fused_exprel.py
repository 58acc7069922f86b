r"""The block-wise polynomial exprel of the fused sequence kernel's exponential-Euler
factors (:func:`hh_plugin.torch.fused.cpp_source.small_exprel_code`), float32 and float64:

* the polynomial against the kernel's ``hh_exprel`` and against :math:`(e^x - 1)/x` in
  40-digit arithmetic over its range :math:`[-1, 0]`, at the range's edges and just outside
  them (where the kernel must not use it);
* a block of lanes with one lane out of range takes the exact step for every lane: a
  neuron mid-spike (factor argument :math:`-G\,\Delta t/C \approx -1.4`) next to resting
  neurons gives the same result as alone, and the resting neurons the same as beside it in
  a block of their own, which differs from their fast-path result by round-off only.

The extension is the one the fused sequence tests build (compiled once, cached).
"""

import mpmath
import numpy as np
import pytest
import torch

from hh_plugin import HHSpec
from hh_plugin.model import HODGKIN_HUXLEY
from hh_plugin.torch.functional.parameters import as_parameters, initial_state
from hh_plugin.torch.fused import hh_sequence
from hh_plugin.torch.fused.cpp import compiler_available, load_extension, small_exprel_enabled
from hh_plugin.torch.fused.cpp_source import BLOCK_DOUBLE, BLOCK_FLOAT, SMALL_EXPREL_LOW

pytestmark = pytest.mark.skipif(compiler_available() is not None,
                                reason=f"no C++ toolchain: {compiler_available()}")

DTYPES = [torch.float32, torch.float64]


def _values(x):
    exact, small, outside = load_extension(HODGKIN_HUXLEY).hh_exprel_values(x.contiguous())
    return exact, small, outside.bool()


def _exprel_40_digits(x):
    with mpmath.workdps(40):
        return torch.tensor([float(mpmath.expm1(v) / v) if v else 1.0
                             for v in map(mpmath.mpf, x.double().tolist())],
                            dtype=torch.float64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_polynomial_agrees_with_exprel_over_its_range_and_at_its_edges(dtype):
    ulp = torch.finfo(dtype).eps  # 2^-23, 2^-52: one ulp of 1, two of values in [0.5, 1)
    lo = torch.tensor(SMALL_EXPREL_LOW, dtype=dtype)
    zero = torch.tensor(0.0, dtype=dtype)
    edges = torch.stack([lo, torch.nextafter(lo, zero), zero, -zero,
                         torch.nextafter(zero, lo), torch.tensor(-1e-30, dtype=dtype),
                         torch.tensor(-0.05, dtype=dtype)])
    x = torch.cat([torch.linspace(SMALL_EXPREL_LOW, 0.0, 4_001, dtype=dtype), edges])
    exact, small, outside = _values(x)
    assert not outside.any()
    truth = _exprel_40_digits(x)
    assert ((small.double() - truth) / truth).abs().max() < ulp  # within one ulp
    assert ((small - exact) / exact).abs().max() < 2 * ulp      # of the kernel's exprel
    assert small[x == 0].eq(1.0).all()
    # just outside: below the range and above 0
    beyond = torch.tensor([-3.0, 1e-6, 0.5, float("inf"), float("-inf")], dtype=dtype)
    beyond = torch.cat([beyond, torch.stack([torch.nextafter(lo, lo - 1), lo - 1e-3])])
    assert _values(beyond)[2].all()


def _run(V, m, h, n, dt, T=4):
    """T steps of neurons (V, m, h, n given) with no input, on the fused kernel."""
    p = as_parameters(HHSpec()).to(dtype=V.dtype)
    s0 = initial_state(p, V.shape, V=-65.0, dtype=V.dtype)._replace(V=V, m=m, h=h, n=n)
    with torch.no_grad():
        z, traj = hh_sequence(torch.zeros((T,) + V.shape, dtype=V.dtype), s0, p, dt,
                              record_states=True, path="fused_cpp")
    return torch.stack([z, traj.V, traj.m, traj.h, traj.n])


@pytest.mark.skipif(not small_exprel_enabled(), reason="HH_PLUGIN_EXACT_EXPREL is set")
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_block_with_one_lane_out_of_range_takes_the_exact_step(dtype):
    W = BLOCK_FLOAT if dtype == torch.float32 else BLOCK_DOUBLE  # lanes per block
    dt = 2.5e-5  # s: resting neurons' factor arguments within [-1, 0]
    rng = np.random.default_rng(7)
    k = W - 1  # resting neurons, away from their steady state (large gate increments)
    rest = [torch.tensor(rng.uniform(a, b, k), dtype=dtype)
            for a, b in ((-75, -55), (0.0, 0.3), (0.0, 1.0), (0.0, 0.6))]
    # mid-spike: G = gNa m^3 h + ... ~ 56 mS/cm^2, -G dt/C ~ -1.4 (out of range), for T steps
    spike = [torch.tensor([v], dtype=dtype) for v in (20.0, 0.95, 0.5, 0.6)]
    mixed = _run(*(torch.cat([s, r]) for s, r in zip(spike, rest)), dt)
    alone = _run(*spike, dt)
    assert torch.equal(mixed[:, :, :1], alone)
    # each resting neuron in a block with the spiking one (the exact step), one block each
    pairs = _run(*(torch.cat([s.expand(k, 1), r[:, None].expand(k, W - 1)], 1).reshape(-1)
                   for s, r in zip(spike, rest)), dt)
    exact_rest = pairs.reshape(5, -1, k, W)[:, :, :, 1]
    assert torch.equal(mixed[:, :, 1:], exact_rest)
    # the resting neurons in a block of their own take the polynomial: round-off apart
    fast_rest = _run(*rest, dt)
    assert not torch.equal(fast_rest, exact_rest), "the test cannot tell the two paths apart"
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(fast_rest, exact_rest, rtol=tol, atol=tol)
