r"""The fused CPU path of :class:`~hh_plugin.torch.network.NetworkModule`: the whole
time loop of a network in one generated C++ function (forward only, no gradients).

What is generated per model is the step of :func:`~hh_plugin.torch.fused.codegen.step_program`
with the synaptic inputs (``synaptic=True``: the conductance hook of
:func:`~hh_plugin.torch.functional.hh.hh_step`); the math helpers (``exp``, ``exprel``,
Heaviside) are those of the fused HH kernel (:mod:`hh_plugin.torch.fused.cpp_source`).
The schedule is the same as the naive loop's (:mod:`.module`), step by step:

1. for each population in ``spec.order``: add the ring-buffer slot of this step to its
   synaptic variables (and clear the slot), sum the synaptic currents and conductances,
   update every neuron (a ``#pragma omp simd`` loop; OpenMP threads over neurons, one
   per 32,768 neurons of the population, at most ``torch.get_num_threads()``), let the synaptic variables decay, collect the spiking neurons;
2. deliver the spikes *event by event*: for each spiking source neuron, its synapses
   (compressed rows by source) add their weights into the target's ring buffer at slot
   :math:`(k + d) \bmod L` (:math:`L` = the longest delay into the target + 1); spike
   sources deliver at the start of the step.

So the cost per step is the neuron update plus the synapses of the neurons that spiked,
not the number of synapses. The extension is compiled at first use for the set of models
of a network and cached like the fused HH kernel (:func:`hh_plugin.torch.fused.cache_dir`,
``$HH_PLUGIN_CACHE_DIR``), under the same build lock (:mod:`hh_plugin.torch.fused.cpp`): of
several processes that start at once (``torchrun`` workers) one compiles while the others
wait and then load its build; a build killed mid-way does not block later ones, and a wait
longer than ``$HH_PLUGIN_BUILD_TIMEOUT`` seconds gives up with
:class:`~hh_plugin.torch.fused.cpp.PathUnavailable` (the ``'auto'`` path then runs the
naive loop, with a warning).
"""

from __future__ import annotations

import threading
from typing import Dict, List, Sequence

import numpy as np
import torch

from ...model.definition import ModelDefinition
from ..fused.codegen import CPP, RESET_CODES, exprel_constants, kernel_parameters, source_hash, \
    step_program
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


