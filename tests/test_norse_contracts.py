r"""Norse's module contracts, checked for the HH modules.

Norse 1.1.0 tests its own neuron modules in ``norse/torch/module/test/`` (``test_lif.py``,
``test_snn.py``, ``test_sequential.py``, ``test_lift.py``), ``norse/torch/test/``
(``test_norse.py``, ``test_onnx.py``) and ``norse/torch/utils/test/test_nir_export.py``.
Each section below restates, for ``HHCell``/``HH``/``HHRecurrentCell``/``HHRecurrent``,
the contracts those files check for the LIF modules: shapes of spikes and states,
stepping with a returned state, gradients through repeated application, recurrent
weights and autapses, ``repr``, ``SequentialState`` (state lists, hooks, mixing with
``torch.nn.RNN``), ``Lift``, ``torch.compile``, boolean and sparse inputs, parameters
given as plain numbers, ONNX export and NIR export.

Where a contract cannot hold for a Hodgkin-Huxley neuron, the test says so and checks
what does hold instead:

* **A spike takes about 1 ms.** Norse's LIF tests expect spikes (or non-zero gradients)
  after one or two steps of random input. An HH membrane needs about 1 ms of
  suprathreshold current to fire, i.e. 10 steps of ``dt = 1e-4`` s (0.1 ms) or 100 of the
  default ``1e-5`` s. The tests that need spikes therefore drive the HH modules with
  enough steps and current (``DRIVE``), and the two-step backward tests only check that
  backpropagation through repeated application runs and yields finite gradients.
* **The surrogate passes gradients only for 0 < V < 40 mV.** The ReLU surrogate
  :math:`\alpha\max(0, 1 - |V - V_{th}|/V_{th})` with :math:`V_{th} = 20` mV is zero
  outside that window, so a neuron that never comes near threshold passes no gradient
  (Norse's LIF surrogates are non-zero everywhere). Tests that ask for a non-zero
  gradient (weights change under Adam, a gradient reaches the input) use a drive that
  makes the neurons fire.
* ``.int()`` of parameters or states is refused (a ``TypeError`` that says why): every
  HH field is real-valued (gates in [0, 1], ``gL = 0.03`` mS) and Norse's ``int()`` would
  silently truncate it.
* With a sparse input, Norse's LIF recurrent cells also keep the state's spikes ``z``
  sparse; the HH recurrent modules return sparse spikes but keep ``state.z`` dense (the
  next step multiplies it with dense weights anyway).
* ``norse.torch.to_nir`` cannot describe an HH layer (NIR has no Hodgkin-Huxley node),
  so instead of Norse's "the node has the right NIR type" the test checks the clear error
  that names what to use (``hh_plugin.export.save``), and that a model without HH layers
  still exports after it.

Norse's tests of its containers alone (``RecurrentSequential`` of ``Linear`` layers,
registering a state hook twice) involve no neuron module and are not repeated. The CUDA
variants are skipped without a GPU, as in Norse.
"""

from __future__ import annotations

import platform
import warnings

import pytest
import torch

norse = pytest.importorskip("norse.torch")

from hh_plugin import HHSpec  # noqa: E402
from hh_plugin.torch import (HH, HHCell, HHParameters, HHRecurrent, HHRecurrentCell,  # noqa: E402
                             HHRecurrentState, HHState, initial_state)

warnings.filterwarnings("ignore", category=DeprecationWarning)

DT = 1e-4        # 0.1 ms: a spike within about 10 steps under DRIVE
DRIVE = 30.0     # uA: a strong suprathreshold current (rheobase is about 2.3 uA)

needs_compile = pytest.mark.skipif(platform.system() == "Windows",
                                   reason="torch.compile is not supported on Windows")


def _fired(spikes: torch.Tensor) -> bool:
    return bool(spikes.sum() > 0)


# ------------------------------------------------------------------------ test_norse.py
def test_modules_and_parameters_construct_with_defaults():
    import hh_plugin.torch as hh_torch

    assert isinstance(hh_torch.HHCell(), torch.nn.Module)
    p = HHParameters()
    assert float(p.V_th) == 20.0 and p.spk_reset == "soft"


