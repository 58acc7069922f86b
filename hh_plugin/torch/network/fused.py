r"""The fused CPU path of :class:`~hh_plugin.torch.network.NetworkModule`: the whole
time loop of a network in one generated C++ function (forward only, no gradients).

What is generated per neuron model is the step of
:func:`~hh_plugin.torch.fused.codegen.step_program` with the synaptic inputs
(``synaptic=True``: the conductance hook of :func:`~hh_plugin.torch.functional.hh.hh_step`);
the math helpers (``exp``, ``exprel``, Heaviside) are those of the fused HH kernel
(:mod:`hh_plugin.torch.fused.cpp_source`). Per synapse model, what its definition
(:class:`~hh_plugin.network.synapses.SynapseModel`) says is used as the step loop
(:mod:`.receptors`) uses it: the linear parts as the numbers the definition computes
(propagator :math:`P = e^{A\Delta t}`, increments :math:`c_s`, output coefficients
:math:`k_s`: :meth:`~.receptors.ReceptorNumerics.constants`), and the nonlinear
expressions (the voltage-dependent factor :math:`B(V)`, a graded synapse's presynaptic
drift :math:`f`, rate :math:`\lambda = -\partial f/\partial x` and ``transmit``) printed to
C++ from the definition's compiled expressions (:func:`generate_synapse_cpp`). The
schedule is the step loop's, step by step:

1. spike sources deliver; every graded projection computes its target's input
   :math:`y_j = \sum_i w_{ij}\,\mathrm{transmit}(s_i)` from the presynaptic states of the
   step's start;
2. for each population in ``spec.order``: the plastic projections into it take the spikes
   due now (Tsodyks-Markram: release :math:`r = u x`, :math:`x \mathrel{-}= r`,
   :math:`u \mathrel{+}= U(1 - u)`, transmit :math:`w r`; a plasticity rule such as STDP:
   transmit the current :math:`w`, then the rule's ``on_pre`` statements, e.g.
   :math:`a_{pre} \mathrel{+}= \Delta_{pre}`,
   :math:`w \leftarrow \operatorname{clip}(w + a_{post}, 0, w_{max})`, the weight updates
   printed to C++ from the :class:`~hh_plugin.network.synapses.PlasticityModel`
   (:func:`generate_plasticity_cpp`)); each receptor adds
   :math:`c_s b` (:math:`b` its ring-buffer slot of this step) to its states and gives its
   output :math:`y = \sum_s k_s x_s`, times :math:`B(V_k)` at the step's start potential
   for a conductance (:math:`G \mathrel{+}= y`, :math:`J \mathrel{+}= y E`; a current:
   :math:`I \mathrel{+}= y`); every neuron is updated (a ``#pragma omp simd`` loop; OpenMP
   threads over neurons, one per 32,768 neurons of the population, at most
   ``torch.get_num_threads()``); the receptors' states advance,
   :math:`x \leftarrow P x` (a pulse is cleared); the presynaptic states of graded synapses
   leaving the population take their exponential Euler step from the step's start,
   :math:`x' = x + \Delta t\,\operatorname{exprel}(-\lambda\Delta t) f`; the spiking neurons
   are collected; the plastic projections into it let their traces decay
   (:math:`a \leftarrow a\,e^{-\lambda\Delta t}`) and run the rule's ``on_post`` for the
   postsynaptic spikes (STDP: :math:`a_{post} \mathrel{+}= \Delta_{post}`,
   :math:`w \leftarrow \operatorname{clip}(w + a_{pre}, 0, w_{max})`);
3. spikes are delivered *event by event*: for each spiking source neuron, its synapses
   (compressed rows by source) add their weights into the target receptor's ring buffer at
   slot :math:`(k + d) \bmod L` (:math:`L` = the longest delay into the target + 1), or,
   for a plastic projection, the neuron is queued for step :math:`k + d`;
4. Tsodyks-Markram states relax exactly over the step:
   :math:`u \leftarrow U + (u - U)e^{-\Delta t/\tau_f}`,
   :math:`x \leftarrow 1 + (x - 1)e^{-\Delta t/\tau_d}`.

So the cost per step is the neuron update plus the synapses of the neurons that spiked
(plus every synapse of a graded projection), not the number of synapses. Plasticity
states (``NetworkState.short_term``, ``NetworkState.plasticity``) are updated in the forward
pass, as on the step loop. In float64 the results equal the step loop's to round-off
(sums are taken in another order), so the spike steps are the same.

The extension is compiled at first use for the set of neuron models and nonlinear synapse
models of a network (parameter values are arguments, not compiled in) and cached like the
fused HH kernel (:func:`hh_plugin.torch.fused.cache_dir`, ``$HH_PLUGIN_CACHE_DIR``), under
the same build lock (:mod:`hh_plugin.torch.fused.cpp`): of several processes that start at
once (``torchrun`` workers) one compiles while the others wait and then load its build; a
build killed mid-way does not block later ones, and a wait longer than
``$HH_PLUGIN_BUILD_TIMEOUT`` seconds gives up with
:class:`~hh_plugin.torch.fused.cpp.PathUnavailable` (the ``'auto'`` path then runs the
naive loop, with a warning).
"""

from __future__ import annotations

import threading
from typing import Dict, List, Sequence

import numpy as np
import torch

from ...model.definition import ModelDefinition
from ...model.expressions import VOLTAGE_SYMBOL
from ...network.synapses import PlasticityModel, SynapseModel
from ..fused.codegen import CPP, RESET_CODES, _Printer, exprel_constants, kernel_parameters, \
    source_hash, step_program
from ..fused.cpp import PathUnavailable, cached_build, compile_flags, compiler_available
from ..fused.cpp_source import _CPP_HEADER
from ..functional.hh import _cast

_LOCK = threading.Lock()
_EXTENSIONS: Dict[str, object] = {}
_FAILURES: Dict[str, str] = {}


def _model_function(index: int, model: ModelDefinition) -> str:
    program = step_program(model, CPP, synaptic=True)
    ns, np_ = len(program.states), len(program.parameters)
    lines = [f"template <typename T, int RESET>",
             f"void step_model_{index}(int64_t i0, int64_t i1, T* const* S, const T* const* P,",
             f"                     const T* __restrict I, const T* __restrict G,",
             f"                     const T* __restrict J, T* __restrict Z,",
             f"                     T* __restrict H, T dt) {{",
             f"  // model {model.name}: {ns} states, {np_} parameters"]
    for k in range(ns):
        lines.append(f"  T* __restrict S{k} = S[{k}];")
    for k in range(np_):
        lines.append(f"  const T* __restrict P{k} = P[{k}];")
    lines.append("#pragma omp simd")
    lines.append("  for (int64_t i = i0; i < i1; ++i) {")
    for k, s in enumerate(program.states):
        lines.append(f"    const T s_{s} = S{k}[i];")
    for k, p in enumerate(program.parameters):
        lines.append(f"    const T p_{p} = P{k}[i];")
    lines += ["    const T I_in = I[i];", "    const T G_syn = G[i];", "    const T J_syn = J[i];"]
    lines += [f"    {line}" for line in program.forward]
    for k, s in enumerate(program.states):
        lines.append(f"    S{k}[i] = o_{s};")
    lines += ["    Z[i] = o_z;", "    H[i] = f_H1;", "  }", "}", ""]
    return "\n".join(lines)


