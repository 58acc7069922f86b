r"""The backward pass of the fused network kernel (:mod:`.fused`): the adjoint of the whole
time loop, in reverse time, in generated C++.

**What is differentiated.** Populations of generated HH models (exponential Euler, the
rising-edge spike with the ReLU surrogate and no reset, a soft or a hard reset, or a
refractory period: the spike :math:`H(y')\,[c \ge R]`), the receptors of every
spike-driven synapse model (pulse, exponential, biexponential, alpha, NMDA; current or
conductance: the linear system :math:`x \mathrel{+}= c\,b`, :math:`y = k^\top x`,
:math:`x \leftarrow Px`, times a voltage-dependent factor :math:`B(V)` of the step's start
potential where the model has one, its derivatives printed from the definition:
:func:`generate_factor_gradient_cpp`), and projections with any delays, static or with
Tsodyks-Markram plasticity (the spikes transmit :math:`W (z \odot u x)` with the release
:math:`u x` held fixed, as on the step loop: the state is not differentiated) or with STDP
or another plasticity rule (a spike arriving at step :math:`k` transmits the plastic
weight :math:`w_{ij}(k)` of that moment, before the step's ``on_pre``, taped in the
forward; the rule's updates are not differentiated and the weight parameter, whose
detached copy the initial state holds, gets no gradient, as on the step loop), and graded
synapses without a voltage-dependent factor (Wang-Buzsaki's gated GABA_A: the target's
input :math:`y_j = \sum_i w_{ij}\,\mathrm{transmit}(s_i)` of the presynaptic states of the
step's start, which take an exponential Euler step driven by the source's potential; the
derivatives of both printed from the definition: :func:`generate_graded_gradient_cpp`).

Gradients reach the external currents, the initial neuron and synaptic states, the
spikes of a previous call in the state's history (so a run in pieces,
``state=out.state``, backpropagates through all of them), the projections' weights, the
neurons' kernel parameters (where a parameter tensor requires grad) and the receptors'
constants :math:`P, c, k, E` and parameter values (those of the factor), which torch
autograd chains on to the synapse definitions' parameters
(:meth:`~.receptors.ReceptorNumerics.constants`, ``NetworkModule.synapse_parameters``:
time constants, reversal potentials, NMDA's Mg). Spike sources are constants, as on the
step loop.

Refused by name (:func:`gradient_refusal`; the ``'auto'`` path then runs the step loop):
gradients to a graded synapse's parameters (a parameter tensor of
``NetworkModule.synapse_parameters`` that requires grad), graded synapses with a
voltage-dependent factor, and a state whose plastic weights or
traces (``NetworkState.plasticity``) require grad (the step loop differentiates through
the rule's clipped updates, this backward does not). Plasticity states are updated in the
forward pass and not differentiated otherwise, on either path.

**Memory.** The forward pass with gradients stores, per step and neuron, the state
variables and synaptic variables at the step's start and each receptor's ring-buffer
value (and, with a refractory period, the steps since the last spike; per
Tsodyks-Markram projection, each presynaptic neuron's release :math:`u x`; per projection
with a plasticity rule, each synapse's transmitted weight, :math:`T n_{synapses}`):
:math:`T \cdot N \cdot (n_{states} + n_{synaptic} + n_{receptors} [+ 1])` numbers of the
dtype (for example 4 + 4 + 2 = 10 doubles, 80 bytes, per neuron and step for the HH model
with two biexponential receptors: 1,000 neurons over 10,000 steps take 0.8 GB). The
backward recomputes each step's intermediates from these. A tape larger than
:data:`.fused_autograd.TAPE_BYTES` (``$HH_PLUGIN_NETWORK_TAPE_BYTES``, default 1 GiB) is
not kept: the run is taped in segments that fit, recomputed from checkpoints in the
backward (:class:`.fused_autograd.NetworkRun`: one segment's tape plus a checkpoint of the
states per segment, for one more forward pass of compute), with the same gradients.

This module generates the C++ and says what is covered; :mod:`.fused_autograd` runs it as
an autograd function.

**The adjoint.** With :math:`\lambda` the adjoint of a state after step :math:`k`, per
population in reverse order (every recorded trace's gradient joins the adjoint of the
state it recorded):

.. math::
    \begin{align*}
    \bar x^{mid} &= P^\top \lambda_{x'}, \quad \bar P \mathrel{+}= \lambda_{x'}
        (x^{mid})^\top && (x^{mid} = x + c\,b)\\
    \bar z_i(k) &= g_{z,i}(k) + \sum_{j} w_{ij}\,r_i\,\bar b_j(k + d_{ij})
        && \text{(only where the surrogate is nonzero)}\\
    \bar w_{ij} &\mathrel{+}= z_i(k)\,r_i\,\bar b_j(k + d_{ij}) && \text{(only spiking } i)\\
    \lambda_s, \bar I, \bar G, \bar J &= \text{the step's adjoint}
        && (\text{:func:`~hh_plugin.torch.fused.codegen.step_program`})\\
    \bar y &= \bar I \ \text{(current)}, \quad (\bar G + E\bar J)\,B(V_k)
        \ \text{(conductance)}, \quad \bar E \mathrel{+}= y B \bar J, \quad
        \lambda_{V_k} \mathrel{+}= (\bar G + E\bar J)\,y\,B'(V_k)\\
    \bar x^{mid} &\mathrel{+}= k\,\bar y, \quad \bar k \mathrel{+}= \bar y\,x^{mid}, \quad
    \bar b(k) = c^\top \bar x^{mid}, \quad \bar c \mathrel{+}= b\,\bar x^{mid}, \quad
    \lambda_x = \bar x^{mid}
    \end{align*}

(sums over neurons implied for the constants; :math:`r_i` the Tsodyks-Markram release
:math:`u_i x_i` at the arrival step :math:`k + d`, else 1; :math:`w_{ij}` the plastic
weight at step :math:`k + d` on a projection with a plasticity rule, whose :math:`\bar w`
is not formed). A graded receptor's :math:`\bar y` gives
:math:`\bar w_{ij} \mathrel{+}= \mathrm{transmit}(s_i)\,\bar y_j` and
:math:`\bar s_i \mathrel{+}= \partial_s \mathrm{transmit}(s_i) \sum_j w_{ij} \bar y_j`,
joined to the adjoint of the step's start states once every population's step is undone;
the presynaptic step maps :math:`\bar s'` to :math:`\bar s` and :math:`\bar V_k`. :math:`\bar b` lives in a ring
buffer like the forward's: the slot of step :math:`k + d` is read when the spikes of step
:math:`k` are reached. In float64 the gradients equal the step loop's autograd gradients
to round-off.
"""

