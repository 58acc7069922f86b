"""The backend-independent network specification: validation, expansion, inputs, schedule."""

import numpy as np
import pytest

from hh_plugin import HHSpec
from hh_plugin.model import TRAUB_MILES
from hh_plugin.network import (CURRENT_PULSE, EXPONENTIAL_CONDUCTANCE, AllToAll, CurrentInput,
                               Dense, FixedProbability, NetworkSpec, Normal, OneToOne,
                               PoissonInput, Population, Projection, RandomDelay, Sparse,
                               SpikeTrains, Synapse, SynapseModel, SynapseParameter, Uniform,
                               current_pulse, exponential_conductance, exponential_current)

b2 = pytest.importorskip("brian2")

EXC = exponential_conductance("e", tau=5.0, E_rev=0.0)


def _pops(*sizes):
    return [Population(f"P{k}", n, HHSpec(), seed=k) for k, n in enumerate(sizes)]


# ------------------------------------------------------------------------ synapse models
def test_shipped_synapse_models_declare_unit_dynamics_and_entry():
    assert CURRENT_PULSE.is_pulse and not CURRENT_PULSE.is_conductance
    assert CURRENT_PULSE.unit == "uA"
    assert EXPONENTIAL_CONDUCTANCE.time_constant == "tau"
    assert EXPONENTIAL_CONDUCTANCE.reversal == "E_rev" and EXPONENTIAL_CONDUCTANCE.unit == "mS"
    syn = exponential_current("x", tau=2.0)
    assert (syn.variable, syn.unit, syn.time_constant, syn.reversal_potential) == \
        ("I_x", "uA", 2.0, None)
    assert EXC.variable == "g_e" and EXC.reversal_potential == 0.0


def test_synapse_parameters_accept_brian2_quantities_and_refuse_bad_values():
    syn = exponential_conductance("e", tau=5 * b2.ms, E_rev=-80 * b2.mV)
    assert syn.tau == pytest.approx(5.0) and syn.E_rev == pytest.approx(-80.0)
    with pytest.raises(TypeError, match="ms"):
        exponential_conductance("e", tau=5 * b2.mV, E_rev=0.0)
    with pytest.raises(ValueError, match="> 0"):
        exponential_current("x", tau=0.0)
    with pytest.raises(TypeError, match="needs parameter 'E_rev'"):
        Synapse(EXPONENTIAL_CONDUCTANCE, "e", tau=5.0)
    with pytest.raises(TypeError, match="unknown parameter"):
        Synapse(CURRENT_PULSE, "p", tau=1.0)
    with pytest.raises(ValueError, match="receptor name"):
        current_pulse("1bad")
    with pytest.raises(ValueError, match="NaN"):
        exponential_current("x", tau=float("nan"))


def test_a_synapse_model_declaration_is_checked():
    with pytest.raises(ValueError, match="needs a reversal"):
        SynapseModel("bad", "mS", (), None, None)
    with pytest.raises(ValueError, match="must be a parameter in ms"):
        SynapseModel("bad", "uA", (SynapseParameter("E", "mV", "x"),), "E", None)
    with pytest.raises(ValueError, match="conductance"):
        SynapseModel("bad", "uA", (SynapseParameter("E", "mV", "x"),), None, "E")


def test_synapse_roundtrip():
    assert Synapse.from_dict(EXC.to_dict()) == EXC
    with pytest.raises(ValueError, match="unknown synapse model"):
        Synapse.from_dict({"model": "nope", "receptor": "e"})