def synapse_models_with_code(spec) -> List[SynapseModel]:
    """The synapse models of ``spec`` that need generated C++ (a voltage-dependent factor,
    or graded presynaptic states), in order of first use; the linear models need none."""
    out: List[SynapseModel] = []
    for table in list(spec.receptors.values()) + list(spec.presynaptic.values()):
        for syn in table.values():
            model = syn.model
            if (model.factor is not None or model.is_graded) and model not in out:
                out.append(model)
    return out


def generate_synapse_cpp(index: int, model: SynapseModel) -> str:
    r"""C++ of one synapse model's nonlinear expressions, printed from its definition's
    compiled expressions (parameters as ``q[k]``, in the model's parameter order):

    - ``syn_factor_<index>(V, q)``: :math:`B(V)` (V in mV);
    - ``syn_pre_<index>(V, s, q, dt, out)``: one exponential Euler step of the presynaptic
      states, :math:`x' = x + \Delta t\,\operatorname{exprel}(-\lambda\Delta t)\,f(V, x)`,
      :math:`\lambda = -\partial f/\partial x`, all from the step's start;
    - ``syn_transmit_<index>(s, q)``: what the weights multiply.
    """
    compiled = model.compiled
    names = {p: f"T(q[{k}])" for k, p in enumerate(model.parameter_names)}
    names[VOLTAGE_SYMBOL] = "V"
    names.update({x: f"s[{k}]" for k, x in enumerate(model.presynaptic_names)})
    pr = _Printer(CPP, names).doprint
    lines = [f"// synapse model {model.name}"]
    if compiled.factor is not None:
        lines += [f"template <typename T> HH_INLINE T syn_factor_{index}(T V, const double* q) {{",
                  "  (void)V; (void)q;",
                  f"  return {pr(compiled.factor)};", "}"]
    if model.is_graded:
        lines += [f"template <typename T> HH_INLINE void syn_pre_{index}(T V, const T* s, "
                  f"const double* q, T dt, T* out) {{", "  (void)V; (void)q;"]
        for k, (f, lam) in enumerate(zip(compiled.pre_drift, compiled.pre_rate)):
            lines += [f"  {{ const T f = {pr(f)};", f"    const T lam = {pr(lam)};",
                      f"    out[{k}] = s[{k}] + dt*hh_exprel<T>(-lam*dt)*f; }}"]
        lines += ["}",
                  f"template <typename T> HH_INLINE T syn_transmit_{index}(const T* s, "
                  f"const double* q) {{", "  (void)s; (void)q;",
                  f"  return {pr(compiled.transmit)};", "}"]
    return "\n".join(lines) + "\n"


def plasticity_models_of(spec) -> List[PlasticityModel]:
    """The plasticity models of ``spec``'s projections, in order of first use."""
    out: List[PlasticityModel] = []
    for proj in spec.projections:
        if proj.stdp is not None and proj.stdp.model not in out:
            out.append(proj.stdp.model)
    return out


def _plasticity_code(index: int, key: int, k: int) -> int:
    return index * 64 + key * 32 + k


def generate_plasticity_cpp(index: int, model: PlasticityModel) -> str:
    r"""C++ of a plasticity model's weight statements, printed from its definition:
    ``plast_<index>_<pre|post>_<k>(a, b, w, q)`` returns :math:`f` of the ``k``-th
    statement (``a``: the presynaptic neuron's traces, ``b``: the postsynaptic neuron's,
    ``w``: the synapse's weight, ``q``: the parameter values)."""
    names = {p: f"T(q[{k}])" for k, p in enumerate(model.parameter_names)}
    names.update({x: f"a[{k}]" for k, x in enumerate(model.pre_trace_names)})
    names.update({x: f"b[{k}]" for k, x in enumerate(model.post_trace_names)})
    names["w"] = "w"
    pr = _Printer(CPP, names).doprint
    lines = [f"// plasticity model {model.name}"]
    for key, statements in (("pre", model.on_pre), ("post", model.on_post)):
        for k in range(len(statements)):
            expr = model.weight_update(f"on_{key}", k)
            if expr is None:
                continue
            lines += [f"template <typename T> HH_INLINE T plast_{index}_{key}_{k}(const T* a, "
                      f"const T* b, T w, const double* q) {{", "  (void)a; (void)b; (void)w; (void)q;",
                      f"  return {pr(expr)};", "}"]
    return "\n".join(lines) + "\n"


def _plasticity_dispatch(models: Sequence[PlasticityModel]) -> str:
    cases = []
    for m, model in enumerate(models):
        for key, name, statements in ((0, "pre", model.on_pre), (1, "post", model.on_post)):
            for k in range(len(statements)):
                if model.weight_update(f"on_{name}", k) is not None:
                    cases.append(f"    case {_plasticity_code(m, key, k)}: "
                                 f"return plast_{m}_{name}_{k}<T>(a, b, w, q);")
    return "\n".join([
        "template <typename T> T plast_w(int64_t code, const T* a, const T* b, T w, "
        "const double* q) {",
        "  switch (code) {", *cases,
        '    default: TORCH_CHECK(false, "no plasticity function ", code);', "  }",
        "  return T(0);", "}", ""])


def _synapse_dispatch(models: Sequence[SynapseModel]) -> str:
    factor = [f"    case {k}: return syn_factor_{k}<T>(V, q);"
              for k, m in enumerate(models) if m.compiled.factor is not None]
    pre = [f"    case {k}: syn_pre_{k}<T>(V, s, q, dt, out); return;"
           for k, m in enumerate(models) if m.is_graded]
    transmit = [f"    case {k}: return syn_transmit_{k}<T>(s, q);"
                for k, m in enumerate(models) if m.is_graded]
    return "\n".join([
        "template <typename T> T syn_factor(int64_t fn, T V, const double* q) {",
        "  switch (fn) {", *factor,
        '    default: TORCH_CHECK(false, "no factor function ", fn);', "  }", "  return T(1);",
        "}",
        "template <typename T> void syn_pre(int64_t fn, T V, const T* s, const double* q, T dt,"
        " T* out) {",
        "  switch (fn) {", *pre,
        '    default: TORCH_CHECK(false, "no presynaptic function ", fn);', "  }", "}",
        "template <typename T> T syn_transmit(int64_t fn, const T* s, const double* q) {",
        "  switch (fn) {", *transmit,
        '    default: TORCH_CHECK(false, "no transmit function ", fn);', "  }", "  return T(0);",
        "}", ""])