_DRIVER = r"""
struct PopMeta { int64_t model, n, reset, refractory, ring; };

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
//   pop_meta: 5 per population (model index, size, reset code, refractory steps or -1,
//             ring-buffer length L);
//   states, params, syn: per population its state variables, its (expanded, per-neuron)
//             kernel parameters and its synaptic variables, all (n,), updated in place;
//   syn_consts: per population 3 per receptor (decay factor, reversal potential,
//             1 = conductance / 0 = current);
//   ext: per population (steps, n) external current or an empty tensor;
//   since: per population (n,) steps since the last spike, or empty (no refractory);
//   rasters: per spike source (steps, n_src) uint8;
//   proj_meta: 4 per projection (source is a population: 1/0, source index, target
//             population index, receptor index); proj_csr: per projection rowptr
//             (n_pre + 1), post, weight, delay (each synapse list sorted by source);
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
    std::vector<std::vector<double>> syn_consts,
    std::vector<torch::Tensor> ext,
    std::vector<torch::Tensor> since,
    std::vector<torch::Tensor> rasters,
    std::vector<int64_t> proj_meta,
    std::vector<std::vector<torch::Tensor>> proj_csr,
    std::vector<std::vector<torch::Tensor>> record,
    std::vector<std::vector<int64_t>> record_index,
    std::vector<torch::Tensor> history) {
  const size_t npop = states.size();
  TORCH_CHECK(pop_meta.size() == 5 * npop, "pop_meta: 5 values per population");
  TORCH_CHECK(params.size() == npop && syn.size() == npop && syn_consts.size() == npop &&
              ext.size() == npop && since.size() == npop && record.size() == npop &&
              record_index.size() == npop, "one entry per population in every list");
  const size_t nproj = proj_csr.size();
  TORCH_CHECK(proj_meta.size() == 4 * nproj, "proj_meta: 4 values per projection");
  TORCH_CHECK(npop > 0 && states[0].size() > 0, "no population");
  auto opts = states[0][0].options();
  std::vector<torch::Tensor> out;
  std::vector<PopMeta> meta(npop);
  for (size_t p = 0; p < npop; ++p) {
    meta[p] = {pop_meta[5 * p], pop_meta[5 * p + 1], pop_meta[5 * p + 2],
               pop_meta[5 * p + 3], pop_meta[5 * p + 4]};
    out.push_back(torch::zeros({steps, meta[p].n}, opts.dtype(torch::kUInt8)));
  }
  AT_DISPATCH_FLOATING_TYPES(states[0][0].scalar_type(), "network_forward", [&] {
    using T = scalar_t;
    const T tdt = T(dt);
    // per population: pointers, scratch and ring buffers
    std::vector<std::vector<T*>> S(npop), X(npop);
    std::vector<std::vector<const T*>> P(npop);
    std::vector<std::vector<T>> I(npop), G(npop), J(npop), Z(npop), H(npop);
    std::vector<std::vector<std::vector<T>>> ring(npop);
    std::vector<std::vector<int64_t>> fired(npop);
    for (size_t p = 0; p < npop; ++p) {
      const int64_t n = meta[p].n;
      for (auto& t : states[p]) {
        TORCH_CHECK(t.is_contiguous() && t.numel() == n && t.scalar_type() == opts.dtype().toScalarType(),
                    "state tensors must be contiguous (n,) of one dtype");
        S[p].push_back(t.data_ptr<T>());
      }
      for (auto& t : params[p]) {
        TORCH_CHECK(t.is_contiguous() && t.numel() == n, "parameters must be expanded to (n,)");
        P[p].push_back(t.data_ptr<T>());
      }
      TORCH_CHECK(syn_consts[p].size() == 3 * syn[p].size(), "syn_consts: 3 per receptor");
      for (auto& t : syn[p]) {
        TORCH_CHECK(t.is_contiguous() && t.numel() == n, "synaptic variables must be (n,)");
        X[p].push_back(t.data_ptr<T>());
        ring[p].emplace_back((size_t)(meta[p].ring * n), T(0));
      }
      if (ext[p].numel()) TORCH_CHECK(ext[p].is_contiguous() && ext[p].numel() == steps * n,
                                      "external current must be (steps, n)");
      if (meta[p].refractory >= 0) TORCH_CHECK(since[p].numel() == n, "since must be (n,)");
      I[p].resize(n); G[p].resize(n); J[p].resize(n); Z[p].resize(n); H[p].resize(n);
      fired[p].reserve(n);
    }
    auto deliver = [&](bool from_pop, int64_t index, int64_t t, const std::vector<int64_t>& idx) {
      if (idx.empty()) return;
      for (size_t q = 0; q < nproj; ++q) {
        if ((proj_meta[4 * q] != 0) != from_pop || proj_meta[4 * q + 1] != index) continue;
        const int64_t tgt = proj_meta[4 * q + 2], r = proj_meta[4 * q + 3];
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
      for (size_t p = 0; p < npop; ++p) {
        const int64_t n = meta[p].n;
        const int64_t slot = t % meta[p].ring;
        T* Ip = I[p].data(); T* Gp = G[p].data(); T* Jp = J[p].data();
        const T* e = ext[p].numel() ? ext[p].data_ptr<T>() + t * n : nullptr;
        for (int64_t i = 0; i < n; ++i) { Ip[i] = e ? e[i] : T(0); Gp[i] = T(0); Jp[i] = T(0); }
        const size_t nr = X[p].size();
        for (size_t r = 0; r < nr; ++r) {
          T* x = X[p][r];
          T* b = ring[p][r].data() + slot * n;
          const bool cond = syn_consts[p][3 * r + 2] != 0.0;
          const T E = T(syn_consts[p][3 * r + 1]);
          for (int64_t i = 0; i < n; ++i) {
            x[i] += b[i];
            b[i] = T(0);
            if (cond) { Gp[i] += x[i]; Jp[i] += x[i] * E; } else { Ip[i] += x[i]; }
          }
        }
        T* Zp = Z[p].data(); T* Hp = H[p].data();
        step_population<T>(meta[p].model, meta[p].reset, n, S[p].data(), P[p].data(),
                           Ip, Gp, Jp, Zp, Hp, tdt);
        for (size_t r = 0; r < nr; ++r) {
          T* x = X[p][r];
          const T decay = T(syn_consts[p][3 * r]);
          for (int64_t i = 0; i < n; ++i) x[i] = x[i] * decay;
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
        for (size_t k = 0; k < record[p].size(); ++k) {
          const int64_t v = record_index[p][k];
          const int64_t ns = (int64_t)S[p].size();
          const T* src = v < ns ? S[p][v] : X[p][v - ns];
          T* dst = record[p][k].data_ptr<T>() + t * n;
          std::copy(src, src + n, dst);
        }
        deliver(true, (int64_t)p, t, fired[p]);
      }
    }
  });
  return out;
}
"""