# -------------------------------------------------------------------------- test_lif.py
def test_cell_feedforward_shapes():
    out, s = HHCell()(torch.randn(5, 2))
    assert out.shape == (5, 2)
    for x in s:
        assert x.shape == (5, 2)


def test_recurrent_cell_shapes():
    out, s = HHRecurrentCell(2, 4)(torch.randn(5, 2))
    assert out.shape == (5, 4)
    assert s._fields == ("V", "m", "h", "n", "z")  # flat, as Norse's LIFState (z, v, i)
    for x in s:
        assert x.shape == (5, 4)


def _one_recurrent_step(autapses: bool, z0):
    torch.manual_seed(0)
    cell = HHRecurrentCell(2, 2, autapses=autapses, dt=DT)
    with torch.no_grad():
        cell.recurrent_weights.copy_(torch.full((2, 2), 5.0)
                                     * (torch.ones(2, 2) if autapses else 1 - torch.eye(2)))
    neuron = initial_state(cell.p, (1, 2), V=-65.0)
    _, s = cell(torch.zeros(1, 2), HHRecurrentState(*neuron, z0))
    return cell, s


def test_recurrent_cell_autapses():
    # Norse compares the synaptic current ``i`` of its LIF state, through which a recurrent
    # spike arrives; the HH state has no synaptic current (the input current enters the
    # membrane equation directly), so the spike shows in V within the step
    cell, full = _one_recurrent_step(True, torch.ones(1, 2))
    assert cell.recurrent_weights.diagonal().abs().sum() > 0
    _, part = _one_recurrent_step(True, torch.tensor([[0.0, 1.0]]))
    # neuron 0's own spike reaches it only through the autapse
    assert full.V[0, 0] != part.V[0, 0]


def test_recurrent_cell_no_autapses():
    # as above: V where Norse compares its synaptic current i
    cell, full = _one_recurrent_step(False, torch.ones(1, 2))
    assert (cell.recurrent_weights.diagonal() == 0).all()
    _, part = _one_recurrent_step(False, torch.tensor([[0.0, 1.0]]))
    assert full.V[0, 0] == part.V[0, 0]


def test_layer_in_time_shapes():
    out, s = HH()(torch.randn(10, 5, 4))
    assert out.shape == (10, 5, 4)
    for x in s:
        assert x.shape == (5, 4)


def test_recurrent_layers_chain():
    z = torch.ones(10, 1, 8)
    z, s1 = HHRecurrent(8, 6)(z)
    z, s2 = HHRecurrent(6, 4)(z)
    z, s3 = HHRecurrent(4, 1)(z)
    assert s1.V.shape == (1, 6) and s2.V.shape == (1, 4)
    assert s3.V.shape == (1, 1) and z.shape == (10, 1, 1)


def _finite_grads(*tensors):
    return all(t.grad is not None and torch.isfinite(t.grad).all() for t in tensors)


def test_cell_backward_through_repeated_application():
    # Norse's contract: the outputs and state of one call feed the next, and the loss of
    # the second call backpropagates through both. (Two steps are too short for an HH
    # spike, so this checks that it runs and stays finite; see the next test.)
    data = torch.randn(5, 4, requires_grad=True)
    cell = HHCell()
    out, s = cell(data)
    out, _ = cell(out, s)
    (out.sum() + s.V.sum()).backward()
    assert _finite_grads(data)


def test_cell_gradient_reaches_the_input_once_neurons_fire():
    # the HH exception above: gradients need a membrane within 0 < V < 40 mV
    data = torch.full((2, 3), DRIVE, requires_grad=True)
    cell = HHCell(dt=DT, V_init=-65.0)
    state, total = None, 0.0
    for _ in range(30):
        z, state = cell(data, state)
        total = total + z.sum()
    assert total.item() > 0
    total.backward()
    assert data.grad.abs().sum() > 0


def test_recurrent_cell_backward_through_repeated_application():
    data = torch.randn(5, 4, requires_grad=True)
    cell = HHRecurrentCell(4, 4)
    out, s = cell(data)
    out, _ = cell(out, s)
    (out.sum() + s.V.sum()).backward()
    assert _finite_grads(data, cell.input_weights)