_DRIVER = r"""
struct PopMeta { int64_t model, n, reset, refractory, ring, vindex; };
struct RecMeta { int64_t kind, ns, first, cond, fn, pulse; };
struct Plast {
  int64_t model = -1, npre = 0, npost = 0;
  double lo = 0, hi = 0;
  std::vector<double> decay, q;
  std::vector<std::pair<int64_t, double>> on_pre, on_post;
};

template <typename T, int RESET>
void step_dispatch(int64_t model, int64_t i0, int64_t i1, T* const* S, const T* const* P,
                   const T* I, const T* G, const T* J, T* Z, T* H, T dt) {
  switch (model) {
MODEL_CASES
    default: TORCH_CHECK(false, "unknown model index ", model);
  }
}

constexpr int64_t NEURONS_PER_THREAD = 32768;

template <typename T>
void step_population(int64_t model, int64_t reset, int64_t n, T* const* S, const T* const* P,
                     const T* I, const T* G, const T* J, T* Z, T* H, T dt) {
  const int64_t chunk = 256;
  const int64_t nchunks = (n + chunk - 1) / chunk;
  // One thread per NEURONS_PER_THREAD neurons, at most torch's intra-op threads: every
  // step ends at a barrier, and below that much work per step the threads' waiting costs
  // more than they gain (docs/performance.md, "Threads of the network kernel").
  const int64_t threads = std::min<int64_t>(at::get_num_threads(),
                                            std::max<int64_t>(1, n / NEURONS_PER_THREAD));
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t i0 = c * chunk, i1 = std::min(n, i0 + chunk);
    if (reset == 0) step_dispatch<T, 0>(model, i0, i1, S, P, I, G, J, Z, H, dt);
    else if (reset == 1) step_dispatch<T, 1>(model, i0, i1, S, P, I, G, J, Z, H, dt);
    else step_dispatch<T, 2>(model, i0, i1, S, P, I, G, J, Z, H, dt);
  }
}

// Runs `steps` steps of the network. Populations come in update order; every tensor is
// contiguous on the CPU in the dtype of the states (indices int64, rasters uint8).
//   pop_meta: 6 per population (model index, size, reset code, refractory steps or -1,
//             ring-buffer length L, index of V among the states);
//   states, params: per population its state variables and (expanded, per-neuron)
//             kernel parameters, all (n,), updated in place;
//   syn:      per population its synaptic variables (the receptors' states, then the
//             presynaptic states of graded synapses leaving it), (n,), updated in place;
//   rec_meta: per population 6 per receptor (kind 0 spikes / 1 graded, number of states,
//             index of its first state in syn, 1 = conductance, factor function or -1,
//             1 = pulse); rec_vals: per receptor [E, P (ns*ns, row-major), c (ns), k (ns),
//             parameter values];
//   pre_meta: per population 3 per graded synapse leaving it (function index, index of its
//             first state in syn, number of states); pre_vals: its parameter values;
//   ext: per population (steps, n) external current or an empty tensor;
//   since: per population (n,) steps since the last spike, or empty (no refractory);
//   rasters: per spike source (steps, n_src) uint8;
//   proj_meta: 9 per projection (source is a population: 1/0, source index, target
//             population index, receptor index, graded 1/0, presynaptic entry of a graded
//             one, Tsodyks-Markram 1/0, plasticity model index or -1, its one delay or -1);
//             proj_csr: rowptr (n_pre + 1), post, weight, delay, pre (per synapse, sorted
//             by source);
//   proj_vals: Tsodyks-Markram [U, e^{-dt/tau_f}, e^{-dt/tau_d}], then plasticity [w_lo,
//             w_hi, number of pre traces, of post traces, each trace's decay factor,
//             number of on_pre statements, per statement (trace index, increment) or
//             (-1 - k for the weight statement k, 0), the same for on_post, parameters];
//   proj_state: Tsodyks-Markram [u, x] (n_pre), then plasticity [w (per synapse, sorted by
//             source), each pre trace (n_pre), each post trace (n_post), post_rowptr
//             (n_post + 1), post_syn (synapses by target, as positions in the sorted
//             list)], updated in place;
//   record: per population the (steps, n) tensors to fill, record_index: which variable
//             each is (state k < NS, else synaptic variable k - NS);
//   history: per population, then per source, (len, n) uint8 spikes of the last steps
//             before this run (oldest first), delivered where their delays reach the run.
// Returns one (steps, n) uint8 spike raster per population.
std::vector<torch::Tensor> network_forward(
    int64_t steps, double dt,
    std::vector<int64_t> pop_meta,
    std::vector<std::vector<torch::Tensor>> states,
    std::vector<std::vector<torch::Tensor>> params,
    std::vector<std::vector<torch::Tensor>> syn,
    std::vector<std::vector<int64_t>> rec_meta,
    std::vector<std::vector<std::vector<double>>> rec_vals,
    std::vector<std::vector<int64_t>> pre_meta,
    std::vector<std::vector<std::vector<double>>> pre_vals,
    std::vector<torch::Tensor> ext,
    std::vector<torch::Tensor> since,
    std::vector<torch::Tensor> rasters,
    std::vector<int64_t> proj_meta,
    std::vector<std::vector<torch::Tensor>> proj_csr,
    std::vector<std::vector<double>> proj_vals,
    std::vector<std::vector<torch::Tensor>> proj_state,
    std::vector<std::vector<torch::Tensor>> record,
    std::vector<std::vector<int64_t>> record_index,
    std::vector<torch::Tensor> history) {
  const size_t npop = states.size();
  TORCH_CHECK(pop_meta.size() == 6 * npop, "pop_meta: 6 values per population");
  TORCH_CHECK(params.size() == npop && syn.size() == npop && rec_meta.size() == npop &&
              rec_vals.size() == npop && pre_meta.size() == npop && pre_vals.size() == npop &&
              ext.size() == npop && since.size() == npop && record.size() == npop &&
              record_index.size() == npop, "one entry per population in every list");
  const size_t nproj = proj_csr.size();
  TORCH_CHECK(proj_meta.size() == 9 * nproj && proj_vals.size() == nproj &&
              proj_state.size() == nproj, "proj_meta: 9 values per projection");
  TORCH_CHECK(npop > 0 && states[0].size() > 0, "no population");
  auto opts = states[0][0].options();
  std::vector<torch::Tensor> out;
  std::vector<PopMeta> meta(npop);
  std::vector<std::vector<RecMeta>> rmeta(npop);
  for (size_t p = 0; p < npop; ++p) {
    meta[p] = {pop_meta[6 * p], pop_meta[6 * p + 1], pop_meta[6 * p + 2],
               pop_meta[6 * p + 3], pop_meta[6 * p + 4], pop_meta[6 * p + 5]};
    out.push_back(torch::zeros({steps, meta[p].n}, opts.dtype(torch::kUInt8)));
    TORCH_CHECK(rec_meta[p].size() == 6 * rec_vals[p].size(), "rec_meta: 6 per receptor");
    TORCH_CHECK(pre_meta[p].size() == 3 * pre_vals[p].size(), "pre_meta: 3 per entry");
    for (size_t r = 0; r < rec_vals[p].size(); ++r) {
      const int64_t* m = rec_meta[p].data() + 6 * r;
      rmeta[p].push_back({m[0], m[1], m[2], m[3], m[4], m[5]});
      TORCH_CHECK(m[1] >= 0 && m[1] <= 16 && m[2] >= 0 && m[2] + m[1] <= (int64_t)syn[p].size() &&
                  (int64_t)rec_vals[p][r].size() >= 1 + m[1] * m[1] + 2 * m[1],
                  "receptor layout");
    }
  }
  AT_DISPATCH_FLOATING_TYPES(states[0][0].scalar_type(), "network_forward", [&] {
    using T = scalar_t;
    const T tdt = T(dt);
    // per population: pointers, scratch and ring buffers
    std::vector<std::vector<T*>> S(npop), X(npop);
    std::vector<std::vector<const T*>> P(npop);
    std::vector<std::vector<T>> I(npop), G(npop), J(npop), Z(npop), H(npop), V0(npop);
    std::vector<std::vector<T>> Ybuf(npop), Xold(npop);  // a receptor's output, old states
    std::vector<std::vector<std::vector<T>>> ring(npop), gy(npop);
    std::vector<std::vector<int64_t>> fired(npop);
    for (size_t p = 0; p < npop; ++p) {
      const int64_t n = meta[p].n;
      for (auto& t : states[p]) {
        TORCH_CHECK(t.is_contiguous() && t.numel() == n && t.scalar_type() == opts.dtype().toScalarType(),
                    "state tensors must be contiguous (n,) of one dtype");
        S[p].push_back(t.data_ptr<T>());
      }
      TORCH_CHECK(meta[p].vindex >= 0 && meta[p].vindex < (int64_t)S[p].size(), "V index");
      for (auto& t : params[p]) {
        TORCH_CHECK(t.is_contiguous() && t.numel() == n, "parameters must be expanded to (n,)");
        P[p].push_back(t.data_ptr<T>());
      }
      for (auto& t : syn[p]) {
        TORCH_CHECK(t.is_contiguous() && t.numel() == n, "synaptic variables must be (n,)");
        X[p].push_back(t.data_ptr<T>());
      }
      for (auto& rm : rmeta[p]) {
        ring[p].emplace_back(rm.kind == 0 ? (size_t)(meta[p].ring * n) : 0, T(0));
        gy[p].emplace_back(rm.kind == 1 ? (size_t)n : 0, T(0));
      }
      for (size_t e = 0; e < pre_vals[p].size(); ++e)
        TORCH_CHECK(pre_meta[p][3 * e + 2] >= 1 && pre_meta[p][3 * e + 2] <= 16 &&
                    pre_meta[p][3 * e + 1] + pre_meta[p][3 * e + 2] <= (int64_t)syn[p].size(),
                    "presynaptic layout");
      if (ext[p].numel()) TORCH_CHECK(ext[p].is_contiguous() && ext[p].numel() == steps * n,
                                      "external current must be (steps, n)");
      if (meta[p].refractory >= 0) TORCH_CHECK(since[p].numel() == n, "since must be (n,)");
      I[p].resize(n); G[p].resize(n); J[p].resize(n); Z[p].resize(n); H[p].resize(n);
      V0[p].resize(n);
      Ybuf[p].resize(n);
      int64_t max_states = 0;
      for (const RecMeta& rm : rmeta[p]) max_states = std::max<int64_t>(max_states, rm.ns);
      Xold[p].resize(max_states * n);
      fired[p].reserve(n);
    }
    // plastic projections: queues of arriving source neurons, by due step mod (d + 1)
    std::vector<std::vector<std::vector<int64_t>>> pending(nproj);
    std::vector<std::vector<T>> transmitted(nproj);
    std::vector<Plast> plast(nproj);
    for (size_t q = 0; q < nproj; ++q) {
      const int64_t* pm = proj_meta.data() + 9 * q;
      const bool stp = pm[6] != 0, stdp = pm[7] >= 0;
      TORCH_CHECK(proj_csr[q].size() == 5, "proj_csr: 5 tensors per projection");
      if (stdp) {
        const std::vector<double>& v = proj_vals[q];
        size_t o = stp ? 3 : 0;
        Plast& pl = plast[q];
        auto at = [&](size_t k) { TORCH_CHECK(k < v.size(), "plasticity values"); return v[k]; };
        pl.model = pm[7];
        pl.lo = at(o); pl.hi = at(o + 1);
        pl.npre = (int64_t)at(o + 2); pl.npost = (int64_t)at(o + 3);
        TORCH_CHECK(pl.npre >= 0 && pl.npre <= 16 && pl.npost >= 0 && pl.npost <= 16, "traces");
        o += 4;
        for (int64_t k = 0; k < pl.npre + pl.npost; ++k) pl.decay.push_back(at(o++));
        for (int side = 0; side < 2; ++side) {
          auto& list = side == 0 ? pl.on_pre : pl.on_post;
          const int64_t ns = (int64_t)at(o++);
          TORCH_CHECK(ns >= 0 && ns <= 16, "statements");
          for (int64_t k = 0; k < ns; ++k) { list.emplace_back((int64_t)at(o), at(o + 1)); o += 2; }
        }
        pl.q.assign(v.begin() + o, v.end());
      }
      TORCH_CHECK(proj_vals[q].size() >= (size_t)(3 * stp) &&
                  proj_state[q].size() == (size_t)(2 * stp + (stdp ? 3 + plast[q].npre +
                                                                    plast[q].npost : 0)),
                  "plasticity layout");
      if (stp || stdp) {
        TORCH_CHECK(pm[8] >= 0, "a plastic projection has one delay");
        pending[q].resize(pm[8] + 1);
      }
      if (pm[4]) transmitted[q].resize(proj_csr[q][0].numel() - 1);
    }
    auto deliver = [&](bool from_pop, int64_t index, int64_t t, const std::vector<int64_t>& idx) {
      if (idx.empty()) return;
      for (size_t q = 0; q < nproj; ++q) {
        const int64_t* pm = proj_meta.data() + 9 * q;
        if ((pm[0] != 0) != from_pop || pm[1] != index || pm[4] != 0) continue;
        if (pm[6] || pm[7] >= 0) {
          const int64_t due = t + pm[8];
          if (due >= 0) {
            auto& list = pending[q][due % (pm[8] + 1)];
            list.insert(list.end(), idx.begin(), idx.end());
          }
          continue;
        }
        const int64_t tgt = pm[2], r = pm[3];
        const int64_t* rowptr = proj_csr[q][0].data_ptr<int64_t>();
        const int64_t* post = proj_csr[q][1].data_ptr<int64_t>();
        const T* w = proj_csr[q][2].data_ptr<T>();
        const int64_t* delay = proj_csr[q][3].data_ptr<int64_t>();
        const int64_t L = meta[tgt].ring, n = meta[tgt].n;
        T* buf = ring[tgt][r].data();
        for (int64_t j : idx)
          for (int64_t k = rowptr[j]; k < rowptr[j + 1]; ++k) {
            const int64_t due = t + delay[k];
            if (due >= 0) buf[(due % L) * n + post[k]] += w[k];
          }
      }
    };
    // the spikes of a plastic projection due now, into its receptor's ring slot
    auto arrive = [&](size_t q, int64_t t) {
      const int64_t* pm = proj_meta.data() + 9 * q;
      auto& list = pending[q][t % (pm[8] + 1)];
      if (list.empty()) return;
      const bool stp = pm[6] != 0, stdp = pm[7] >= 0;
      const int64_t tgt = pm[2], r = pm[3];
      const int64_t* rowptr = proj_csr[q][0].data_ptr<int64_t>();
      const int64_t* post = proj_csr[q][1].data_ptr<int64_t>();
      const int64_t n = meta[tgt].n;
      T* buf = ring[tgt][r].data() + (t % meta[tgt].ring) * n;
      T* u = stp ? proj_state[q][0].data_ptr<T>() : nullptr;
      T* x = stp ? proj_state[q][1].data_ptr<T>() : nullptr;
      const size_t o = stp ? 2 : 0;
      const Plast& pl = plast[q];
      T* w = stdp ? proj_state[q][o].data_ptr<T>() : proj_csr[q][2].data_ptr<T>();
      T a[16], b[16];
      for (int64_t i : list) {
        T rel = T(1);
        if (stp) {
          const T U = T(proj_vals[q][0]);
          rel = u[i] * x[i];
          x[i] = x[i] - rel;
          u[i] = u[i] + U * (T(1) - u[i]);
        }
        for (int64_t k = rowptr[i]; k < rowptr[i + 1]; ++k) buf[post[k]] += stp ? w[k] * rel : w[k];
        if (stdp) {  // the rule's on_pre, statement by statement
          for (const auto& st : pl.on_pre) {
            if (st.first >= 0) {
              T* tr = proj_state[q][o + 1 + st.first].data_ptr<T>();
              tr[i] = tr[i] + T(st.second);
              continue;
            }
            const int64_t code = pl.model * 64 + (-1 - st.first);
            for (int64_t c = 0; c < pl.npre; ++c) a[c] = proj_state[q][o + 1 + c].data_ptr<T>()[i];
            for (int64_t k = rowptr[i]; k < rowptr[i + 1]; ++k) {
              for (int64_t c = 0; c < pl.npost; ++c)
                b[c] = proj_state[q][o + 1 + pl.npre + c].data_ptr<T>()[post[k]];
              w[k] = std::min(std::max(w[k] + plast_w<T>(code, a, b, w[k], pl.q.data()),
                                       T(pl.lo)), T(pl.hi));
            }
          }
        }
      }
      list.clear();
    };
    std::vector<int64_t> src_idx;
    // spikes of the steps before this run whose delays reach into it
    for (size_t h = 0; h < history.size(); ++h) {
      const bool from_pop = h < npop;
      const int64_t index = from_pop ? (int64_t)h : (int64_t)(h - npop);
      const int64_t len = history[h].size(0), nh = len ? history[h].size(1) : 0;
      for (int64_t row = 0; row < len; ++row) {
        const uint8_t* z = history[h].data_ptr<uint8_t>() + row * nh;
        src_idx.clear();
        for (int64_t i = 0; i < nh; ++i) if (z[i]) src_idx.push_back(i);
        deliver(from_pop, index, row - len, src_idx);
      }
    }
    for (int64_t t = 0; t < steps; ++t) {
      for (size_t s = 0; s < rasters.size(); ++s) {
        const int64_t ns = rasters[s].size(1);
        const uint8_t* row = rasters[s].data_ptr<uint8_t>() + t * ns;
        src_idx.clear();
        for (int64_t i = 0; i < ns; ++i) if (row[i]) src_idx.push_back(i);
        deliver(false, (int64_t)s, t, src_idx);
      }
      // graded projections: the target's input from the presynaptic states of the step's start
      for (size_t q = 0; q < nproj; ++q) {
        const int64_t* pm = proj_meta.data() + 9 * q;
        if (!pm[4]) continue;
        const int64_t src = pm[1], e = pm[5];
        const int64_t fn = pre_meta[src][3 * e], first = pre_meta[src][3 * e + 1],
                      nx = pre_meta[src][3 * e + 2];
        const double* qv = pre_vals[src][e].data();
        T* tr = transmitted[q].data();
        T s[16];
        for (int64_t i = 0; i < meta[src].n; ++i) {
          for (int64_t k = 0; k < nx; ++k) s[k] = X[src][first + k][i];
          tr[i] = syn_transmit<T>(fn, s, qv);
        }
        const int64_t* rowptr = proj_csr[q][0].data_ptr<int64_t>();
        const int64_t* post = proj_csr[q][1].data_ptr<int64_t>();
        const T* w = proj_csr[q][2].data_ptr<T>();
        T* y = gy[pm[2]][pm[3]].data();
        std::fill(y, y + meta[pm[2]].n, T(0));
        for (int64_t i = 0; i < meta[src].n; ++i)
          for (int64_t k = rowptr[i]; k < rowptr[i + 1]; ++k) y[post[k]] += w[k] * tr[i];
      }
      for (size_t p = 0; p < npop; ++p) {
        const int64_t n = meta[p].n;
        const int64_t slot = t % meta[p].ring;
        for (size_t q = 0; q < nproj; ++q) {
          const int64_t* pm = proj_meta.data() + 9 * q;
          if (pm[2] == (int64_t)p && (pm[6] || pm[7] >= 0)) arrive(q, t);
        }
        T* Ip = I[p].data(); T* Gp = G[p].data(); T* Jp = J[p].data();
        const T* e = ext[p].numel() ? ext[p].data_ptr<T>() + t * n : nullptr;
        for (int64_t i = 0; i < n; ++i) { Ip[i] = e ? e[i] : T(0); Gp[i] = T(0); Jp[i] = T(0); }
        const T* Vs = S[p][meta[p].vindex];
        std::copy(Vs, Vs + n, V0[p].data());
        const size_t nr = rmeta[p].size();
        for (size_t r = 0; r < nr; ++r) {
          const RecMeta& rm = rmeta[p][r];
          const std::vector<double>& rv = rec_vals[p][r];
          const int64_t ns = rm.ns;
          const double* inc = rv.data() + 1 + ns * ns;
          const double* kout = inc + ns;
          const double* qv = kout + ns;
          const T E = T(rv[0]);
          T* const* x = X[p].data() + rm.first;
          // loops over the neurons innermost, so that they vectorise; per neuron the
          // arithmetic is that of x_s += c_s b, y = sum_s k_s x_s, in the order of s
          T* y = Ybuf[p].data();
          if (rm.kind == 0) {
            T* b = ring[p][r].data() + slot * n;
            for (int64_t s = 0; s < ns; ++s) {
              if (inc[s] == 0.0) continue;
              const T c = T(inc[s]);
              T* xs = x[s];
              for (int64_t i = 0; i < n; ++i) xs[i] += c * b[i];
            }
            std::fill(b, b + n, T(0));
            std::fill(y, y + n, T(0));
            for (int64_t s = 0; s < ns; ++s) {
              if (kout[s] == 0.0) continue;
              const T k = T(kout[s]);
              const T* xs = x[s];
              if (kout[s] == 1.0) for (int64_t i = 0; i < n; ++i) y[i] += xs[i];
              else for (int64_t i = 0; i < n; ++i) y[i] += xs[i] * k;
            }
          } else {
            std::copy(gy[p][r].data(), gy[p][r].data() + n, y);
          }
          if (rm.cond) {
            if (rm.fn >= 0)
              for (int64_t i = 0; i < n; ++i) y[i] = y[i] * syn_factor<T>(rm.fn, V0[p][i], qv);
            for (int64_t i = 0; i < n; ++i) { Gp[i] += y[i]; Jp[i] += y[i] * E; }
          } else {
            for (int64_t i = 0; i < n; ++i) Ip[i] += y[i];
          }
        }
        T* Zp = Z[p].data(); T* Hp = H[p].data();
        step_population<T>(meta[p].model, meta[p].reset, n, S[p].data(), P[p].data(),
                           Ip, Gp, Jp, Zp, Hp, tdt);
        for (size_t r = 0; r < nr; ++r) {  // x <- P x (a pulse is cleared)
          const RecMeta& rm = rmeta[p][r];
          if (rm.kind != 0) continue;
          const int64_t ns = rm.ns;
          const double* Pm = rec_vals[p][r].data() + 1;
          T* const* x = X[p].data() + rm.first;
          if (rm.pulse) {
            for (int64_t s = 0; s < ns; ++s) std::fill(x[s], x[s] + n, T(0));
            continue;
          }
          T* old = Xold[p].data();  // (ns, n): the states before the step
          for (int64_t c = 0; c < ns; ++c) std::copy(x[c], x[c] + n, old + c * n);
          for (int64_t s = 0; s < ns; ++s) {
            T* xs = x[s];
            std::fill(xs, xs + n, T(0));
            for (int64_t c = 0; c < ns; ++c) {
              if (Pm[s * ns + c] == 0.0) continue;
              const T m = T(Pm[s * ns + c]);
              const T* oc = old + c * n;
              for (int64_t i = 0; i < n; ++i) xs[i] += oc[i] * m;
            }
          }
        }
        for (size_t e = 0; e < pre_vals[p].size(); ++e) {  // graded: one step from the start
          const int64_t fn = pre_meta[p][3 * e], first = pre_meta[p][3 * e + 1],
                        nx = pre_meta[p][3 * e + 2];
          const double* qv = pre_vals[p][e].data();
          T s[16], o[16];
          for (int64_t i = 0; i < n; ++i) {
            for (int64_t k = 0; k < nx; ++k) s[k] = X[p][first + k][i];
            syn_pre<T>(fn, V0[p][i], s, qv, tdt, o);
            for (int64_t k = 0; k < nx; ++k) X[p][first + k][i] = o[k];
          }
        }
        fired[p].clear();
        uint8_t* zo = out[p].data_ptr<uint8_t>() + t * n;
        if (meta[p].refractory >= 0) {
          T* c = since[p].data_ptr<T>();
          const T R = T(meta[p].refractory);
          for (int64_t i = 0; i < n; ++i) {
            const bool spike = Hp[i] != T(0) && c[i] >= R;
            c[i] = spike ? T(1) : c[i] + T(1);
            if (spike) { zo[i] = 1; fired[p].push_back(i); }
          }
        } else {
          for (int64_t i = 0; i < n; ++i)
            if (Zp[i] != T(0)) { zo[i] = 1; fired[p].push_back(i); }
        }
        for (size_t q = 0; q < nproj; ++q) {  // plasticity: traces to the step's end, on_post
          const int64_t* pm = proj_meta.data() + 9 * q;
          if (pm[2] != (int64_t)p || pm[7] < 0) continue;
          const Plast& pl = plast[q];
          const size_t o = pm[6] ? 2 : 0;
          T* w = proj_state[q][o].data_ptr<T>();
          const int64_t npt = pl.npre + pl.npost;
          const int64_t* prow = proj_state[q][o + 1 + npt].data_ptr<int64_t>();
          const int64_t* psyn = proj_state[q][o + 2 + npt].data_ptr<int64_t>();
          const int64_t* pre = proj_csr[q][4].data_ptr<int64_t>();
          const int64_t n_pre = proj_csr[q][0].numel() - 1;
          for (int64_t c = 0; c < npt; ++c) {
            T* tr = proj_state[q][o + 1 + c].data_ptr<T>();
            const T e = T(pl.decay[c]);
            const int64_t len = c < pl.npre ? n_pre : n;
            for (int64_t i = 0; i < len; ++i) tr[i] = tr[i] * e;
          }
          T a[16], b[16];
          for (const auto& st : pl.on_post) {
            if (st.first >= 0) {
              T* tr = proj_state[q][o + 1 + pl.npre + st.first].data_ptr<T>();
              for (int64_t j : fired[p]) tr[j] = tr[j] + T(st.second);
              continue;
            }
            const int64_t code = pl.model * 64 + 32 + (-1 - st.first);
            for (int64_t j : fired[p]) {
              for (int64_t c = 0; c < pl.npost; ++c)
                b[c] = proj_state[q][o + 1 + pl.npre + c].data_ptr<T>()[j];
              for (int64_t k = prow[j]; k < prow[j + 1]; ++k) {
                const int64_t s = psyn[k];
                for (int64_t c = 0; c < pl.npre; ++c)
                  a[c] = proj_state[q][o + 1 + c].data_ptr<T>()[pre[s]];
                w[s] = std::min(std::max(w[s] + plast_w<T>(code, a, b, w[s], pl.q.data()),
                                         T(pl.lo)), T(pl.hi));
              }
            }
          }
        }
        for (size_t k = 0; k < record[p].size(); ++k) {
          const int64_t v = record_index[p][k];
          const int64_t ns = (int64_t)S[p].size();
          const T* src = v < ns ? S[p][v] : X[p][v - ns];
          T* dst = record[p][k].data_ptr<T>() + t * n;
          std::copy(src, src + n, dst);
        }
        deliver(true, (int64_t)p, t, fired[p]);
      }
      for (size_t q = 0; q < nproj; ++q) {  // Tsodyks-Markram: exact relaxation over the step
        const int64_t* pm = proj_meta.data() + 9 * q;
        if (!pm[6]) continue;
        T* u = proj_state[q][0].data_ptr<T>();
        T* x = proj_state[q][1].data_ptr<T>();
        const T U = T(proj_vals[q][0]), ef = T(proj_vals[q][1]), ed = T(proj_vals[q][2]);
        const int64_t n_pre = proj_csr[q][0].numel() - 1;
        for (int64_t i = 0; i < n_pre; ++i) {
          u[i] = U + (u[i] - U) * ef;
          x[i] = T(1) + (x[i] - T(1)) * ed;
        }
      }
    }
  });
  return out;
}
"""


