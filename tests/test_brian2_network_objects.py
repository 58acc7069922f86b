"""build_network's objects behave like Brian2's own (issue 22, items 1, 2, 5, 6, 9):
the caller's names resolve in ``net.run``, Brian2's magic ``run()`` refuses them instead
of simulating part of the network or nothing, ``defaultclock`` is left alone, and a run
past the inputs built is refused."""

import numpy as np
import pytest

brian2 = pytest.importorskip("brian2")

from brian2 import (Network, NeuronGroup, Synapses, collect, defaultclock,  # noqa: E402
                    ms, msiemens, run, start_scope)

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.brian2.network import BrianNetwork, build_network  # noqa: E402
from hh_plugin.network import (CurrentInput, NetworkSpec, OneToOne,  # noqa: E402
                               Population, PoissonSource, Projection,
                               exponential_conductance)


def _spec(dt=0.025):
    """Poisson spikes into 5 resting HH neurons through an exponential conductance."""
    return NetworkSpec([Population("E", 5, HHSpec(), initial={"V": -65.0})],
                       [Projection("P", "E", OneToOne(0.5),
                                   exponential_conductance("e", 5.0, 0.0), delay=1)],
                       [PoissonSource("P", 5, 200.0, seed=1)], dt=dt)


def _caller_constant_synapses(net):
    """A user's Synapses (E to E) whose weight is a constant of the calling script."""
    syn = Synapses(net.groups["E"], net.groups["E"], on_pre="g_e_post += w_ext",
                   clock=net.clock)
    syn.connect(condition="i != j")
    net.network.add(syn)
    return syn


def _text(info):
    """The message of an error and of its causes (Brian2 wraps an error raised while
    preparing an object in a ``BrianObjectException`` that points to it). ``run()`` is
    called in the test's own frame: the magic network collects the objects there."""
    texts, exc = [], info.value
    while exc is not None:
        texts.append(str(exc))
        exc = exc.__cause__
    return "\n".join(texts)


# ----------------------------------------------------------------- 1: namespaces
def test_run_resolves_the_callers_names(numpy_target):
    start_scope()
    net = build_network(_spec(), steps=40)
    _caller_constant_synapses(net)
    w_ext = 0.1 * msiemens  # noqa: F841 - resolved by net.run in this frame
    net.run(20)
    assert net.steps_run == 20


def test_run_takes_level_and_namespace(numpy_target):
    start_scope()
    net = build_network(_spec(), steps=40)
    _caller_constant_synapses(net)

    def helper():
        net.run(10, level=1)  # the names are one frame up

    w_ext = 0.1 * msiemens  # noqa: F841
    helper()
    net.run(10, namespace={"w_ext": 0.1 * msiemens})
    del w_ext
    with pytest.raises(Exception, match="w_ext"):
        net.run(10)  # not in this frame: Brian2's unresolved-name error


def test_the_callers_names_do_not_clash_with_the_plugins(numpy_target):
    """A script's ``i``, ``w``, ``tau_e`` or ``N`` (names the plugin's objects use
    internally) change nothing and draw no resolution warning; a user's own object
    still gets Brian2's warning."""
    from brian2.utils.logger import catch_logs

    start_scope()
    spec_timed = NetworkSpec(  # a TimedArray current: its code uses the index i
        [Population("E", 3, HHSpec(), initial={"V": -65.0})],
        [Projection("P", "E", OneToOne(0.5), exponential_conductance("e", 5.0, 0.0),
                    delay=1)],
        [PoissonSource("P", 3, 200.0, seed=1), CurrentInput("E", np.full((40, 3), 2.0))],
        dt=0.025)
    reference = build_network(spec_timed, steps=40, name_prefix="ref_")
    reference.run(namespace={})
    net = build_network(spec_timed, steps=40)
    i, w, tau_e, N, I_ext_E = 3, 7.0, 1 * ms, 11, 2.0  # noqa: F841
    with catch_logs() as logs:
        net.run()
    np.testing.assert_array_equal(net.trace("E", "V"), reference.trace("E", "V"))
    assert not [entry for entry in logs if "resolution_conflict" in entry[1]]
    mine = NeuronGroup(2, "dv/dt = (i - v)/(10*ms) : 1", clock=net.clock)
    net2 = build_network(spec_timed, steps=40, name_prefix="b_")
    net2.network.add(mine)
    with catch_logs() as logs:
        net2.run()
    assert [entry for entry in logs if "resolution_conflict" in entry[1]]


# ------------------------------------------------------------------ 2: magic run
def test_magic_run_refuses_the_network_and_net_run_still_works(numpy_target):
    start_scope()
    net = build_network(_spec(), steps=40)
    with pytest.raises(Exception) as info:
        Network(collect()).run(1 * ms)
    assert "call net.run" in _text(info)
    with pytest.raises(Exception) as info:
        run(1 * ms)
    assert "call net.run" in _text(info)
    net.run()
    assert net.steps_run == 40
    assert net.spike_monitors["E"].num_spikes >= 0


def test_magic_run_refuses_a_group_held_alone(numpy_target):
    """``E = net.groups['E']`` then ``run()`` must not simulate E alone."""
    start_scope()
    E = build_network(_spec(), steps=40).groups["E"]
    before = np.array(E.V_[:])
    with pytest.raises(Exception) as info:
        run(1 * ms)
    assert "call net.run" in _text(info)
    np.testing.assert_array_equal(E.V_[:], before)


