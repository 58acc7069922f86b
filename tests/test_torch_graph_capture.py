"""The PyTorch side as a PyTorch user expects it (issue 21): torch.compile(fullgraph=True),
torch.export, ONNX and torch.jit.trace of the HH modules, each in a fresh process so that
no earlier compilation in the test process can make it pass; Norse's state contract;
trainable biophysical parameters."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hh_plugin import HHSpec
from hh_plugin.torch import HH, HHCell, HHRecurrentCell

ROOT = Path(__file__).resolve().parents[1]
DT = 2.5e-5  # s

# Each variant runs in a fresh interpreter and prints one JSON line.
FRESH = r"""
import json, sys, torch, torch._dynamo
from hh_plugin import HHSpec
from hh_plugin.torch import HH, HHCell
from hh_plugin.torch.functional import HHState
torch.manual_seed(0)
variant = sys.argv[1]
x = 10 + 5 * torch.randn(6, 2, 3, dtype=torch.float64)
torch.set_grad_enabled(True)
out = {}
if variant == "cell first step":
    cell = HHCell(dt=2.5e-5, V_init=-65.0)
    z, s = torch.compile(cell, fullgraph=True)(x[0])
    out["dV"] = float((s.V - cell(x[0])[1].V).abs().max())
elif variant == "cell with a state":
    cell = HHCell(dt=2.5e-5, V_init=-65.0)
    s0 = cell(x[0])[1]
    z, s = torch.compile(cell, fullgraph=True)(x[1], s0)
    out["dV"] = float((s.V - cell(x[1], s0)[1].V).abs().max())
elif variant == "cell stepped in a compiled loop":
    cell = HHCell(dt=2.5e-5, V_init=-65.0)
    compiled = torch.compile(cell, fullgraph=True)
    s = se = None
    for t in range(x.shape[0]):
        z, s = compiled(x[t], s)
        ze, se = cell(x[t], se)
    out["dV"] = float((s.V - se.V).abs().max())
elif variant in ("HH", "HH naive"):
    m = HH(dt=2.5e-5, V_init=-65.0, path="naive" if variant == "HH naive" else "auto")
    z, s = torch.compile(m, fullgraph=True)(x)
    out["dV"] = float((s.V - m(x)[1].V).abs().max())
    xg = x.clone().requires_grad_(True)
    z, s = torch.compile(m, fullgraph=True)(xg)
    s.V.sum().backward()
    g = xg.grad.clone()
    xg.grad = None
    m(xg)[1].V.sum().backward()
    out["dgrad"] = float((g - xg.grad).abs().max())
elif variant == "HHRecurrent":
    from hh_plugin.torch import HHRecurrent
    m = HHRecurrent(3, 4, dt=2.5e-5, V_init=-65.0).double()
    compiled = torch.compile(m, fullgraph=True)
    xg = x.clone().requires_grad_(True)
    z, s = compiled(xg)
    (z.sum() + s.V.sum()).backward()
    g = xg.grad.clone()
    xg.grad = None
    ze, se = m(xg)
    (ze.sum() + se.V.sum()).backward()
    out["dV"] = float((s.V - se.V).abs().max())
    out["dgrad"] = float((g - xg.grad).abs().max())
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    program = torch.export.export(m, (x,))
    out["ops"] = sorted({str(n.target) for n in program.graph.nodes if "hh_plugin" in str(n.target)})
    out["dV export"] = float((program.module()(x)[1].V - m(x)[1].V).abs().max())
    torch._dynamo.utils.counters["stats"]["unique_graphs"] = graphs
elif variant == "export HH":
    m = HH(dt=2.5e-5, V_init=-65.0)
    program = torch.export.export(m, (x,))
    out["ops"] = sorted({str(n.target) for n in program.graph.nodes if "hh_plugin" in str(n.target)})
    out["dV"] = float((program.module()(x)[1].V - m(x)[1].V).abs().max())
elif variant == "export the step with a state":
    cell = HHCell(dt=2.5e-5, V_init=-65.0)
    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = cell
        def forward(self, x, V, m, h, n):
            return self.cell(x, HHState(V, m, h, n))
    s0 = cell(x[0].float())[1]
    program = torch.export.export(Step(), (x[1].float(), *s0))
    out["ops"] = sorted({str(n.target) for n in program.graph.nodes if "hh_plugin" in str(n.target)})
    out["dV"] = float((program.module()(x[1].float(), *s0)[1].V - cell(x[1].float(), s0)[1].V).abs().max())
elif variant == "jit.trace":
    torch.jit.trace(HHCell(dt=2.5e-5, V_init=-65.0), (x[0],))  # runs its sanity check