# ----------------------------------------------------------------------------- connectors
def test_fixed_probability_is_deterministic_and_has_the_right_density():
    rule = FixedProbability(0.1, weight=2e-3, seed=5)
    a = rule.expand(300, 200, "mS", 1, "p")
    b = FixedProbability(0.1, weight=2e-3, seed=5).expand(300, 200, "mS", 1, "p")
    c = FixedProbability(0.1, weight=2e-3, seed=6).expand(300, 200, "mS", 1, "p")
    np.testing.assert_array_equal(a.pre, b.pre)
    np.testing.assert_array_equal(a.post, b.post)
    assert not np.array_equal(a.pre, c.pre)
    assert abs(a.size / (300 * 200) - 0.1) < 0.01
    assert np.all(np.diff(a.pre) >= 0)  # ordered by source
    assert np.all(a.weight == 2e-3) and np.all(a.delay == 1)
    no_self = FixedProbability(0.5, 1.0, seed=1, autapses=False).expand(50, 50, "uA", 1, "p")
    assert not np.any(no_self.pre == no_self.post)


def test_connector_rules_and_weight_distributions():
    conn = AllToAll(1.0, autapses=False).expand(4, 4, "uA", 2, "p")
    assert conn.size == 12 and not np.any(conn.pre == conn.post)
    one = OneToOne(Uniform(0.0, 1.0, seed=3)).expand(5, 5, "uA", 0, "p")
    np.testing.assert_array_equal(one.pre, one.post)
    np.testing.assert_allclose(one.weight, np.random.default_rng(3).uniform(0, 1, 5))
    normal = OneToOne(Normal(1.0, 0.5, seed=4)).expand(1000, 1000, "uA", 0, "p")
    assert abs(normal.weight.mean() - 1.0) < 0.1
    delays = OneToOne(1.0).expand(100, 100, "uA", RandomDelay(1, 4, seed=9), "p").delay
    assert set(np.unique(delays)) == {1, 2, 3, 4}
    with pytest.raises(ValueError, match="equal sizes"):
        OneToOne(1.0).expand(3, 4, "uA", 0, "p")


def test_dense_layout_is_target_by_source():
    W = np.arange(6.0).reshape(2, 3)  # 2 targets, 3 sources (torch.nn.Linear.weight)
    conn = Dense(W).expand(3, 2, "uA", 0, "p")
    assert conn.dense and conn.size == 6
    for k in range(conn.size):
        assert conn.weight[k] == W[conn.post[k], conn.pre[k]]
    np.testing.assert_array_equal(conn.weight_matrix, W)
    with pytest.raises(ValueError, match=r"\(target size, source size\)"):
        Dense(W.T).expand(3, 2, "uA", 0, "p")


def test_sparse_checks_indices_weights_and_delays():
    with pytest.raises(ValueError, match="out of range"):
        Sparse([0, 5], [0, 1], 1.0).expand(3, 3, "uA", 1, "p")
    with pytest.raises(ValueError, match="negative"):
        Sparse([0, -1], [0, 1], 1.0).expand(3, 3, "uA", 1, "p")
    with pytest.raises(ValueError, match="expected 2 entries"):
        Sparse([0, 1], [0], 1.0).expand(3, 3, "uA", 1, "p")
    with pytest.raises(ValueError, match="shape"):
        Sparse([0, 1], [0, 1], [1.0, 2.0, 3.0]).expand(3, 3, "uA", 1, "p")
    with pytest.raises(ValueError, match="NaN"):
        Sparse([0, 1], [0, 1], [1.0, np.nan]).expand(3, 3, "uA", 1, "p")
    with pytest.raises(ValueError, match="negative"):
        Sparse([0, 1], [0, 1], 1.0).expand(3, 3, "uA", [1, -2], "p")
    with pytest.raises(TypeError, match="mS"):
        Sparse([0], [0], 1 * b2.uA).expand(3, 3, "mS", 1, "p")
    conn = Sparse([0], [0], 6 * b2.nS).expand(3, 3, "mS", 1, "p")
    assert conn.weight[0] == pytest.approx(6e-6)