def generate_network_cpp(models: Sequence[ModelDefinition],
                         synapse_models: Sequence[SynapseModel] = (),
                         plasticity_models: Sequence[PlasticityModel] = ()) -> str:
    """C++ source of the network extension for the neuron ``models``, the nonlinear
    ``synapse_models`` and the ``plasticity_models`` (index = position in each list)."""
    header = (exprel_constants(_CPP_HEADER).replace("MODEL_NAME", "network")
              .replace("NUM_STATES", "1").replace("NUM_PARAMS", "1")
              .replace("BLOCK_DOUBLE", "32").replace("BLOCK_FLOAT", "64"))
    functions = "\n".join(_model_function(k, m) for k, m in enumerate(models))
    synapses = "".join(generate_synapse_cpp(k, m) for k, m in enumerate(synapse_models))
    synapses += "".join(generate_plasticity_cpp(k, m) for k, m in enumerate(plasticity_models))
    synapses += _plasticity_dispatch(plasticity_models)
    cases = "\n".join(f"    case {k}: step_model_{k}<T, RESET>(i0, i1, S, P, I, G, J, Z, H, dt);"
                      f" break;" for k in range(len(models)))
    # the header opens an anonymous namespace; the driver's entry point must leave it
    return (header + functions + synapses + _synapse_dispatch(synapse_models)
            + _DRIVER.replace("MODEL_CASES", cases)
            .replace("std::vector<torch::Tensor> network_forward(",
                     "}  // namespace\n\nstd::vector<torch::Tensor> network_forward(", 1))