out["graphs"] = torch._dynamo.utils.counters["stats"]["unique_graphs"]
out["recompiles"] = sum(torch._dynamo.utils.counters["recompiles"].values())
print(json.dumps(out))
"""


def _fresh(variant):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", FRESH, variant], capture_output=True,
                          text=True, env=env, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["cell first step", "cell with a state",
                                     "cell stepped in a compiled loop", "HH", "HH naive"])
def test_compile_fullgraph_in_a_fresh_process(variant):
    # failures 1 and 3: "unhashable type: 'dict'" in a fresh process, and the fused kernel
    # a function dynamo skips; failure 2: the compiled loop hit the recompile limit
    out = _fresh(variant)
    # the kernels are operators: the same arithmetic as in eager mode; the naive loop is
    # fused by inductor, which rounds differently
    assert out["dV"] <= (1e-10 if variant == "HH naive" else 0.0)
    assert out.get("dgrad", 0.0) <= 1e-12
    assert out["recompiles"] == 0
    # at most one graph without a state and one with it (the loop), or one without and one
    # with gradients (HH): then no more, however many steps
    assert out["graphs"] <= 2


@pytest.mark.slow
@pytest.mark.parametrize("variant, op", [("export HH", "hh_plugin.fused_sequence.default"),
                                         ("export the step with a state",
                                          "hh_plugin.fused_step.default")])
def test_torch_export_traces_the_fused_kernel(variant, op):
    # failure 3: torch.export traced the plain step, not the fused one (V differed)
    out = _fresh(variant)
    assert out["ops"] == [op]
    assert out["dV"] == 0.0


@pytest.mark.slow
def test_recurrent_layer_compiles_and_exports_with_its_fused_kernel():
    # issue 21, item 8: HHRecurrent's default path is the fused recurrent operator, which
    # torch.compile (fullgraph, with its backward) and torch.export trace as one node
    out = _fresh("HHRecurrent")
    assert out["ops"] == ["hh_plugin.fused_recurrent.default"]
    assert out["dV"] == 0.0 and out["dV export"] == 0.0 and out["dgrad"] <= 1e-12
    assert out["recompiles"] == 0 and out["graphs"] == 1


@pytest.mark.slow
def test_jit_trace_of_a_fresh_cell_passes_its_check():
    _fresh("jit.trace")  # failure 4: "Graphs differed across invocations"


def test_onnx_export_of_hh_runs_to_the_same_spikes(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from onnx.reference import ReferenceEvaluator

    m = HH(p=HHSpec(), dt=DT, V_init=-65.0).eval()
    x = torch.full((4, 1, 3), 40.0)
    path = tmp_path / "hh.onnx"
    torch.onnx.export(m, (x,), str(path), dynamo=True)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    results = ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x.numpy()})
    with torch.no_grad():
        z, state = m(x)
    np.testing.assert_array_equal(results[0], z.numpy())
    np.testing.assert_allclose(results[1], state.V.numpy(), rtol=0, atol=1e-4)


# --------------------------------------------------------------- Norse's state contract
@pytest.mark.parametrize("make", [lambda: HHCell(), lambda: HH(),
                                  lambda: HHRecurrentCell(4, 4)])
def test_backward_works_whatever_the_input_as_in_norse(make):
    # failure 5: the initial state did not require gradients, so a backward pass from the
    # spikes of an input that does not require them raised
    module = make()
    x = torch.randn(3, 5, 4) if isinstance(module, HH) else torch.randn(5, 4)
    out, state = module(x)
    out.sum().backward()
    assert state.V.requires_grad


def test_no_gradients_are_recorded_under_no_grad():
    with torch.no_grad():
        out, state = HHCell()(torch.randn(5, 4))
    assert not state.V.requires_grad and not out.requires_grad


def test_norse_names_v_and_v_th():
    # failure 6: every Norse state has v, every Norse parameter tuple v_th
    cell = HHCell(dt=DT, V_init=-65.0)
    _, state = cell(torch.full((2, 3), 5.0))
    assert state.v is state.V
    assert float(cell.p.v_th) == float(cell.p.V_th) == 20.0


# ------------------------------------------------------------------ trainable parameters
def test_trainable_parameters_are_module_parameters_in_the_state_dict():
    # failure 7: cell.parameters() and state_dict() stayed empty
    cell = HHCell(HHSpec(), dt=DT, trainable=("gNa", "gK", "EL"))
    names = {name for name, _ in cell.named_parameters()}
    assert names == {"EL", "parametrizations.gNa.original", "parametrizations.gK.original"}
    assert set(cell.state_dict()) == names
    assert float(cell.p.gNa.detach()) == pytest.approx(120.0)
    other = HHCell(HHSpec(), dt=DT, trainable=("gNa", "gK", "EL"))
    with torch.no_grad():
        other.EL.fill_(-60.0)
    cell.load_state_dict(other.state_dict())
    assert float(cell.p.EL) == -60.0 and cell.p.to_spec().parameters["EL"] == -60.0


def test_trained_conductances_stay_positive():
    cell = HHCell(HHSpec(), dt=DT, V_init=-65.0, trainable=("gK",))
    optimiser = torch.optim.SGD(cell.parameters(), lr=1e3)
    for _ in range(3):
        optimiser.zero_grad()
        _, state = cell(torch.full((1, 2), 10.0))
        (-state.V.sum()).backward()  # pushes gK towards 0 and beyond
        optimiser.step()
    assert float(cell.p.gK) > 0


def test_gradient_of_a_trainable_parameter_matches_central_differences():
    x = torch.full((60, 1, 2), 8.0, dtype=torch.float64)

    def loss(module):
        return module(x)[1].V.sum()

    module = HH(HHSpec(), dt=DT, V_init=-65.0, trainable=("EL", "gL"))
    loss(module).backward()
    for name, step in (("EL", 1e-4), ("gL", 1e-6)):
        value = HHSpec().parameters[name]
        shifted = [HH(HHSpec(**{name: value + sign * step}), dt=DT, V_init=-65.0)
                   for sign in (1, -1)]
        with torch.no_grad():
            numeric = (loss(shifted[0]) - loss(shifted[1])) / (2 * step)
        analytic = (module.EL.grad if name == "EL" else
                    module.parametrizations.gL.original.grad / float(module.p.gL))
        assert float(analytic) == pytest.approx(float(numeric), rel=1e-5)


def test_unknown_trainable_parameter_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="unknown parameter 'gCa'.*gNa"):
        HHCell(trainable=("gCa",))
    with pytest.raises(ValueError, match="named twice"):
        HHCell(trainable=("gL", "gL"))