# ------------------------------------------------------------------------------- inputs
def test_poisson_input_draw_is_reproducible_prefix_stable_and_has_the_rate():
    src = PoissonInput("P", 200, rate=50.0, seed=3)
    long = src.raster(4000, 0.1)
    short = src.raster(1000, 0.1)
    np.testing.assert_array_equal(long[:1000], short)
    rate = long.mean() / (0.1e-3)
    assert abs(rate - 50.0) < 3.0
    with pytest.raises(ValueError, match="more than one"):
        PoissonInput("P", 2, rate=2e4, seed=1).raster(10, 0.1)
    with pytest.raises(ValueError, match=">= 0"):
        PoissonInput("P", 2, rate=-1.0, seed=1)


def test_spike_trains_and_current_inputs():
    trains = SpikeTrains("S", 3, steps=[0, 2, 2], indices=[1, 0, 2])
    r = trains.raster(4, 0.1)
    assert r.sum() == 3 and r[0, 1] and r[2, 0] and r[2, 2]
    with pytest.raises(ValueError, match="twice"):
        SpikeTrains("S", 3, steps=[1, 1], indices=[0, 0])
    cur = CurrentInput("A", np.ones((5, 1)))
    assert cur.table(5, 3).shape == (5, 3)
    with pytest.raises(ValueError, match="cannot run 6"):
        cur.table(6, 3)
    with pytest.raises(ValueError, match="columns"):
        CurrentInput("A", np.ones(4)).check(3)
    assert CurrentInput("A", 2 * b2.uA).values == pytest.approx(2.0)
    with pytest.raises(TypeError, match="uA"):
        CurrentInput("A", 2 * b2.mV)


# ------------------------------------------------------------------------- the network
def test_network_validation_names_the_problem():
    pops = _pops(5, 5)
    with pytest.raises(ValueError, match="two populations"):
        NetworkSpec([pops[0], Population("P0", 3)])
    with pytest.raises(ValueError, match="not a population"):
        NetworkSpec(pops, [Projection("P0", "Q", AllToAll(1.0), EXC)])
    with pytest.raises(ValueError, match="spike sources cannot be targets"):
        NetworkSpec(pops, [Projection("P0", "S", AllToAll(1.0), EXC)],
                    [SpikeTrains("S", 2, [], [])])
    with pytest.raises(ValueError, match="neither a population"):
        NetworkSpec(pops, [Projection("X", "P0", AllToAll(1.0), EXC)])
    other = exponential_conductance("e", tau=3.0, E_rev=0.0)
    with pytest.raises(ValueError, match="two definitions"):
        NetworkSpec(pops, [Projection("P0", "P1", AllToAll(1.0), EXC),
                           Projection("P1", "P1", AllToAll(1.0), other)])
    with pytest.raises(ValueError, match="max_dt"):
        NetworkSpec(pops, dt=0.5)
    with pytest.raises(ValueError, match="unknown population"):
        NetworkSpec(pops, inputs=[CurrentInput("Z", 1.0)])
    bad_init = Population("A", 3, initial={"g_x": 1.0})
    with pytest.raises(ValueError, match="g_x"):
        NetworkSpec([bad_init])
    clash = current_pulse("Na")  # I_Na is fine, g_Na would clash
    NetworkSpec(pops, [Projection("P0", "P1", AllToAll(1.0), clash)])
    with pytest.raises(ValueError, match="clashes"):
        NetworkSpec(pops, [Projection("P0", "P1", AllToAll(1.0),
                                      exponential_conductance("Na", 1.0, 0.0))])


def test_zero_delay_loops_are_refused_and_order_puts_sources_first():
    pops = _pops(3, 3, 3)
    net = NetworkSpec(pops, [Projection("P2", "P0", AllToAll(1.0), current_pulse(), delay=0),
                             Projection("P0", "P1", AllToAll(1.0), current_pulse(), delay=0),
                             Projection("P1", "P2", AllToAll(1.0), current_pulse(), delay=1)])
    assert net.order == ("P2", "P0", "P1")
    with pytest.raises(ValueError, match="loop"):
        NetworkSpec(pops, [Projection("P0", "P1", AllToAll(1.0), current_pulse(), delay=0),
                           Projection("P1", "P0", AllToAll(1.0), current_pulse(),
                                      delay=[0] * 8 + [1])])
    with pytest.raises(ValueError, match="loop"):
        NetworkSpec(pops, [Projection("P0", "P0", AllToAll(1.0), current_pulse(), delay=0)])