@pytest.mark.parametrize("module", [HH, lambda: HHRecurrent(6, 6)], ids=["HH", "HHRecurrent"])
def test_layer_backward_and_backward_iteration(module):
    model = module()
    data = torch.ones(10, 6, requires_grad=True)
    out, s = model(data)
    out2, _ = model(out, s)                 # spikes and state of one call feed the next
    (out.sum() + out2.sum() + s.V.sum()).backward()
    assert _finite_grads(data)


def test_network_keeping_states_between_calls():
    class Network(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l0, self.l1 = HH(dt=DT), HH(dt=DT)
            self.s0 = self.s1 = None

        def forward(self, x):
            z, self.s0 = self.l0(x, self.s0)
            _, self.s1 = self.l1(z * DRIVE, self.s1)
            return self.s1.V.squeeze()

    data = torch.full((30, 12), DRIVE, requires_grad=True)
    model = Network()
    model(data).sum().backward()
    assert data.grad.abs().sum() > 0
    model.s0, model.s1 = model.s0.detach(), model.s1.detach()   # truncated BPTT
    model(data).sum().backward()


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_boolean_and_sparse_inputs(sparse):
    # Norse's test_lif_datatype: boolean (optionally sparse) inputs; float32 states (a gate
    # where Norse checks its synaptic current i, which the HH state does not have); spikes
    # as sparse as the input
    spikes = torch.zeros(1, 2, dtype=torch.bool)
    if sparse:
        spikes = spikes.to_sparse()
    for module in (HHCell, HH):
        z, s = module()(spikes)
        assert s.V.dtype == torch.float32 and s.m.dtype == torch.float32
        assert z.is_sparse is sparse
    current = spikes.float()
    z, s = HHRecurrentCell(2, 1)(current)
    assert s.V.dtype == torch.float32 and z.is_sparse is sparse
    z, s = HHRecurrent(2, 1)(current.unsqueeze(1))
    assert s.V.dtype == torch.float32 and z.is_sparse is sparse


def test_sparse_input_gives_the_dense_result():
    dense = torch.zeros(40, 2, 3)
    dense[:, 0, 1] = DRIVE
    z_dense, s_dense = HH(dt=DT, V_init=-65.0)(dense)
    z_sparse, s_sparse = HH(dt=DT, V_init=-65.0)(dense.to_sparse())
    assert _fired(z_dense)
    torch.testing.assert_close(z_sparse.to_dense(), z_dense)
    torch.testing.assert_close(s_sparse.V, s_dense.V)
    # booleans are currents of 0/1 uA
    z_bool, _ = HH(dt=DT, V_init=-65.0)(dense > 0)
    z_float, _ = HH(dt=DT, V_init=-65.0)((dense > 0).float())
    torch.testing.assert_close(z_bool, z_float)


def test_parameters_given_as_plain_numbers():
    p = HHParameters(ENa=50, gNa=120, EK=-77, gK=36, EL=-54.387, gL=0.3, V_th=20, C=1,
                     alpha=0.3, width=1.0)
    HHCell(p=p)(torch.ones(2, 3))
    HH(p=p)(torch.ones(2, 3))
    z, _ = HH(p=p, dt=DT)(torch.full((40, 3), DRIVE))
    assert _fired(z)


# -------------------------------------------------------------------------- test_snn.py
@pytest.mark.parametrize("module", [HHRecurrentCell, HHRecurrent])
def test_recurrent_weights_are_taken(module):
    w_in, w_rec = torch.randn(3, 2), torch.randn(3, 3) * (1 - torch.eye(3))
    n = module(2, 3, input_weights=w_in, recurrent_weights=w_rec)
    assert torch.equal(n.input_weights, w_in) and torch.equal(n.recurrent_weights, w_rec)


def test_no_autapses_survive_training():
    # Norse: with autapses=False the diagonal of the recurrent weights stays zero under
    # Adam while the rest learns. (HH: enough steps and drive for spikes and gradients.)
    torch.manual_seed(1)
    n = HHRecurrentCell(2, 3, dt=DT, input_weights=torch.full((3, 2), DRIVE / 2),
                        recurrent_weights=torch.nn.Parameter(torch.ones(3, 3)))
    assert (n.recurrent_weights.diagonal() == 0).all()
    optimizer = torch.optim.Adam(n.parameters())
    spikes, s = [], None
    for _ in range(40):
        z, s = n(torch.ones(2), s)
        spikes.append(z)
    spikes = torch.stack(spikes)
    assert _fired(spikes)
    optimizer.zero_grad()
    spikes.sum().backward()
    optimizer.step()
    w = n.recurrent_weights.detach().clone()
    assert (w.diagonal() == 0).all()
    w.fill_diagonal_(1.0)
    assert not torch.equal(w, torch.ones(3, 3))


def test_repr_follows_norse():
    p = HHParameters()
    assert str(HHCell(p=p)) == f"HHCell(p={p}, dt=1e-05)"
    assert str(HH(p=p, dt=DT)) == f"HH(p={p}, dt={DT})"
    assert str(HHRecurrentCell(1, 2, p=p)) == (
        f"HHRecurrentCell(input_size=1, hidden_size=2, p={p}, autapses=False, dt=1e-05)")
    assert str(HHRecurrent(1, 2, p=p)) == (
        f"HHRecurrent(input_size=1, hidden_size=2, p={p}, autapses=False, dt=1e-05)")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_module_follows_its_input_to_the_gpu():
    cell = HHCell().cuda()
    z, s = cell(torch.full((2, 3), 10.0, device="cuda"))
    assert z.device.type == "cuda" and s.V.device.type == "cuda"


# ------------------------------------------------------------------- test_sequential.py
def test_sequential_state_with_recurrent_layers():
    z, s = norse.SequentialState(HHRecurrent(20, 6))(torch.ones(10, 1, 20))
    assert z.shape == (10, 1, 6) and s[0].V.shape == (1, 6)
    z, s = norse.SequentialState(HHRecurrent(20, 6), HHRecurrent(6, 2))(
        torch.ones(10, 1, 20), [None, None])
    assert z.shape == (10, 1, 2) and s[1].V.shape == (1, 2)


def test_sequential_state_without_and_with_state():
    d = torch.ones(10, 1, 1)
    m = norse.SequentialState(torch.nn.Linear(1, 1), HHCell())
    m(d)
    m.forward(d, None)
    # Norse passes one-element (0-d) states, here integers, and the cell broadcasts them
    s = [None, HHState(torch.tensor(-65), torch.tensor(0), torch.tensor(1), torch.tensor(0))]
    z, (_, s1) = m(d, s)
    assert s1.V.shape == (10, 1, 1) and s1.V.dtype == s1.m.dtype == torch.float32


def test_sequential_state_mixes_with_norse_and_torch_layers():
    d = torch.ones(10, 3, 20)
    state = [None, torch.randn(2, 3, 4), None]
    z, (s1, s2, s3) = norse.SequentialState(
        HHRecurrent(20, 10), torch.nn.RNN(10, 4, 2), norse.LSNNRecurrent(4, 1))(d, state)
    assert z.shape == (10, 3, 1) and s1.V.shape == (3, 10)
    assert s2.shape == (2, 3, 4) and s3.v.shape == (3, 1)


def test_sequential_state_with_lifted_convolution():
    model = norse.SequentialState(
        norse.Lift(torch.nn.Conv2d(1, 8, 3)),     # (1, 2, 8, 2, 2)
        torch.nn.Flatten(2),                     # (1, 2, 32)
        HHRecurrent(32, 6),
        torch.nn.RNN(6, 4, 2),
        HHRecurrent(4, 1),
    )
    z, _ = model(torch.ones(1, 2, 1, 4, 4))
    assert z.shape == (1, 2, 1)


def test_backpropagation_through_time_in_sequential_state():
    torch.manual_seed(0)
    model = norse.SequentialState(
        HHRecurrent(1, 2, dt=DT, input_weights=torch.nn.Parameter(torch.full((2, 1), DRIVE))),
        HHRecurrent(2, 3, dt=DT, input_weights=torch.nn.Parameter(torch.full((3, 2), 10 * DRIVE))),
        torch.nn.Flatten(),
        norse.Lift(torch.nn.Linear(3, 1)),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    state, total = None, 0.0
    for x in torch.ones(3, 10, 1, 1):             # chunks of 10 steps, state carried
        out, state = model(x, state)
        total = total + out.sum()
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(total, torch.tensor(1.0)).backward()
    grads = [w.grad for w in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model[1].input_weights.grad.abs().sum() > 0   # the layer that fires into the readout
    optimizer.step()


def test_forward_state_hooks_see_every_hh_layer():
    model = norse.SequentialState(
        torch.nn.Linear(1, 10, bias=False),
        HHRecurrent(10, 10), HH(), HH(), HH(),
    )
    spikes, states = [], []

    def hook(module, inputs, output):
        spikes.append(inputs[0])
        states.append(inputs[1])

    model.register_forward_state_hooks(hook)
    data = torch.ones(10, 2, 8, 1)
    _, s = model(data)
    stacked = torch.stack(spikes).detach()
    assert stacked.shape == (4, 10, 2, 8, 10) and stacked.max() > 0
    assert len(states) == 4 and states[0] is None
    spikes.clear()
    states.clear()
    model(data, s)
    assert hasattr(states[0], "neuron") and hasattr(states[1], "V")
    assert hasattr(states[0], "v")  # Norse's name on the recurrent state too
    model.remove_forward_state_hooks()
    assert len(model.forward_state_hooks) == 0
    model(data, s)
    assert len(spikes) == 4


def test_sequence_equals_stepping_the_cell():
    torch.manual_seed(0)
    x = torch.rand(60, 2, 5, dtype=torch.float64) * DRIVE
    z_seq, s_seq = HH(dt=DT, V_init=-65.0)(x)
    cell, s, zs = HHCell(dt=DT, V_init=-65.0), None, []
    for x_t in x:
        z, s = cell(x_t, s)
        zs.append(z)
    assert _fired(z_seq)
    torch.testing.assert_close(torch.stack(zs), z_seq, rtol=0, atol=0)
    torch.testing.assert_close(s.V, s_seq.V, rtol=1e-12, atol=1e-10)


# ------------------------------------------------------------------------- test_lift.py
def test_lift_of_the_cell():
    out = norse.Lift(HHCell())(torch.randn(5, 2))
    assert type(out) is tuple and out[0].shape == (5, 2) and type(out[1]) is HHState


def test_lift_of_a_sequential_state():
    out = norse.Lift(norse.SequentialState(HHCell()))(torch.randn(5, 2))
    assert type(out) is tuple and out[0].shape == (5, 2)
    assert type(out[1]) is list and type(out[1][0]) is HHState


def test_lifted_convolution_into_the_layer():
    module = torch.nn.Sequential(norse.Lift(torch.nn.Conv2d(4, 3, 5, 1)), HH())
    output, _ = module(torch.randn(6, 2, 4, 10, 12))
    assert output.shape == (6, 2, 3, 6, 8)


# ---------------------------------------------------------------------- torch.compile
@pytest.mark.slow
@needs_compile
def test_compiled_cells_and_layers():
    x = torch.randn(5, 4)
    out, s = torch.compile(HHCell())(x)
    assert out.shape == (5, 4) and all(v.shape == (5, 4) for v in s)
    out, s = torch.compile(HHRecurrentCell(4, 3))(x)
    assert out.shape == (5, 3) and s.V.shape == (5, 3)
    out, s = torch.compile(HH())(torch.randn(10, 5, 4))
    assert out.shape == (10, 5, 4) and s.V.shape == (5, 4)
    z, s = torch.compile(norse.SequentialState(HHRecurrent(20, 6)))(torch.ones(2, 1, 20))
    assert z.shape == (2, 1, 6) and s[0].V.shape == (1, 6)
    out = torch.compile(norse.Lift(HHCell()))(torch.randn(5, 2))
    assert type(out) is tuple


@pytest.mark.slow
@needs_compile
def test_compiled_sequential_state_steps_and_backpropagates():
    m = torch.compile(norse.SequentialState(torch.nn.Linear(2, 1), HHCell()))
    x = torch.ones(2, 2)
    z, s = m(x)
    _, s = m(x, s)
    z.sum().backward()
    assert s[1].V.grad_fn is not None and z.shape == (2, 1)
    assert not torch.all(s[1].V == 0)


# ------------------------------------------------------------------------- test_onnx.py
def test_onnx_export_of_a_sequential_state_without_state(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from onnx.reference import ReferenceEvaluator

    net = norse.SequentialState(HHCell(p=HHSpec(gL=0.3), dt=DT, V_init=-65.0)).eval()
    x = torch.full((2, 10), DRIVE)
    path = tmp_path / "hh.onnx"
    torch.onnx.export(net, (x,), str(path), verbose=False)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    z, (state,) = net(x)
    results = ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x.numpy()})
    torch.testing.assert_close(torch.as_tensor(results[0]), z)
    torch.testing.assert_close(torch.as_tensor(results[1]), state.V)


# ---------------------------------------------------------- torch.export and ONNX, stateless
def test_torch_export_without_a_state():
    # the first step builds its initial state inside the graph (no data-dependent checks)
    cell = HHCell(dt=DT, V_init=-65.0)
    x = torch.full((2, 3), DRIVE)
    program = torch.export.export(cell, (x,))
    z, state = program.module()(x)
    z_ref, state_ref = cell(x)
    torch.testing.assert_close(z, z_ref)
    torch.testing.assert_close(state.V, state_ref.V)
    # the default, the resting state, and the reference model's uniform draw (torch's
    # generator) are exported too
    program = torch.export.export(HHCell(dt=DT), (x,))
    torch.testing.assert_close(program.module()(x)[1].V, HHCell(dt=DT)(x)[1].V)
    torch.export.export(HHCell(V_init="default"), (x,))


@pytest.mark.slow
@needs_compile
def test_compile_fullgraph_without_a_state():
    cell = HHCell(dt=DT)
    x = torch.full((2, 3), DRIVE)
    z, state = torch.compile(cell, fullgraph=True)(x)
    assert z.shape == (2, 3) and state.V.dtype == torch.float32
    z, state = torch.compile(HHCell(dt=DT, V_init=-65.0), fullgraph=True)(x, state)
    assert torch.isfinite(state.V).all()


def test_nan_initial_voltage_is_still_refused():
    with pytest.raises(ValueError, match="NaN"):
        initial_state(HHParameters(), (2,), V=torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="NaN"):
        HHCell(V_init=[float("nan")])


# ------------------------------------------------------------------------ NIR (to_nir)
def test_to_nir_with_an_hh_layer_names_the_alternative(tmp_path):
    pytest.importorskip("nir")
    model = norse.SequentialState(torch.nn.Linear(4, 3), HHCell(), torch.nn.Linear(3, 2))
    with pytest.raises(NotImplementedError, match=r"no node for Hodgkin-Huxley.*"
                                                  r"hh_plugin\.export\.save"):
        norse.to_nir(model, torch.randn(1, 4))
    # the tracer was left clean: a model without HH layers still exports
    graph = norse.to_nir(norse.SequentialState(torch.nn.Linear(4, 3)), torch.randn(1, 4))
    assert all(node is not None for node in graph.nodes.values())
    # and the alternative the message names works for the HH layer
    from hh_plugin.export import load, save

    cell = HHCell(p=HHSpec(gL=0.1), dt=DT, V_init=-65.0)
    _, state = cell(torch.full((1, 3), DRIVE))
    record = load(save(tmp_path / "hh_layer.h5", cell.p, state, dt=DT * 1e3))
    assert record.spec == HHSpec(gL=0.1)


# --------------------------------------------------- parameter and state helpers (StateTuple)
def test_parameter_helpers():
    p = HHParameters()
    assert p.to(torch.device("cpu")).gL.device.type == "cpu"       # a device, not a dtype
    assert p.to("cpu", torch.float32).gL.dtype == torch.float32
    assert p.to(torch.zeros(1, dtype=torch.float32)).C.dtype == torch.float32
    assert p.to(dtype=torch.float32).V_th.dtype == torch.float32
    assert p.cpu().gL.device.type == "cpu"
    assert p.float().gNa.dtype == torch.float32 and p.float().double().gNa.dtype == torch.float64
    assert p.float().spk_reset == "soft" and p.float().V_reset is None
    with pytest.raises(TypeError, match="real-valued"):
        p.int()
    with pytest.raises(TypeError, match="real-valued"):
        p.to(torch.int64)
    b = p.broadcast(torch.zeros(2, 3))
    assert b.gL.shape == (2, 3) and b.gL.dtype == torch.float32
    heterogeneous = HHParameters.from_spec(HHSpec(gL=[0.1, 0.2, 0.3]))
    assert heterogeneous.broadcast(torch.zeros(4, 3)).gL[3, 2] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="broadcast"):
        heterogeneous.broadcast(torch.zeros(4, 2))
    # gradients reach parameters through the helpers
    gL = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    HHParameters(gL=gL).float().gL.backward()
    assert gL.grad is not None


def test_state_helpers():
    s = initial_state(HHParameters(), (2, 3), V=-65.0)
    assert s.double().V.dtype == s.double().n.dtype == torch.float64
    assert s.to(torch.device("cpu")).V.device.type == "cpu" and s.cpu().m.shape == (2, 3)
    with pytest.raises(TypeError, match="real-valued"):
        s.int()
    cell = HHRecurrentCell(2, 3)
    x = torch.randn(4, 2, requires_grad=True)
    _, rs = cell(x)
    detached = rs.detach()
    assert isinstance(detached, HHRecurrentState) and isinstance(detached.neuron, HHState)
    assert not detached.z.requires_grad and not detached.V.requires_grad
    assert rs.float().V.dtype == torch.float32
    assert rs.double().z.dtype == torch.float64


def test_recurrent_state_is_flat_with_the_nested_form_one_step_away():
    # issue 21, item 6: flat as Norse's recurrent states, so generic loops over the fields
    # see tensors; the nested (neuron, z) form of earlier versions still reads and builds
    x = torch.randn(3, 2)
    _, s = HHRecurrentCell(2, 4)(x)
    assert all(isinstance(v, torch.Tensor) and v.shape == (3, 4) for v in s)
    assert list(s._asdict()) == ["V", "m", "h", "n", "z"] and s.v is s.V
    assert tuple(s.neuron) == tuple(s)[:4] and type(s.neuron) is HHState
    assert HHRecurrentState(s.neuron, s.z) == s == HHRecurrentState.from_neuron(s.neuron, s.z)
    _, again = HHRecurrentCell(2, 4)(x, HHRecurrentState(s.neuron, s.z))  # old spelling
    assert again._fields == s._fields
    with pytest.raises(TypeError, match="expected a state of model 'hodgkin_huxley'"):
        HHRecurrentState.from_neuron(s, s.z)  # a recurrent state is not a neuron state
    with pytest.raises(TypeError, match="state must be a HHRecurrentState"):
        HHRecurrentCell(2, 4)(x, s.neuron)
    # another model: its own flat type, V, its gates and z
    from hh_plugin import HHSpec
    from hh_plugin.model import WANG_BUZSAKI
    from hh_plugin.torch import recurrent_state_type

    _, wb = HHRecurrentCell(2, 4, p=HHSpec(model=WANG_BUZSAKI))(x)
    assert type(wb) is recurrent_state_type(WANG_BUZSAKI) and wb._fields == ("V", "h", "n", "z")
    # Norse's generic merge (record_states=True) stacks every field
    _, traj = HHRecurrent(2, 4, record_states=True)(torch.randn(5, 3, 2))
    assert type(traj) is HHRecurrentState and all(v.shape == (5, 3, 4) for v in traj)


def test_state_dtype_follows_input_and_state_together():
    cell = HHCell(V_init=-65.0)
    _, s32 = cell(torch.full((2, 3), 10.0))
    _, s = cell(torch.full((2, 3), 10.0, dtype=torch.float64), s32)
    assert {v.dtype for v in s} == {torch.float64}
    _, s = cell(torch.ones(2, 3, dtype=torch.bool), s)     # spikes take the state's dtype
    assert {v.dtype for v in s} == {torch.float64}
    z, s = HH(V_init=-65.0)(torch.full((5, 2, 3), 10.0), s32.double())
    assert z.dtype == torch.float64 and {v.dtype for v in s} == {torch.float64}


def test_states_of_another_shape_are_refused():
    cell = HHCell(V_init=-65.0)
    _, s = cell(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="does not match"):
        cell(torch.zeros(4, 3), s)
    with pytest.raises(TypeError, match="HHState"):
        cell(torch.zeros(2, 3), (s.V, s.m))