def load_network_extension(models: Sequence[ModelDefinition],
                           synapse_models: Sequence[SynapseModel] = (),
                           plasticity_models: Sequence[PlasticityModel] = (),
                           verbose: bool = False):
    """Compile (first use) or load (cached) the network extension for the neuron ``models``
    and nonlinear ``synapse_models``."""
    reason = compiler_available()
    if reason is not None:
        raise PathUnavailable(f"the fused network path needs a compiler: {reason}")
    source = generate_network_cpp(models, synapse_models, plasticity_models)
    # this process's memo (source and flags); the cache key on disk also has the environment
    name = f"hh_network_{source_hash(source + chr(10) + ' '.join(compile_flags()))}"
    ext = _EXTENSIONS.get(name)
    if ext is not None:
        return ext
    with _LOCK:
        ext = _EXTENSIONS.get(name)
        if ext is not None:
            return ext
        if name in _FAILURES:
            raise PathUnavailable(_FAILURES[name])
        try:
            ext = cached_build("hh_network", source, ["network_forward"],
                               f"the fused network kernel for models "
                               f"{[m.name for m in models]} and synapse models "
                               f"{[m.name for m in synapse_models]} and plasticity "
                               f"{[m.name for m in plasticity_models]}", verbose)
        except PathUnavailable as exc:
            _FAILURES[name] = str(exc)
            raise
        except Exception as exc:  # compiler errors, missing headers, unwritable cache, ...
            _FAILURES[name] = f"building the fused network kernel failed: {exc}"
            raise PathUnavailable(_FAILURES[name]) from exc
        _EXTENSIONS[name] = ext
        return ext