from __future__ import annotations

from typing import Optional, Sequence

import sympy
import torch

from ...model.definition import ModelDefinition
from ...model.expressions import VOLTAGE_SYMBOL, exprel
from ...network.synapses import SynapseModel
from ..fused.codegen import CPP, _Printer, _kernel_expr, step_program


def gradient_refusal(module, state) -> Optional[str]:
    """Why the fused network path cannot give gradients for ``module`` (a
    :class:`~.module.NetworkModule`) from ``state``, or ``None`` when it can."""
    spec = module.spec
    for pop, table in spec.receptors.items():
        for syn in table.values():
            if not syn.model.is_graded:
                continue
            if syn.model.factor is not None:
                return (f"the fused network path computes no gradients through graded "
                        f"synapses with a voltage-dependent factor ({syn.model.name!r} into "
                        f"{pop!r})")
            params = module._receptors[pop][syn.receptor].parameters
            trainable = [k for k, v in params.items() if torch.is_tensor(v) and v.requires_grad]
            if trainable:
                return (f"the fused network path computes no gradients to a graded synapse's "
                        f"parameters ({syn.model.name!r} into {pop!r}: {trainable})")
    for proj in spec.projections:
        table = state.plasticity.get(proj.name, {}) if state is not None else {}
        for name, value in table.items():
            if torch.is_tensor(value) and value.requires_grad:
                return (f"the fused network path computes no gradients through a plasticity "
                        f"rule's updates: the state of projection {proj.name!r} ({name!r}) "
                        f"requires grad")
    return None


def _model_backward_function(index: int, model: ModelDefinition) -> str:
    """C++ of one model's step adjoint for the network kernel: recomputes the step from its
    start state and inputs (``I``, ``G``, ``J``), then runs the generated adjoint; ``GS``
    holds the adjoint of the new state on entry and of the old one on return. The spike's
    gradient is ``gZ`` plus ``zgrad(i)`` (the weights' share, asked only where the surrogate
    is nonzero)."""
    program = step_program(model, CPP, synaptic=True)
    states, params = program.states, program.parameters
    relu = lambda y: CPP.func("relu", f"p_width - {CPP.func('fabs', y)}")  # noqa: E731
    Vth = f"p_{model.threshold}"
    # with a refractory period (``ready``: 1 where the period is over, at the step's start)
    # the spike is H(y1) ready, y1 from the new V (no reset): its surrogate derivative is
    # f_rs, and the rising edge o_z of the step is unused (g_z = 0)
    extra = {VOLTAGE_SYMBOL: "g_zr*f_rs*f_isc", model.threshold: "(-(g_zr*f_rs*f_isc))",
             "V_scale": f"(-(g_zr*f_rs*(f_Vpre - {Vth})))*(f_isc*f_isc)"}
    lines = ["template <typename T, int RESET, typename ZGrad>",
             f"void backward_model_{index}(int64_t n, const T* const* S, const T* const* P,",
             "    const T* I, const T* G, const T* J, T* const* GS, const T* gZ, ZGrad& zgrad,",
             "    const T* ready, T* gI, T* gG, T* gJ, T* const* GP, T dt) {",
             f"  // model {model.name}",
             "  for (int64_t i = 0; i < n; ++i) {"]
    lines += [f"    const T s_{s} = S[{k}][i];" for k, s in enumerate(states)]
    lines += [f"    const T p_{p} = P[{k}][i];" for k, p in enumerate(params)]
    lines += ["    const T I_in = I[i];", "    const T G_syn = G[i];", "    const T J_syn = J[i];"]
    lines += [f"    {line}" for line in program.forward]
    lines += [f"    const T f_rs = ready ? ready[i]*p_alpha*{relu('f_y1')} : T(0);",
              f"    const bool active = ready ? f_rs != T(0) : ({relu('f_y1')} != T(0) || "
              f"{relu('f_y0')} != T(0));",
              "    const T g_all = (gZ ? gZ[i] : T(0)) + (active ? zgrad(i) : T(0));",
              "    const T g_zr = ready ? g_all : T(0);",
              "    const T g_z = ready ? T(0) : g_all;"]
    lines += [f"    const T gs_{s} = GS[{k}][i]"
              + (f" + {extra[VOLTAGE_SYMBOL]};" if s == VOLTAGE_SYMBOL else ";")
              for k, s in enumerate(states)]
    lines += [f"    {line}" for line in program.backward]
    lines += [f"    GS[{k}][i] = go_{s};" for k, s in enumerate(states)]
    lines += ["    gI[i] = g_I;", "    gG[i] = g_G;", "    gJ[i] = g_J;", "    if (GP) {"]
    for k, p in enumerate(params):
        terms = [program.parameter_gradients[p]] if p in program.parameter_gradients else []
        terms += [extra[p]] if p in extra else []
        if terms:
            lines.append(f"      GP[{k}][i] += {' + '.join(terms)};")
    lines += ["    }", "  }", "}", ""]
    return "\n".join(lines)