def generate_network_cpp(models: Sequence[ModelDefinition]) -> str:
    """C++ source of the network extension for ``models`` (index = position)."""
    header = (exprel_constants(_CPP_HEADER).replace("MODEL_NAME", "network")
              .replace("NUM_STATES", "1").replace("NUM_PARAMS", "1")
              .replace("BLOCK_DOUBLE", "32").replace("BLOCK_FLOAT", "64"))
    functions = "\n".join(_model_function(k, m) for k, m in enumerate(models))
    cases = "\n".join(f"    case {k}: step_model_{k}<T, RESET>(i0, i1, S, P, I, G, J, Z, H, dt);"
                      f" break;" for k in range(len(models)))
    # the header opens an anonymous namespace; the driver's entry point must leave it
    return (header + functions + _DRIVER.replace("MODEL_CASES", cases)
            .replace("std::vector<torch::Tensor> network_forward(",
                     "}  // namespace\n\nstd::vector<torch::Tensor> network_forward(", 1))


def load_network_extension(models: Sequence[ModelDefinition], verbose: bool = False):
    """Compile (first use) or load (cached) the network extension for ``models``."""
    reason = compiler_available()
    if reason is not None:
        raise PathUnavailable(f"the fused network path needs a compiler: {reason}")
    source = generate_network_cpp(models)
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
                               f"{[m.name for m in models]}", verbose)
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
    ext = load_network_extension(models)
    pops = list(spec.order)
    pop_index = {name: k for k, name in enumerate(pops)}
    sources = list(spec.sources)
    start = state.step

    with torch.no_grad():
        pop_meta, states, params, syn, consts, ext_in, since = [], [], [], [], [], [], []
        record_tensors, record_index = [], []
        neurons = {}
        synapses = {}
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
                         ring]
            neuron = state.neurons[name]
            st = [getattr(neuron, v).detach().to(dtype).contiguous().clone()
                  for v in model.state_names]
            states.append(st)
            p = _cast(dyn.parameters(dtype, torch.device("cpu")), torch.empty((), dtype=dtype))
            values = []
            for key in kernel_parameters(model):
                value = p[key]  # V_scale resolved by _cast
                if value is None:
                    value = torch.zeros((), dtype=dtype)
                values.append(torch.broadcast_to(torch.as_tensor(value, dtype=dtype), (n,))
                              .contiguous())
            params.append(values)
            receptors = list(spec.receptors[name].values())
            syn.append([state.synapses[name][r.variable].detach().to(dtype).contiguous().clone()
                        for r in receptors])
            c = []
            for r in receptors:
                c += [module._decay[(name, r.variable)],
                      r.reversal_potential if r.model.is_conductance else 0.0,
                      1.0 if r.model.is_conductance else 0.0]
            consts.append(c)
            table = spec.current_table(name, start + steps)
            total = None if table is None else torch.as_tensor(
                np.ascontiguousarray(table[start:]), dtype=dtype)
            if name in currents:
                total = currents[name] if total is None else total + currents[name]
            ext_in.append(torch.empty(0, dtype=dtype) if total is None
                          else total.detach().to(dtype).contiguous())
            since.append(state.since_spike[name].detach().to(dtype).contiguous().clone()
                         if ref_steps is not None else torch.empty(0, dtype=dtype))
            names = list(model.state_names) + [r.variable for r in receptors]
            rec, idx = [], []
            for var in record:
                if var in names:
                    rec.append(torch.empty((steps, n), dtype=dtype))
                    idx.append(names.index(var))
            record_tensors.append(rec)
            record_index.append(idx)
        rasters = [torch.as_tensor(np.ascontiguousarray(
            module._source_rasters(start, steps, dtype, "cpu")[s].numpy() != 0),
            dtype=torch.uint8) for s in sources]
        proj_meta, proj_csr = [], []
        for proj in spec.projections:
            conn = spec.connections[proj.name]
            op = module.projections[proj.name]
            weight = op.weight.detach().to(dtype).reshape(-1).cpu().numpy()
            rowptr, post, w, delay, _ = csr_by_source(np.asarray(conn.pre), np.asarray(conn.post),
                                                      weight, np.asarray(conn.delay), conn.n_pre)
            from_pop = proj.source in spec.populations
            proj_meta += [1 if from_pop else 0,
                          pop_index[proj.source] if from_pop else sources.index(proj.source),
                          pop_index[proj.target],
                          list(spec.receptors[proj.target]).index(proj.synapse.receptor)]
            proj_csr.append([torch.as_tensor(rowptr), torch.as_tensor(post),
                             torch.as_tensor(w, dtype=dtype), torch.as_tensor(delay)])
        history_in = []
        for name in pops + sources:
            past = state.history.get(name, [])
            n = spec.size(name)
            history_in.append(torch.stack([z.detach().reshape(n) != 0 for z in past])
                              .to(torch.uint8).contiguous() if past
                              else torch.zeros((0, n), dtype=torch.uint8))
        out = ext.network_forward(int(steps), float(spec.dt), pop_meta, states, params, syn,
                                  consts, ext_in, since, rasters, proj_meta, proj_csr,
                                  record_tensors, record_index, history_in)
    spikes, traces = {}, {}
    since_out = {}
    for k, name in enumerate(pops):
        model = spec.populations[name].model
        spikes[name] = out[k]
        neurons[name] = type(state.neurons[name])(*states[k])
        synapses[name] = {r.variable: t for r, t in zip(spec.receptors[name].values(), syn[k])}
        names = list(model.state_names) + list(synapses[name])
        traces[name] = {names[i]: t for i, t in zip(record_index[k], record_tensors[k])}
        if module._dynamics[name].refractory_steps is not None:
            since_out[name] = since[k]
    # pending spikes for delays beyond the run: the last steps' spikes
    history = {}
    source_rasters = module._source_rasters(start, steps, dtype, "cpu")
    for src, length in module._history_length.items():
        raster = spikes[src] if src in spikes else source_rasters[src]
        recent = [raster[t].to(dtype) for t in range(max(0, steps - length), steps)]
        history[src] = (list(state.history.get(src, [])) + recent)[-length:] if length else []
    final = NetworkState({n: neurons[n] for n in spec.populations},
                         {n: synapses[n] for n in spec.populations}, history, start + steps,
                         since_out)
    return spikes, final, traces