def csr_by_source(pre: np.ndarray, post: np.ndarray, weight: np.ndarray, delay: np.ndarray,
                  n_pre: int):
    """Synapses sorted by source (stable), with row pointers: ``(rowptr, post, weight,
    delay, order)``."""
    order = np.argsort(pre, kind="stable")
    counts = np.bincount(pre, minlength=n_pre)
    rowptr = np.zeros(n_pre + 1, dtype=np.int64)
    np.cumsum(counts, out=rowptr[1:])
    return rowptr, post[order], weight[order], delay[order], order


def _sorted_projection(module, name: str, conn, weight: torch.Tensor, dtype):
    """A projection's synapses sorted by source, as tensors: ``(rowptr, post, weight,
    delay, order, pre)``. The order is computed once per module and projection (the
    connectivity of a specification does not change; sorting 32 million synapses took
    seconds on every call), the sorted weights again only when the weight tensor changed
    (another tensor, or an in-place update: its version counter)."""
    cache = module.__dict__.setdefault("_fused_csr_cache", {})
    entry = cache.get(name)
    if entry is None:
        pre = np.asarray(conn.pre)
        rowptr, post, _, delay, order = csr_by_source(
            pre, np.asarray(conn.post), np.zeros(len(pre)), np.asarray(conn.delay), conn.n_pre)
        entry = {"csr": (torch.as_tensor(rowptr), torch.as_tensor(post),
                         torch.as_tensor(delay), torch.as_tensor(order),
                         torch.as_tensor(pre[order])),
                 "weights": None}
        cache[name] = entry
    rowptr, post, delay, order, pre_sorted = entry["csr"]
    key = (id(weight), weight._version, weight.data_ptr(), dtype)
    if entry["weights"] is None or entry["weights"][0] != key:
        flat = weight.detach().to(dtype).reshape(-1).cpu()
        entry["weights"] = (key, flat[order].contiguous())
    return rowptr, post, entry["weights"][1], delay, order.numpy(), pre_sorted