_BACKWARD_DRIVER = r"""
namespace {
template <typename T, int RESET, typename ZGrad>
void backward_dispatch(int64_t model, int64_t n, const T* const* S, const T* const* P,
                       const T* I, const T* G, const T* J, T* const* GS, const T* gZ,
                       ZGrad& zgrad, const T* ready, T* gI, T* gG, T* gJ, T* const* GP, T dt) {
  switch (model) {
MODEL_BACKWARD_CASES
    default: TORCH_CHECK(false, "unknown model index ", model);
  }
}
}  // namespace

// The adjoint of network_forward (run with a tape), in reverse time. Arguments as
// network_forward's, and:
//   tape: per population its states, synaptic variables, each receptor's ring-buffer
//         value and (refractory period) the steps since the last spike at the start of
//         every step, (steps, n) each; then per projection the releases of a
//         Tsodyks-Markram one and the transmitted weights of one with a plasticity rule
//         (network_forward's), else nothing;
//   spikes: per population network_forward's (steps, n) uint8 raster;
//   grad_spikes: per population (steps, n) or empty; grad_record: per population per
//         recorded variable (steps, n) or empty; grad_final: per population, per state then
//         synaptic variable, (n,) or empty;
//   want: [external currents, neuron parameters, receptor constants, history].
// Returns per population [d ext (steps, n) or empty, d initial states..., d initial
// synaptic variables..., d parameters (n,) each or empty], then per projection [d weight
// (sorted by source)], then per population [d constants of each receptor (float64:
// E, P row-major, c, k, parameters q)], then per history entry [d spikes (len, n) or
// empty].
std::vector<std::vector<torch::Tensor>> network_backward(
    int64_t steps, double dt,
    std::vector<int64_t> pop_meta,
    std::vector<std::vector<torch::Tensor>> params,
    std::vector<std::vector<int64_t>> rec_meta,
    std::vector<std::vector<std::vector<double>>> rec_vals,
    std::vector<std::vector<int64_t>> pre_meta,
    std::vector<std::vector<std::vector<double>>> pre_vals,
    std::vector<torch::Tensor> ext,
    std::vector<torch::Tensor> rasters,
    std::vector<int64_t> proj_meta,
    std::vector<std::vector<torch::Tensor>> proj_csr,
    std::vector<torch::Tensor> history,
    std::vector<std::vector<torch::Tensor>> tape,
    std::vector<torch::Tensor> spikes,
    std::vector<torch::Tensor> grad_spikes,
    std::vector<std::vector<torch::Tensor>> grad_record,
    std::vector<std::vector<int64_t>> record_index,
    std::vector<std::vector<torch::Tensor>> grad_final,
    std::vector<int64_t> want) {
  const size_t npop = params.size();
  const size_t nproj = proj_csr.size();
  TORCH_CHECK(pop_meta.size() == 6 * npop && tape.size() >= npop && spikes.size() == npop &&
              grad_spikes.size() == npop && grad_record.size() == npop &&
              grad_final.size() == npop && rec_meta.size() == npop && ext.size() == npop &&
              want.size() == 4, "network_backward: one entry per population");
  TORCH_CHECK(proj_meta.size() == 9 * nproj, "proj_meta: 9 values per projection");
  std::vector<PopMeta> meta(npop);
  std::vector<std::vector<RecMeta>> rmeta(npop);
  std::vector<int64_t> nstate(npop), nsyn(npop);
  for (size_t p = 0; p < npop; ++p) {
    meta[p] = {pop_meta[6 * p], pop_meta[6 * p + 1], pop_meta[6 * p + 2],
               pop_meta[6 * p + 3], pop_meta[6 * p + 4], pop_meta[6 * p + 5]};
    for (size_t r = 0; r < rec_vals[p].size(); ++r) {
      const int64_t* m = rec_meta[p].data() + 6 * r;
      rmeta[p].push_back({m[0], m[1], m[2], m[3], m[4], m[5]});
    }
    int64_t nx = 0;
    for (const RecMeta& rm : rmeta[p]) nx = std::max<int64_t>(nx, rm.first + rm.ns);
    TORCH_CHECK(pre_meta.size() == npop && pre_vals.size() == npop &&
                pre_meta[p].size() == 3 * pre_vals[p].size(), "pre_meta: 3 per entry");
    for (size_t e = 0; e < pre_vals[p].size(); ++e)  // presynaptic states of graded synapses
      nx = std::max<int64_t>(nx, pre_meta[p][3 * e + 1] + pre_meta[p][3 * e + 2]);
    nsyn[p] = nx;
    nstate[p] = (int64_t)tape[p].size() - nx - (int64_t)rmeta[p].size()
                - (meta[p].refractory >= 0 ? 1 : 0);
    TORCH_CHECK(nstate[p] > 0, "tape layout");
  }
  for (size_t q = 0; q < nproj; ++q) {
    const int64_t* pm = proj_meta.data() + 9 * q;
    TORCH_CHECK(!pm[4] || rmeta[pm[2]][pm[3]].fn < 0,
                "gradients for graded synapses without a voltage-dependent factor only");
    TORCH_CHECK(pm[7] < 0 || (tape.size() > npop + q && tape[npop + q].size() == (pm[6] ? 2u : 1u)),
                "a projection with a plasticity rule needs its weights on the tape");
    TORCH_CHECK(!pm[6] || (tape.size() > npop + q && !tape[npop + q].empty()),
                "a Tsodyks-Markram projection needs its releases on the tape");
  }
  // the graded projection into each receptor, or -1
  std::vector<std::vector<int64_t>> gproj(npop);
  for (size_t p = 0; p < npop; ++p) gproj[p].assign(rmeta[p].size(), -1);
  for (size_t q = 0; q < nproj; ++q)
    if (proj_meta[9 * q + 4]) gproj[proj_meta[9 * q + 2]][proj_meta[9 * q + 3]] = (int64_t)q;
  auto opts = tape[0][0].options();
  std::vector<std::vector<torch::Tensor>> result(2 * npop + nproj);
  std::vector<torch::Tensor> gw(nproj);
  for (size_t q = 0; q < nproj; ++q) {
    gw[q] = torch::zeros({proj_csr[q][2].numel()}, opts);
    result[npop + q].push_back(gw[q]);
  }
  AT_DISPATCH_FLOATING_TYPES(tape[0][0].scalar_type(), "network_backward", [&] {
    using T = scalar_t;
    const T tdt = T(dt);
    std::vector<std::vector<T*>> GS(npop), GX(npop), GP(npop);
    std::vector<std::vector<const T*>> P(npop);
    std::vector<std::vector<T>> I(npop), G(npop), J(npop), gI(npop), gG(npop), gJ(npop);
    std::vector<std::vector<T>> Xm(npop), Y(npop), Rd(npop), LM(npop), LY(npop);
    std::vector<std::vector<std::vector<T>>> gring(npop);
    std::vector<std::vector<std::vector<double>>> gconst(npop);
    std::vector<torch::Tensor> gext(npop);
    std::vector<const T*> Sk;
    for (size_t p = 0; p < npop; ++p) {
      const int64_t n = meta[p].n;
      for (size_t k = 0; k < params[p].size(); ++k) P[p].push_back(params[p][k].data_ptr<T>());
      // the adjoints of the final state, then (in place) of each earlier step's
      std::vector<torch::Tensor>& res = result[p];
      res.push_back(want[0] && ext[p].numel() ? torch::zeros({steps, n}, opts)
                                             : torch::empty({0}, opts));
      gext[p] = res[0];
      for (int64_t k = 0; k < nstate[p] + nsyn[p]; ++k) {
        const torch::Tensor& g = grad_final[p].empty() ? torch::Tensor() : grad_final[p][k];
        torch::Tensor a = g.defined() && g.numel() ? g.detach().to(opts).contiguous().clone()
                                                   : torch::zeros({n}, opts);
        res.push_back(a);
        (k < nstate[p] ? GS[p] : GX[p]).push_back(a.data_ptr<T>());
      }
      if (want[1]) {
        for (size_t k = 0; k < params[p].size(); ++k) {
          res.push_back(torch::zeros({n}, opts));
          GP[p].push_back(res.back().data_ptr<T>());
        }
      }
      I[p].resize(n); G[p].resize(n); J[p].resize(n);
      gI[p].resize(n); gG[p].resize(n); gJ[p].resize(n);
      Xm[p].resize(nsyn[p] * n); Y[p].resize(rmeta[p].size() * n); Rd[p].resize(n);
      LM[p].resize(nsyn[p] * n); LY[p].resize(n);  // adjoints of x_mid and of y
      for (size_t r = 0; r < rmeta[p].size(); ++r) {
        gring[p].emplace_back((size_t)(meta[p].ring * n), T(0));
        const int64_t ns = rmeta[p][r].ns;
        gconst[p].emplace_back(rec_vals[p][r].size(), 0.0);
      }
    }
    // the adjoint of the ring slot that spikes of step t with delay d reach, or 0 past the run
    // a graded projection q at step t: without ly, adds y_j = sum_i w_ij transmit(s_i) to
    // y, s the source's presynaptic states of the step's start (from its tape, as the
    // forward's arithmetic); with ly (the adjoint of y), adds the weights' gradients
    // transmit(s_i) ly_j and the adjoints of s_i (to gpre: joined at the step's start)
    std::vector<std::vector<T>> gpre(npop);
    for (size_t p = 0; p < npop; ++p) gpre[p].assign((size_t)(nsyn[p] * meta[p].n), T(0));
    auto graded_input = [&](int64_t q, int64_t t, T* y, const T* ly) {
      const int64_t* pm = proj_meta.data() + 9 * q;
      const int64_t src = pm[1], e = pm[5];
      const int64_t fn = pre_meta[src][3 * e], first = pre_meta[src][3 * e + 1],
                    nx = pre_meta[src][3 * e + 2];
      TORCH_CHECK(nx >= 1 && nx <= 16, "presynaptic layout");
      const double* qv = pre_vals[src][e].data();
      const int64_t* rowptr = proj_csr[q][0].data_ptr<int64_t>();
      const int64_t* post = proj_csr[q][1].data_ptr<int64_t>();
      const T* w = proj_csr[q][2].data_ptr<T>();
      T* g = gw[q].data_ptr<T>();
      const int64_t ns_src = nstate[src], n_src = meta[src].n;
      T sv[16], ds[16];
      for (int64_t i = 0; i < n_src; ++i) {
        for (int64_t k = 0; k < nx; ++k)
          sv[k] = tape[src][ns_src + first + k].data_ptr<T>()[t * n_src + i];
        const T tr = syn_transmit<T>(fn, sv, qv);
        if (!ly) {
          for (int64_t k = rowptr[i]; k < rowptr[i + 1]; ++k) y[post[k]] += w[k] * tr;
          continue;
        }
        T acc = T(0);
        for (int64_t k = rowptr[i]; k < rowptr[i + 1]; ++k) {
          g[k] += tr * ly[post[k]];
          acc += w[k] * ly[post[k]];
        }
        syn_transmit_grad<T>(fn, sv, qv, ds);
        for (int64_t k = 0; k < nx; ++k) gpre[src][(first + k) * n_src + i] += acc * ds[k];
      }
    };
    auto slot_of = [&](int64_t tgt, int64_t r, int64_t due) -> const T* {
      if (due < 0 || due >= steps) return nullptr;
      return gring[tgt][r].data() + (due % meta[tgt].ring) * meta[tgt].n;
    };
    // the factor a spike of neuron i arriving at step `due` is transmitted with: its
    // Tsodyks-Markram release u x (a constant: the state is not differentiated; also the
    // factor of the surrogate gradient of a neuron that did not spike), else 1
    auto release = [&](size_t q, int64_t due, int64_t i) -> T {
      if (!proj_meta[9 * q + 6]) return T(1);
      const int64_t n_pre = proj_csr[q][0].numel() - 1;
      return tape[npop + q][0].data_ptr<T>()[due * n_pre + i];
    };
    // the weight of synapse k that a spike arriving at step `due` is transmitted with: the
    // plastic weight then, from the tape (a projection with a plasticity rule: its weights
    // are state, not differentiated), else the projection's weight
    auto weight_at = [&](size_t q, int64_t due, int64_t k) -> T {
      if (proj_meta[9 * q + 7] < 0) return proj_csr[q][2].data_ptr<T>()[k];
      const int64_t nnz = proj_csr[q][1].numel();
      return tape[npop + q][proj_meta[9 * q + 6] ? 1 : 0].data_ptr<T>()[due * nnz + k];
    };
    // weight gradients of the spikes `idx` of a source (population or spike source) at t
    auto weight_grads = [&](bool from_pop, int64_t index, int64_t t, const uint8_t* z,
                            int64_t nz) {
      for (size_t q = 0; q < nproj; ++q) {
        const int64_t* pm = proj_meta.data() + 9 * q;
        // a plastic projection's weight parameter is not used (the step loop's neither)
        if ((pm[0] != 0) != from_pop || pm[1] != index || pm[7] >= 0 || pm[4]) continue;
        const int64_t* rowptr = proj_csr[q][0].data_ptr<int64_t>();
        const int64_t* post = proj_csr[q][1].data_ptr<int64_t>();
        const int64_t* delay = proj_csr[q][3].data_ptr<int64_t>();
        T* g = gw[q].data_ptr<T>();
        for (int64_t i = 0; i < nz; ++i) {
          if (!z[i]) continue;
          for (int64_t k = rowptr[i]; k < rowptr[i + 1]; ++k) {
            const T* lb = slot_of(pm[2], pm[3], t + delay[k]);
            if (lb) g[k] += release(q, t + delay[k], i) * lb[post[k]];
          }
        }
      }
    };
    // a spike's share of the gradient: the weights times the adjoints of the slots it
    // reaches (neuron i of a population or spike source, spiking at step t)
    auto spike_share = [&](bool from_pop, int64_t index, int64_t t, int64_t i) -> T {
      T total = T(0);
      for (size_t q = 0; q < nproj; ++q) {
        const int64_t* pm = proj_meta.data() + 9 * q;
        if ((pm[0] != 0) != from_pop || pm[1] != index || pm[4]) continue;
        const int64_t* rowptr = proj_csr[q][0].data_ptr<int64_t>();
        const int64_t* post = proj_csr[q][1].data_ptr<int64_t>();
        const int64_t* delay = proj_csr[q][3].data_ptr<int64_t>();
        for (int64_t k = rowptr[i]; k < rowptr[i + 1]; ++k) {
          const T* lb = slot_of(pm[2], pm[3], t + delay[k]);
          if (lb) total += weight_at(q, t + delay[k], k) * release(q, t + delay[k], i) * lb[post[k]];
        }
      }
      return total;
    };
    for (int64_t t = steps - 1; t >= 0; --t) {
      for (int64_t p = (int64_t)npop - 1; p >= 0; --p) {
        const int64_t n = meta[p].n, ns_ = nstate[p];
        const int64_t slot = t % meta[p].ring;
        const size_t nr = rmeta[p].size();
        // recorded traces: their gradients join the adjoints of the states after the step
        for (size_t k = 0; k < grad_record[p].size(); ++k) {
          if (!grad_record[p][k].numel()) continue;
          const int64_t v = record_index[p][k];
          T* dst = v < ns_ ? GS[p][v] : GX[p][v - ns_];
          const T* src = grad_record[p][k].data_ptr<T>() + t * n;
          for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
        }
        // the step's inputs again, with the forward's arithmetic
        const T* e = ext[p].numel() ? ext[p].data_ptr<T>() + t * n : nullptr;
        T* Ip = I[p].data(); T* Gp = G[p].data(); T* Jp = J[p].data();
        for (int64_t i = 0; i < n; ++i) { Ip[i] = e ? e[i] : T(0); Gp[i] = T(0); Jp[i] = T(0); }
        for (size_t r = 0; r < nr; ++r) {
          const RecMeta& rm = rmeta[p][r];
          const std::vector<double>& rv = rec_vals[p][r];
          const int64_t ns = rm.ns;
          const double* inc = rv.data() + 1 + ns * ns;
          const double* kout = inc + ns;
          const T E = T(rv[0]);
          const T* b = tape[p][ns_ + nsyn[p] + r].data_ptr<T>() + t * n;
          for (int64_t s = 0; s < ns; ++s) {
            T* xm = Xm[p].data() + (rm.first + s) * n;
            const T* x = tape[p][ns_ + rm.first + s].data_ptr<T>() + t * n;
            std::copy(x, x + n, xm);
            if (inc[s] == 0.0) continue;
            const T c = T(inc[s]);
            for (int64_t i = 0; i < n; ++i) xm[i] += c * b[i];
          }
          T* y = Y[p].data() + r * n;
          std::fill(y, y + n, T(0));
          if (gproj[p][r] >= 0) graded_input(gproj[p][r], t, y, nullptr);
          for (int64_t s = 0; s < ns; ++s) {
            if (kout[s] == 0.0) continue;
            const T k = T(kout[s]);
            const T* xs = Xm[p].data() + (rm.first + s) * n;
            if (kout[s] == 1.0) for (int64_t i = 0; i < n; ++i) y[i] += xs[i];
            else for (int64_t i = 0; i < n; ++i) y[i] += xs[i] * k;
          }
          if (rm.cond && rm.fn >= 0) {  // y (kept linear in Y) times B(V) of the step's start
            const T* V0 = tape[p][meta[p].vindex].data_ptr<T>() + t * n;
            const double* qv = kout + ns;
            for (int64_t i = 0; i < n; ++i) {
              const T ye = y[i] * syn_factor<T>(rm.fn, V0[i], qv);
              Gp[i] += ye; Jp[i] += ye * E;
            }
          } else if (rm.cond) {
            for (int64_t i = 0; i < n; ++i) { Gp[i] += y[i]; Jp[i] += y[i] * E; }
          } else {
            for (int64_t i = 0; i < n; ++i) Ip[i] += y[i];
          }
        }
        auto zgrad = [&](int64_t i) -> T { return spike_share(true, p, t, i); };
        weight_grads(true, p, t, spikes[p].data_ptr<uint8_t>() + t * n, n);
        // the receptors' propagation x' = P x_mid, backwards
        std::fill(LM[p].begin(), LM[p].end(), T(0));
        for (size_t r = 0; r < nr; ++r) {
          const RecMeta& rm = rmeta[p][r];
          const int64_t ns = rm.ns;
          const double* Pm = rec_vals[p][r].data() + 1;
          double* dP = gconst[p][r].data() + 1;
          if (rm.pulse) continue;
          for (int64_t s = 0; s < ns; ++s) {
            const T* gx = GX[p][rm.first + s];
            for (int64_t c = 0; c < ns; ++c) {
              const T* xm = Xm[p].data() + (rm.first + c) * n;
              const T m = T(Pm[s * ns + c]);
              T* lc = LM[p].data() + (rm.first + c) * n;
              T acc = T(0);
              for (int64_t i = 0; i < n; ++i) { lc[i] += m * gx[i]; acc += gx[i] * xm[i]; }
              dP[s * ns + c] += (double)acc;
            }
          }
        }
        // the neuron step, backwards
        std::vector<T*> gs(GS[p]);
        Sk.clear();
        for (int64_t k = 0; k < ns_; ++k) Sk.push_back(tape[p][k].data_ptr<T>() + t * n);
        const T* gZ = grad_spikes[p].numel() ? grad_spikes[p].data_ptr<T>() + t * n : nullptr;
        T* const* gp = want[1] ? GP[p].data() : nullptr;
        const T* ready = nullptr;
        if (meta[p].refractory >= 0) {  // 1 where the refractory period is over
          const T* c = tape[p].back().data_ptr<T>() + t * n;
          for (int64_t i = 0; i < n; ++i) Rd[p][i] = c[i] >= T(meta[p].refractory) ? T(1) : T(0);
          ready = Rd[p].data();
        }
        if (meta[p].reset == 0)
          backward_dispatch<T, 0>(meta[p].model, n, Sk.data(), P[p].data(), Ip, Gp, Jp,
                                  gs.data(), gZ, zgrad, ready, gI[p].data(), gG[p].data(),
                                  gJ[p].data(), gp, tdt);
        else if (meta[p].reset == 1)
          backward_dispatch<T, 1>(meta[p].model, n, Sk.data(), P[p].data(), Ip, Gp, Jp,
                                  gs.data(), gZ, zgrad, ready, gI[p].data(), gG[p].data(),
                                  gJ[p].data(), gp, tdt);
        else
          backward_dispatch<T, 2>(meta[p].model, n, Sk.data(), P[p].data(), Ip, Gp, Jp,
                                  gs.data(), gZ, zgrad, ready, gI[p].data(), gG[p].data(),
                                  gJ[p].data(), gp, tdt);
        if (gext[p].numel()) std::copy(gI[p].begin(), gI[p].end(), gext[p].data_ptr<T>() + t * n);
        // the receptors' outputs and spike increments, backwards
        for (size_t r = 0; r < nr; ++r) {
          const RecMeta& rm = rmeta[p][r];
          const std::vector<double>& rv = rec_vals[p][r];
          const int64_t ns = rm.ns;
          const double* inc = rv.data() + 1 + ns * ns;
          const double* kout = inc + ns;
          double* g = gconst[p][r].data();
          const T E = T(rv[0]);
          const T* y = Y[p].data() + r * n;
          T* ly = LY[p].data();
          if (rm.cond && rm.fn >= 0) {  // y B(V): to y, to V of the step's start, to q
            const double* qv = kout + ns;
            const int64_t nq = (int64_t)rv.size() - (1 + ns * ns + 2 * ns);
            double* gq = g + 1 + ns * ns + 2 * ns;
            const T* V0 = tape[p][meta[p].vindex].data_ptr<T>() + t * n;
            T* gV = GS[p][meta[p].vindex];
            T dq[32];
            TORCH_CHECK(nq <= 32, "at most 32 synapse parameters");
            T acc = T(0);
            for (int64_t i = 0; i < n; ++i) {
              const T B = syn_factor<T>(rm.fn, V0[i], qv);
              const T ly_eff = gG[p][i] + E * gJ[p][i];
              acc += (y[i] * B) * gJ[p][i];
              const T dB = syn_factor_grad<T>(rm.fn, V0[i], qv, dq);
              gV[i] += ly_eff * y[i] * dB;
              for (int64_t m = 0; m < nq; ++m) gq[m] += (double)(ly_eff * y[i] * dq[m]);
              ly[i] = ly_eff * B;
            }
            g[0] += (double)acc;
          } else if (rm.cond) {
            T acc = T(0);
            for (int64_t i = 0; i < n; ++i) {
              ly[i] = gG[p][i] + E * gJ[p][i];
              acc += y[i] * gJ[p][i];
            }
            g[0] += (double)acc;
          } else {
            std::copy(gI[p].begin(), gI[p].end(), ly);
          }
          if (gproj[p][r] >= 0) graded_input(gproj[p][r], t, nullptr, ly);
          const T* b = tape[p][ns_ + nsyn[p] + r].data_ptr<T>() + t * n;
          T* gb = gring[p][r].data() + slot * n;
          std::fill(gb, gb + n, T(0));
          for (int64_t s = 0; s < ns; ++s) {
            T* l = LM[p].data() + (rm.first + s) * n;
            const T* xm = Xm[p].data() + (rm.first + s) * n;
            const T k = T(kout[s]), c = T(inc[s]);
            T acck = T(0), accc = T(0);
            for (int64_t i = 0; i < n; ++i) {
              acck += ly[i] * xm[i];
              l[i] += k * ly[i];
              accc += b[i] * l[i];
              gb[i] += c * l[i];
            }
            g[1 + ns * ns + ns + s] += (double)acck;
            g[1 + ns * ns + s] += (double)accc;
            std::copy(l, l + n, GX[p][rm.first + s]);
          }
        }
        // the presynaptic states of graded synapses leaving p: their exponential Euler
        // step from the step's start, backwards (to the states and to V of the start)
        for (size_t e = 0; e < pre_vals[p].size(); ++e) {
          const int64_t fn = pre_meta[p][3 * e], first = pre_meta[p][3 * e + 1],
                        nx = pre_meta[p][3 * e + 2];
          const double* qv = pre_vals[p][e].data();
          const T* V0 = tape[p][meta[p].vindex].data_ptr<T>() + t * n;
          T* gV = GS[p][meta[p].vindex];
          T sv[16], lo[16], gsv[16];
          for (int64_t i = 0; i < n; ++i) {
            for (int64_t k = 0; k < nx; ++k) {
              sv[k] = tape[p][ns_ + first + k].data_ptr<T>()[t * n + i];
              lo[k] = GX[p][first + k][i];
            }
            syn_pre_grad<T>(fn, V0[i], sv, qv, tdt, lo, gsv, gV[i]);
            for (int64_t k = 0; k < nx; ++k) GX[p][first + k][i] = gsv[k];
          }
        }
      }
      for (size_t s = 0; s < rasters.size(); ++s)
        weight_grads(false, (int64_t)s, t, rasters[s].data_ptr<uint8_t>() + t * rasters[s].size(1),
                     rasters[s].size(1));
      // the graded projections' share of the adjoints of the step's start presynaptic states
      for (size_t p = 0; p < npop; ++p) {
        const int64_t n = meta[p].n;
        for (int64_t v = 0; v < nsyn[p]; ++v) {
          T* gx = GX[p][v];
          T* add = gpre[p].data() + v * n;
          for (int64_t i = 0; i < n; ++i) { gx[i] += add[i]; add[i] = T(0); }
        }
      }
    }
    // spikes of the steps before the run whose delays reach into it
    for (size_t h = 0; h < history.size(); ++h) {
      const bool from_pop = h < npop;
      const int64_t index = from_pop ? (int64_t)h : (int64_t)(h - npop);
      const int64_t len = history[h].size(0), nh = len ? history[h].size(1) : 0;
      // the history's own gradient (spikes of a previous call): every neuron's share
      torch::Tensor gh = want[3] && len ? torch::zeros({len, nh}, opts) : torch::empty({0}, opts);
      for (int64_t row = 0; row < len; ++row) {
        weight_grads(from_pop, index, row - len, history[h].data_ptr<uint8_t>() + row * nh, nh);
        if (gh.numel()) {
          T* g = gh.data_ptr<T>() + row * nh;
          for (int64_t i = 0; i < nh; ++i) g[i] = spike_share(from_pop, index, row - len, i);
        }
      }
      result.push_back({gh});
    }
    for (size_t p = 0; p < npop; ++p) {
      std::vector<torch::Tensor>& out = result[npop + nproj + p];
      for (auto& g : gconst[p])
        out.push_back(torch::tensor(g, torch::TensorOptions().dtype(torch::kFloat64)));
    }
  });
  return result;
}
"""