def test_magic_run_refusal_leaves_the_network_runnable(numpy_target):
    """A refused ``run()`` with a held group, then ``net.run`` as usual."""
    start_scope()
    net = build_network(_spec(), steps=40)
    E = net.groups["E"]  # noqa: F841
    mon = net.spike_monitors["E"]  # noqa: F841
    with pytest.raises(Exception) as info:
        run(1 * ms)
    assert "call net.run" in _text(info)
    net.run(20)
    net.run(20)
    assert float(net.network.t / ms) == pytest.approx(40 * 0.025)


def test_brian_network_is_a_brian_object(numpy_target):
    import gc

    from brian2.utils.logger import catch_logs

    start_scope()
    net = build_network(_spec(), steps=10)
    assert isinstance(net, BrianNetwork) and isinstance(net, brian2.BrianObject)
    assert net in collect()

    def build_and_run():
        build_network(_spec(), steps=10, name_prefix="gone_").run()

    with catch_logs() as logs:  # run through net.run, then deleted: no Brian2 warning
        build_and_run()
        gc.collect()
    assert not [entry for entry in logs if "unused_brian_object" in entry[1]]


# --------------------------------------------------------------- 5: defaultclock
def test_build_network_leaves_defaultclock_alone(numpy_target):
    start_scope()
    defaultclock.dt = 0.1 * ms
    net = build_network(_spec(dt=0.025), steps=40)
    assert defaultclock.dt == 0.1 * ms
    assert net.clock.dt == 0.025 * ms
    assert all(g.clock is net.clock for g in net.groups.values())
    own = NeuronGroup(1, "dv/dt = -v/(10*ms) : 1")
    assert own.clock.dt == 0.1 * ms
    net.run()
    assert float(net.network.t / ms) == pytest.approx(1.0)


# ------------------------------------------------------------ 6: past the input
def test_running_past_the_built_input_is_refused(numpy_target):
    start_scope()
    net = build_network(_spec(), steps=200)
    net.run(steps=100)
    net.run(steps=100)
    with pytest.raises(ValueError, match=r"built for 200 steps and it has run 200"):
        net.run(steps=100)
    assert net.steps_run == 200


def test_run_without_steps_runs_what_is_left(numpy_target):
    start_scope()
    net = build_network(_spec(), steps=60)
    net.run(steps=25)
    net.run()
    assert net.steps_run == 60


def test_restore_moves_the_count_back(numpy_target):
    start_scope()
    net = build_network(_spec(), steps=50)
    net.network.store()
    net.run(50)
    net.network.restore()
    assert net.steps_run == 0
    net.run(50)


def test_timed_currents_limit_the_run_length(numpy_target):
    start_scope()
    spec = NetworkSpec([Population("E", 2, HHSpec())],
                       [], [CurrentInput("E", np.full((30, 2), 5.0))], dt=0.025)
    net = build_network(spec)
    assert net.steps == 30
    net.run(30)
    with pytest.raises(ValueError, match="built for 30 steps"):
        net.run(1)


# --------------------------------------------------------------- 9: the schedule
def test_documented_schedule(numpy_target):
    """The slots docs/network.md (Delays and the step schedule; Adding your own objects)
    gives the objects."""
    start_scope()
    net = build_network(_spec(), steps=10)
    E = net.groups["E"]
    assert (E.state_updater.when, E.state_updater.order) == ("groups", 11)
    assert (E.thresholder["spike"].when, E.thresholder["spike"].order) == ("groups", 14)
    assert (net.spike_monitors["E"].when, net.spike_monitors["E"].order) == ("groups", 15)
    assert (net.sources["P"].when, net.sources["P"].order) == ("groups", 4)
    (copy,) = [o for o in E.contained_objects if o.name == "E_V_start"]
    assert copy.when == "before_groups"
    (projection,) = net.synapses.values()
    assert projection[0].pre.when == "synapses"
    assert net.state_monitors["E"]["neuron"].when == "end"


# ------------------------------------------------------------------ 8: the name
def test_poisson_source_is_the_spike_source_and_the_old_name_is_deprecated():
    from hh_plugin.network import PoissonInput

    with pytest.warns(DeprecationWarning, match="PoissonSource"):
        old = PoissonInput("P", 4, 100.0, seed=2)
    new = PoissonSource("P", 4, 100.0, seed=2)
    assert isinstance(old, PoissonSource)
    np.testing.assert_array_equal(old.raster(100, 0.1), new.raster(100, 0.1))
    assert old.to_dict().keys() == new.to_dict().keys()
    assert PoissonSource is not brian2.PoissonInput


def test_a_network_of_the_users_holding_all_of_it_runs_it(numpy_target):
    """``Network(*net.network.objects, mine)`` (one standalone project with objects of
    both, say) runs the whole network; one holding part of it is refused."""
    start_scope()
    reference = build_network(_spec(), steps=40, name_prefix="ref_")
    reference.run()
    net = build_network(_spec(), steps=40)
    mine = NeuronGroup(1, "dv/dt = -v/(10*ms) : 1")
    Network(*net.network.objects, mine).run(40 * 0.025 * ms)
    np.testing.assert_array_equal(net.trace("E", "V"), reference.trace("E", "V"))
    other = build_network(_spec(), steps=40, name_prefix="part_")
    with pytest.raises(Exception) as info:
        Network(other.groups["E"], NeuronGroup(1, "v : 1")).run(1 * ms)
    assert "call net.run" in _text(info)