def run_fused(module, steps: int, currents: Dict[str, torch.Tensor], state, record: Sequence[str]):
    """Run ``module`` (a :class:`~.module.NetworkModule`) on the fused path for one batch
    element: ``currents`` of shape ``(steps, N)``, ``state`` without batch dimensions.
    Returns ``(spikes, final_state, traces)`` as the naive loop's."""
    from .module import NetworkState

    spec = module.spec
    ref = module._reference()
    dtype = ref.dtype
    models: List[ModelDefinition] = []
    for name in spec.order:
        model = spec.populations[name].model
        if model not in models:
            models.append(model)
    synapse_models = synapse_models_with_code(spec)
    plasticity_models = plasticity_models_of(spec)
    ext = load_network_extension(models, synapse_models, plasticity_models)
    pops = list(spec.order)
    pop_index = {name: k for k, name in enumerate(pops)}
    sources = list(spec.sources)
    start = state.step
    cpu = torch.device("cpu")

    with torch.no_grad():
        pop_meta, states, params, syn, ext_in, since = [], [], [], [], [], []
        rec_meta, rec_vals, pre_meta, pre_vals = [], [], [], []
        syn_names: Dict[str, List[str]] = {}
        pre_entry: Dict = {}
        record_tensors, record_index = [], []
        for name in pops:
            pop = spec.populations[name]
            dyn = module._dynamics[name]
            model = pop.model
            n = pop.size
            ring = 1 + max([int(spec.connections[p.name].delay.max()) for p in
                            spec.incoming(name) if spec.connections[p.name].size] or [0])
            ref_steps = dyn.refractory_steps
            reset = RESET_CODES[None if pop.spec.V_reset is None else pop.spec.spk_reset]
            pop_meta += [models.index(model), n, reset, -1 if ref_steps is None else ref_steps,
                         ring, list(model.state_names).index(VOLTAGE_SYMBOL)]
            neuron = state.neurons[name]
            states.append([getattr(neuron, v).detach().to(dtype).contiguous().clone()
                           for v in model.state_names])
            p = _cast(dyn.parameters(dtype, cpu), torch.empty((), dtype=dtype))
            values = []
            for key in kernel_parameters(model):
                value = p[key]  # V_scale resolved by _cast
                if value is None:
                    value = torch.zeros((), dtype=dtype)
                values.append(torch.broadcast_to(torch.as_tensor(value, dtype=dtype), (n,))
                              .contiguous())
            params.append(values)
            # the receptors' states, then the presynaptic states of graded synapses leaving
            names: List[str] = []
            rmeta, rvals = [], []
            for receptor, numerics in module._receptors[name].items():
                syn_model = numerics.model
                P, inc, out, E, q = numerics.constants(dtype, cpu)
                ns = len(numerics.variables)
                rmeta += [1 if syn_model.is_graded else 0, ns, len(names),
                          1 if syn_model.is_conductance else 0,
                          synapse_models.index(syn_model) if syn_model.factor is not None else -1,
                          1 if syn_model.is_pulse else 0]
                rvals.append([float(E) if E is not None else 0.0]
                             + [float(P[i][j]) for i in range(ns) for j in range(ns)]
                             + [float(c) for c in inc] + [float(k) for k in out]
                             + [float(v) for v in q])
                names += list(numerics.variables)
            pmeta, pvals = [], []
            for receptor, synapse in spec.presynaptic[name].items():
                pre_entry[(name, receptor)] = len(pvals)
                variables = synapse.presynaptic_variables
                pmeta += [synapse_models.index(synapse.model), len(names), len(variables)]
                pvals.append([float(v) for v in synapse.parameter_values])
                names += list(variables)
            rec_meta.append(rmeta)
            rec_vals.append(rvals)
            pre_meta.append(pmeta)
            pre_vals.append(pvals)
            syn_names[name] = names
            syn.append([state.synapses[name][v].detach().to(dtype).contiguous().clone()
                        for v in names])
            table = spec.current_table(name, start + steps)
            total = None if table is None else torch.as_tensor(
                np.ascontiguousarray(table[start:]), dtype=dtype)
            if name in currents:
                total = currents[name] if total is None else total + currents[name]
            ext_in.append(torch.empty(0, dtype=dtype) if total is None
                          else total.detach().to(dtype).contiguous())
            since.append(state.since_spike[name].detach().to(dtype).contiguous().clone()
                         if ref_steps is not None else torch.empty(0, dtype=dtype))
            all_names = list(model.state_names) + names
            rec, idx = [], []
            for var in record:
                if var in all_names:
                    rec.append(torch.empty((steps, n), dtype=dtype))
                    idx.append(all_names.index(var))
            record_tensors.append(rec)
            record_index.append(idx)
        rasters = [torch.as_tensor(np.ascontiguousarray(
            module._source_rasters(start, steps, dtype, "cpu")[s].numpy() != 0),
            dtype=torch.uint8) for s in sources]
        proj_meta, proj_csr, proj_vals, proj_state = [], [], [], []
        stdp_order = {}
        for proj in spec.projections:
            conn = spec.connections[proj.name]
            op = module.projections[proj.name]
            rowptr, post, w, delay, order, pre_sorted = _sorted_projection(
                module, proj.name, conn, op.weight, dtype)
            from_pop = proj.source in spec.populations
            graded = proj.synapse.model.is_graded
            plastic = proj.short_term is not None or proj.stdp is not None
            proj_meta += [1 if from_pop else 0,
                          pop_index[proj.source] if from_pop else sources.index(proj.source),
                          pop_index[proj.target],
                          list(spec.receptors[proj.target]).index(proj.synapse.receptor),
                          1 if graded else 0,
                          pre_entry[(proj.source, proj.synapse.receptor)] if graded else -1,
                          1 if proj.short_term is not None else 0,
                          plasticity_models.index(proj.stdp.model) if proj.stdp is not None
                          else -1,
                          int(delay[0]) if plastic and len(delay) else (1 if plastic else -1)]
            proj_csr.append([rowptr, post, w, delay, pre_sorted])
            vals, tensors = [], []
            if proj.short_term is not None:
                st = state.short_term[proj.name]
                e_f, e_d = proj.short_term.decay(spec.dt)
                vals += [proj.short_term.U, e_f, e_d]
                tensors += [st["u"].detach().to(dtype).reshape(-1).contiguous().clone(),
                            st["x"].detach().to(dtype).reshape(-1).contiguous().clone()]
            if proj.stdp is not None:
                rule, pl = proj.stdp, state.plasticity[proj.name]
                model = rule.model
                lo, hi = rule.bounds()
                vals += [lo, hi, len(model.pre_traces), len(model.post_traces),
                         *rule.trace_decay(spec.dt)]
                for key in ("on_pre", "on_post"):
                    statements = rule.statements(key)
                    vals.append(len(statements))
                    for k, (index, increment) in enumerate(statements):
                        vals += [-1 - k, 0.0] if index is None else [index, increment]
                vals += list(rule.parameter_values)
                # synapses by target: positions in the sorted-by-source list
                post_np = post.numpy()
                by_post = np.argsort(post_np, kind="stable")
                prow = np.zeros(conn.n_post + 1, dtype=np.int64)
                np.cumsum(np.bincount(post_np, minlength=conn.n_post), out=prow[1:])
                tensors.append(torch.as_tensor(pl["w"].detach().to(dtype).reshape(-1).cpu()
                                               .numpy()[order].copy()))
                tensors += [pl[x].detach().to(dtype).contiguous().clone()
                            for x in model.pre_trace_names + model.post_trace_names]
                tensors += [torch.as_tensor(prow), torch.as_tensor(by_post.astype(np.int64))]
                stdp_order[proj.name] = order
            proj_vals.append([float(v) for v in vals])
            proj_state.append(tensors)
        history_in = []
        for name in pops + sources:
            past = state.history.get(name, [])
            n = spec.size(name)
            history_in.append(torch.stack([z.detach().reshape(n) != 0 for z in past])
                              .to(torch.uint8).contiguous() if past
                              else torch.zeros((0, n), dtype=torch.uint8))
        out = ext.network_forward(int(steps), float(spec.dt), pop_meta, states, params, syn,
                                  rec_meta, rec_vals, pre_meta, pre_vals, ext_in, since,
                                  rasters, proj_meta, proj_csr, proj_vals, proj_state,
                                  record_tensors, record_index, history_in)
    spikes, traces, neurons, synapses = {}, {}, {}, {}
    since_out = {}
    for k, name in enumerate(pops):
        model = spec.populations[name].model
        spikes[name] = out[k]
        neurons[name] = type(state.neurons[name])(*states[k])
        synapses[name] = dict(zip(syn_names[name], syn[k]))
        names = list(model.state_names) + syn_names[name]
        traces[name] = {names[i]: t for i, t in zip(record_index[k], record_tensors[k])}
        if module._dynamics[name].refractory_steps is not None:
            since_out[name] = since[k]
    short_term, plasticity = {}, {}
    for proj, tensors in zip(spec.projections, proj_state):
        if proj.short_term is not None:
            old = state.short_term[proj.name]
            short_term[proj.name] = {"u": tensors[0].reshape(old["u"].shape),
                                     "x": tensors[1].reshape(old["x"].shape)}
        if proj.stdp is not None:
            o = 2 if proj.short_term is not None else 0
            old = state.plasticity[proj.name]["w"]
            w = torch.empty(old.numel(), dtype=dtype)
            w[torch.as_tensor(stdp_order[proj.name])] = tensors[o]
            plasticity[proj.name] = {"w": w.reshape(old.shape)}
            model = proj.stdp.model
            for k, trace in enumerate(model.pre_trace_names + model.post_trace_names):
                plasticity[proj.name][trace] = tensors[o + 1 + k]
    # pending spikes for delays beyond the run: the last steps' spikes
    history = {}
    source_rasters = module._source_rasters(start, steps, dtype, "cpu")
    for src, length in module._history_length.items():
        raster = spikes[src] if src in spikes else source_rasters[src]
        recent = [raster[t].to(dtype) for t in range(max(0, steps - length), steps)]
        history[src] = (list(state.history.get(src, [])) + recent)[-length:] if length else []
    final = NetworkState({n: neurons[n] for n in spec.populations},
                         {n: synapses[n] for n in spec.populations}, history, start + steps,
                         since_out, short_term, plasticity)
    return spikes, final, traces