def generate_factor_gradient_cpp(index: int, model: SynapseModel) -> str:
    r"""C++ of the derivatives of a synapse model's voltage-dependent factor, printed from
    its definition's compiled expression: ``syn_factor_grad_<index>(V, q, dq)`` returns
    :math:`\partial B/\partial V` and writes :math:`\partial B/\partial q_m` to ``dq``
    (parameters in the model's order, as ``syn_factor_<index>`` reads them)."""
    expr = model.compiled.factor
    symbols = {s.name: s for s in expr.free_symbols}
    names = {p: f"T(q[{k}])" for k, p in enumerate(model.parameter_names)}
    names[VOLTAGE_SYMBOL] = "V"
    pr = _Printer(CPP, names).doprint

    def derivative(name):
        return pr(sympy.diff(expr, symbols[name])) if name in symbols else "T(0)"

    lines = [f"template <typename T> HH_INLINE T syn_factor_grad_{index}(T V, const double* q, "
             f"T* dq) {{", "  (void)V; (void)q;"]
    lines += [f"  dq[{k}] = {derivative(p)};" for k, p in enumerate(model.parameter_names)]
    lines += [f"  return {derivative(VOLTAGE_SYMBOL)};", "}"]
    return "\n".join(lines) + "\n"


def generate_graded_gradient_cpp(index: int, model: SynapseModel) -> str:
    r"""C++ of the derivatives of a graded synapse model's presynaptic step and transmitted
    signal, printed from its definition's compiled expressions (the step
    :math:`s_m' = s_m + \Delta t\,\operatorname{exprel}(-\lambda_m\Delta t)\,f_m(V, s)` of
    ``syn_pre_<index>`` differentiated symbolically):

    - ``syn_pre_grad_<index>(V, s, q, dt, lo, gs, gV)``: with ``lo`` the adjoint of
      :math:`s'`, writes :math:`\bar s_k = \sum_m \bar s'_m\,\partial s'_m/\partial s_k`
      to ``gs`` and adds :math:`\sum_m \bar s'_m\,\partial s'_m/\partial V` to ``gV``;
    - ``syn_transmit_grad_<index>(s, q, ds)``: :math:`\partial\,\mathrm{transmit}/
      \partial s_k` to ``ds``."""
    compiled = model.compiled
    exprs = [_kernel_expr(e) for e in list(compiled.pre_drift) + list(compiled.pre_rate)
             + [compiled.transmit]]
    found = {x.name: x for e in exprs for x in sympy.sympify(e).free_symbols}
    sym = lambda name: found.get(name, sympy.Symbol(name))  # noqa: E731
    dt = sympy.Symbol("dt_step__")
    names = {p: f"T(q[{k}])" for k, p in enumerate(model.parameter_names)}
    names[VOLTAGE_SYMBOL] = "V"
    names.update({x: f"s[{k}]" for k, x in enumerate(model.presynaptic_names)})
    names[dt.name] = "dt"
    pr = _Printer(CPP, names).doprint
    states = [sym(x) for x in model.presynaptic_names]
    nx = len(states)
    drift, rate = exprs[:nx], exprs[nx:2 * nx]
    new = [x + dt * _kernel_expr(exprel(-lam * dt)) * f
           for x, f, lam in zip(states, drift, rate)]

    def total(var):
        terms = [f"lo[{m}]*({pr(d)})" for m, e in enumerate(new)
                 for d in [sympy.diff(e, var)] if d != 0]
        return " + ".join(terms) if terms else "T(0)"

    lines = [f"template <typename T> HH_INLINE void syn_pre_grad_{index}(T V, const T* s, "
             f"const double* q, T dt, const T* lo, T* gs, T& gV) {{",
             "  (void)V; (void)s; (void)q; (void)dt; (void)lo;"]
    lines += [f"  gs[{k}] = {total(x)};" for k, x in enumerate(states)]
    lines += [f"  gV += {total(sym(VOLTAGE_SYMBOL))};", "}",
              f"template <typename T> HH_INLINE void syn_transmit_grad_{index}(const T* s, "
              f"const double* q, T* ds) {{", "  (void)s; (void)q;"]
    lines += [f"  ds[{k}] = {pr(sympy.diff(exprs[-1], x))};" for k, x in enumerate(states)]
    return "\n".join(lines + ["}"]) + "\n"