def test_initial_state_defaults_and_explicit_values():
    pop = Population("A", 4, HHSpec(model=TRAUB_MILES), seed=3,
                     initial={"m": 0.0, "g_e": [1e-5, 2e-5, 3e-5, 4e-5]})
    net = NetworkSpec([pop, Population("B", 2)],
                      [Projection("B", "A", AllToAll(1e-6), EXC)])
    state = net.initial_state("A")
    assert set(state) == {"V", "m", "n", "h", "g_e"}
    assert np.all(state["m"] == 0.0) and state["g_e"][2] == pytest.approx(3e-5)
    np.testing.assert_array_equal(state["V"], Population("A", 4, HHSpec(model=TRAUB_MILES),
                                                         seed=3).neuron_state()["V"])
    assert np.all(net.initial_state("B")["V"] < -59)
    with pytest.raises(ValueError, match="shape"):
        Population("A", 4, initial={"V": [1.0, 2.0]})
    with pytest.raises(ValueError, match="V_reset"):
        Population("A", 4, HHSpec(V_reset=-70.0), refractory=2.0)
    assert Population("A", 1, refractory=3.0).refractory_steps(0.1) == 30
    assert Population("A", 1, refractory=0.25).refractory_steps(0.1) == 2


def test_projection_names_default_and_must_be_unique():
    pops = _pops(2, 2)
    net = NetworkSpec(pops, [Projection("P0", "P1", AllToAll(1e-3), EXC),
                             Projection("P0", "P1", AllToAll(1e-3), EXC)])
    assert [p.name for p in net.projections] == ["P0_to_P1_e", "P0_to_P1_e_2"]
    with pytest.raises(ValueError, match="two projections"):
        NetworkSpec(pops, [Projection("P0", "P1", AllToAll(1e-3), EXC, name="x"),
                           Projection("P1", "P0", AllToAll(1e-3), EXC, name="x")])


def test_network_to_dict_and_back_is_lossless():
    pops = [Population("A", 6, HHSpec(gL=np.linspace(0.01, 0.06, 6)), seed=1,
                       initial={"I_x": 0.5}),
            Population("B", 3, HHSpec(model=TRAUB_MILES), seed=2, refractory=2.0)]
    net = NetworkSpec(pops, [
        Projection("A", "B", FixedProbability(0.5, 1e-4, seed=3), EXC, delay=RandomDelay(0, 3, 4)),
        Projection("B", "A", Dense(np.ones((6, 3))), exponential_current("x", 2.0), delay=2),
        Projection("S", "A", OneToOne(2.0), current_pulse())],
        [CurrentInput("A", np.ones((10, 6))), PoissonInput("S", 6, 30.0, seed=5)], dt=0.05)
    again = NetworkSpec.from_dict(net.to_dict())
    assert again.dt == net.dt and again.order == net.order
    for proj in net.projections:
        a, b = net.connections[proj.name], again.connections[proj.name]
        for field in ("pre", "post", "weight", "delay"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert a.dense == b.dense
    for name in net.populations:
        for key, value in net.initial_state(name).items():
            np.testing.assert_array_equal(value, again.initial_state(name)[key])
    assert again.populations["B"].refractory == 2.0
    np.testing.assert_array_equal(again.sources["S"].raster(50, 0.05),
                                  net.sources["S"].raster(50, 0.05))
    with pytest.raises(ValueError, match="unknown key"):
        NetworkSpec.from_dict({**net.to_dict(), "extra": 1})