def _graded_gradient_dispatch(synapse_models: Sequence[SynapseModel]) -> str:
    pre = [f"    case {k}: syn_pre_grad_{k}<T>(V, s, q, dt, lo, gs, gV); return;"
           for k, m in enumerate(synapse_models) if m.is_graded]
    transmit = [f"    case {k}: syn_transmit_grad_{k}<T>(s, q, ds); return;"
                for k, m in enumerate(synapse_models) if m.is_graded]
    return "\n".join([
        "template <typename T> void syn_pre_grad(int64_t fn, T V, const T* s, const double* q,"
        " T dt, const T* lo, T* gs, T& gV) {",
        "  switch (fn) {", *pre,
        '    default: TORCH_CHECK(false, "no presynaptic function ", fn);', "  }", "}",
        "template <typename T> void syn_transmit_grad(int64_t fn, const T* s, const double* q,"
        " T* ds) {",
        "  switch (fn) {", *transmit,
        '    default: TORCH_CHECK(false, "no transmit function ", fn);', "  }", "}", ""])


def _factor_gradient_dispatch(synapse_models: Sequence[SynapseModel]) -> str:
    cases = [f"    case {k}: return syn_factor_grad_{k}<T>(V, q, dq);"
             for k, m in enumerate(synapse_models) if m.compiled.factor is not None]
    return "\n".join([
        "template <typename T> T syn_factor_grad(int64_t fn, T V, const double* q, T* dq) {",
        "  switch (fn) {", *cases,
        '    default: TORCH_CHECK(false, "no factor function ", fn);', "  }", "  return T(0);",
        "}", ""])


def generate_backward_cpp(models: Sequence[ModelDefinition],
                          synapse_models: Sequence[SynapseModel] = ()) -> str:
    """C++ of the network kernel's backward for the neuron ``models`` and the nonlinear
    ``synapse_models`` (indices as :func:`.fused.generate_network_cpp`'s; appended to its
    source, after ``network_forward``)."""
    functions = "namespace {\n" + "\n".join(
        _model_backward_function(k, m) for k, m in enumerate(models))
    functions += "".join(generate_factor_gradient_cpp(k, m)
                         for k, m in enumerate(synapse_models) if m.compiled.factor is not None)
    functions += "".join(generate_graded_gradient_cpp(k, m)
                         for k, m in enumerate(synapse_models) if m.is_graded)
    functions += _factor_gradient_dispatch(synapse_models)
    functions += _graded_gradient_dispatch(synapse_models) + "}  // namespace\n"
    cases = "\n".join(
        f"    case {k}: backward_model_{k}<T, RESET>(n, S, P, I, G, J, GS, gZ, zgrad, ready, "
        f"gI, gG, gJ, GP, dt); break;" for k in range(len(models)))
    return functions + _BACKWARD_DRIVER.replace("MODEL_BACKWARD_CASES", cases)
