r"""The fused sequence kernel of a recurrent HH layer (:class:`~hh_plugin.torch.HHRecurrent`).

The layer's step (:func:`~hh_plugin.torch.functional.hh.hh_recurrent_step`) is

.. math::
    I_t = \underbrace{x_t W_{in}^\top}_{U_t} + z_{t-1} W_{rec}^\top, \qquad
    (z_t, s_t) = \mathrm{step}(I_t, s_{t-1}),

with :math:`x_t` the input ``(B, input_size)``, :math:`W_{in}` ``(H, input_size)`` and
:math:`W_{rec}` ``(H, H)`` in uA per unit input and per spike, :math:`z_t` the spikes
``(B, H)`` (0/1) and :math:`s_t` the neuron state (``V`` in mV, the gates), ``step`` the
model's generated step (exponential Euler or RK4, rising-edge spike, optional reset;
:func:`.codegen.step_program`).

The input projection :math:`U = x W_{in}^\top` does not depend on the recurrence: it is
one matrix product over all ``T`` steps, outside the kernel, and autograd takes its
gradients (to :math:`x` and :math:`W_{in}`). The custom operator
``hh_plugin::fused_recurrent`` runs the time loop in C++: per step the product
:math:`z_{t-1} W_{rec}^\top` over the spiking neurons only (spikes are sparse: the
columns of :math:`W_{rec}` of the nonzero :math:`z`, summed) plus :math:`U_t`, then the
generated step
(``step_lanes``, the very function the feed-forward kernel runs) over all :math:`M = BH`
neurons in blocks. The state stays in those blocks for the whole loop.

Backward (``hh_plugin::fused_recurrent_backward``): the states are stored every
``checkpoint``-th step (:math:`\lceil\sqrt T\rceil` by default) and each segment is
recomputed from its checkpoint; going back in time, the spike's adjoint gathers the output
gradient and the recurrence,

.. math::
    \bar z_t = \frac{\partial L}{\partial z_t} + \bar I_{t+1} W_{rec}, \qquad
    \bar W_{rec} = \sum_t \bar I_t^\top z_{t-1}, \qquad \bar z_0 = \bar I_1 W_{rec},

(:math:`\bar I_t = \partial L/\partial I_t`, from the generated adjoint step
``adjoint_lanes``, which also accumulates the gradients of every model parameter and
``V_reset``, and gives those of the initial state). :math:`\bar U = \bar I`;
:math:`\bar W_{rec}` and :math:`\bar z_0` are formed after the kernel from the stored
spikes. The per-step products are plain loops, not BLAS calls: a small multi-threaded
matrix product at every step waits for the other core at every step when another process
holds it; the loops run on one thread, on several (over the batch) only when a step's
product exceeds about :math:`4 \cdot 10^6` multiply-adds. Gradients follow the
surrogate of the step (ReLU, ``alpha``, ``width``), exactly as autograd through the step
loop.

The kernel is a separate extension (``hh_recurrent_<model>``, built once per model and
method and cached as the feed-forward one, :func:`.cpp.cached_build`): the feed-forward
kernel's header, generated lane functions and helpers, and the recurrent drivers below.
"""

from __future__ import annotations

import math
import threading
import warnings
from typing import List, Optional

import torch

from ...model.definition import ModelDefinition
from ...model.integrators import DEFAULT_METHOD
from ..functional.hh import check_dt, hh_recurrent_step
from ..functional.parameters import recurrent_state_type
from . import cpp_source
from .codegen import CPP, FUSED_METHODS, RESET_CODES, exprel_constants, step_program
from .cpp import PathUnavailable, cached_build, compiler_available, load_once
from .ops import _model_method, kernel_key
from .sequence import (PATHS, _FUSED_DTYPES, _flat_parameters, _recorded, checkpoint_interval,
                       record_names)

#: Where the feed-forward driver's entry points begin: everything before is shared
#: (argument structure, lane loaders, block scheduler, output pool).
_ENTRY_MARKER = "// Forward over the whole sequence. I:"

_RECURRENT_DRIVER = r"""
namespace {

template <typename T> struct Blocks {
  static constexpr int W = BlockWidth<T>::value;
  using S = T[NS][W];
  using P = T[NPX][W];
  using G = T[NP][W];
};

// Parameters (with the derived per-block values) and states of every block, padded with
// the last neuron's values.
template <typename T>
void load_blocks(const Args<T>& a, int64_t M, const std::vector<torch::Tensor>& state0,
                 typename Blocks<T>::P* P, typename Blocks<T>::S* S) {
  constexpr int W = Blocks<T>::W;
  const int64_t nblk = (M + W - 1) / W;
  for (int64_t b = 0; b < nblk; ++b) {
    const int64_t j0 = b * W;
    const int n = (int)std::min<int64_t>(W, M - j0);
    load_params<T, W>(a, j0, n, P[b]);
    if (S)
      for (int s = 0; s < NS; ++s) load_lanes<T, W>(state0[s].data_ptr<T>() + j0, n, S[b][s]);
  }
}

// One step of every block: SRC -> DST (may alias), currents It (M), spikes to Zt (M) or
// nowhere (nullptr); rec[s] (nullptr: not recorded) gets the new state at row t.
template <typename T, int RESET>
void step_all(int64_t M, typename Blocks<T>::S* SRC, typename Blocks<T>::S* DST,
              typename Blocks<T>::P* P, const T* It, T* Zt, T dt,
              T* const* rec, int64_t t) {
  constexpr int W = Blocks<T>::W;
  const int64_t nblk = (M + W - 1) / W;
  for_each_block(nblk, STEP_MIN_NEURONS_PER_THREAD / W, [&](int64_t b) {
    const int64_t j0 = b * W;
    const int n = (int)std::min<int64_t>(W, M - j0);
    if (n == W) {
      step_lanes<T, RESET, W>(W, SRC[b], DST[b], P[b], It + j0, Zt ? Zt + j0 : nullptr, dt);
    } else {
      alignas(64) T Ipad[W];
      alignas(64) T Zpad[W];
      load_lanes<T, W>(It + j0, n, Ipad);
      step_lanes<T, RESET, W>(W, SRC[b], DST[b], P[b], Ipad, Zpad, dt);
      if (Zt)
        for (int i = 0; i < n; ++i) Zt[j0 + i] = Zpad[i];
    }
    if (rec)
      for (int s = 0; s < NS; ++s)
        if (rec[s])
          for (int i = 0; i < n; ++i) rec[s][t * M + j0 + i] = DST[b][s][i];
  });
}

// The recurrent input of one step, I_t = U_t + z_{t-1} W_rec^T, for the B rows of the
// batch: WT = W_rec^T (row j: the weights from neuron j), the product accumulated over
// the nonzero entries of z only (spikes are sparse), then added to U_t, as the step loop
// adds linear(z, W_rec) to linear(x_t, W_in). acc: H scratch values per thread.
// No BLAS call: a per-step matrix product on two threads waited on the other core at
// every step when another process held it (measured 0.5 ms per step).
template <typename T>
void recurrent_current(int64_t B, int64_t H, const T* __restrict z, const T* __restrict WT,
                       const T* __restrict Ut, T* __restrict It) {
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 22) / std::max<int64_t>(1, H * H));
  at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
    std::vector<T> acc(H);
    for (int64_t b = b0; b < b1; ++b) {
      const T* zb = z + b * H;
      bool any = false;
      for (int64_t j = 0; j < H; ++j) {
        const T zj = zb[j];
        if (zj == T(0)) continue;
        const T* w = WT + j * H;
        if (!any) {
#pragma omp simd
          for (int64_t i = 0; i < H; ++i) acc[i] = zj * w[i];
          any = true;
        } else {
#pragma omp simd
          for (int64_t i = 0; i < H; ++i) acc[i] += zj * w[i];
        }
      }
      const T* u = Ut + b * H;
      T* o = It + b * H;
      if (any) {
#pragma omp simd
        for (int64_t i = 0; i < H; ++i) o[i] = u[i] + acc[i];
      } else {
        for (int64_t i = 0; i < H; ++i) o[i] = u[i];
      }
    }
  });
}

// The adjoint of z_t through I_{t+1}: gz += gI_{t+1} W_rec, row by row of W_rec (each row
// read once per step for all rows of the batch), skipping zero adjoints.
template <typename T>
void recurrent_adjoint(int64_t B, int64_t H, const T* __restrict gI, const T* __restrict W,
                       T* __restrict gz) {
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 22) / std::max<int64_t>(1, H * H));
  at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t i = 0; i < H; ++i) {
      const T* w = W + i * H;
      for (int64_t b = b0; b < b1; ++b) {
        const T g = gI[b * H + i];
        if (g == T(0)) continue;
        T* o = gz + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) o[j] += g * w[j];
      }
    }
  });
}

template <typename T, int RESET>
void recurrent_forward_impl(const torch::Tensor& U, const torch::Tensor& WrecT,
                            const torch::Tensor& z0, const std::vector<torch::Tensor>& state0,
                            const std::vector<torch::Tensor>& params, double dt, int64_t every,
                            torch::Tensor& Z, std::vector<torch::Tensor>& out, size_t first_state,
                            torch::Tensor* I, torch::Tensor* ckpt, T* const* rec) {
  using Bl = Blocks<T>;
  constexpr int W = Bl::W;
  const int64_t steps = U.size(0), B = U.size(1), H = U.size(2), M = B * H;
  const int64_t nblk = (M + W - 1) / W;
  Args<T> a{};
  fill_common<T>(a, U.view({steps, M}), params, dt, every);
  auto opts = U.options();
  torch::Tensor Sbuf = torch::empty({nblk, NS, W}, opts);
  torch::Tensor Pbuf = torch::empty({nblk, NPX, W}, opts);
  auto* S = reinterpret_cast<typename Bl::S*>(Sbuf.data_ptr<T>());
  auto* P = reinterpret_cast<typename Bl::P*>(Pbuf.data_ptr<T>());
  load_blocks<T>(a, M, state0, P, S);
  torch::Tensor scratch = I ? torch::Tensor() : torch::empty({B, H}, opts);
  T* ck = ckpt ? ckpt->template data_ptr<T>() : nullptr;
  T* Zp = Z.data_ptr<T>();
  const T* Up = U.data_ptr<T>();
  const T* WT = WrecT.data_ptr<T>();
  for (int64_t t = 0; t < steps; ++t) {
    // I_t = U_t + z_{t-1} W_rec^T (the step loop's linear(x_t, W_in) + linear(z, W_rec))
    T* It = I ? I->template data_ptr<T>() + t * M : scratch.data_ptr<T>();
    recurrent_current<T>(B, H, t == 0 ? z0.data_ptr<T>() : Zp + (t - 1) * M, WT, Up + t * M, It);
    if (ck && t % every == 0)
      std::copy(&S[0][0][0], &S[0][0][0] + nblk * NS * W, ck + (t / every) * nblk * NS * W);
    step_all<T, RESET>(M, S, S, P, It, Zp + t * M, a.dt, rec, t);
  }
  for (int s = 0; s < NS; ++s) {
    T* dst = out[first_state + s].data_ptr<T>();
    for (int64_t j = 0; j < M; ++j) dst[j] = S[j / W][s][j % W];
  }
}

template <typename T, int RESET>
void recurrent_backward_impl(const torch::Tensor& I, const torch::Tensor& Wrec,
                             const torch::Tensor& ckpt, const std::vector<torch::Tensor>& params,
                             double dt, int64_t every, const torch::Tensor& gZ,
                             const std::vector<torch::Tensor>& gfinal,
                             const std::vector<torch::Tensor>& grec,
                             std::vector<torch::Tensor>& out) {
  using Bl = Blocks<T>;
  constexpr int W = Bl::W;
  const int64_t steps = I.size(0), B = I.size(1), H = I.size(2), M = B * H;
  const int64_t nblk = (M + W - 1) / W;
  const int64_t nseg = (steps + every - 1) / every;
  Args<T> a{};
  fill_common<T>(a, I.view({steps, M}), params, dt, every);
  auto opts = I.options();
  torch::Tensor Pbuf = torch::empty({nblk, NPX, W}, opts);
  torch::Tensor Gbuf = torch::zeros({nblk, NS, W}, opts);
  torch::Tensor GPbuf = torch::zeros({nblk, NP, W}, opts);
  torch::Tensor Bbuf = torch::empty({std::min(every, steps), nblk, NS, W}, opts);
  auto* P = reinterpret_cast<typename Bl::P*>(Pbuf.data_ptr<T>());
  auto* GS = reinterpret_cast<typename Bl::S*>(Gbuf.data_ptr<T>());
  auto* GP = reinterpret_cast<typename Bl::G*>(GPbuf.data_ptr<T>());
  auto* buf = reinterpret_cast<typename Bl::S*>(Bbuf.data_ptr<T>());
  load_blocks<T>(a, M, {}, P, nullptr);
  for (int s = 0; s < NS; ++s)
    if (gfinal.size() == (size_t)NS && gfinal[s].numel()) {
      const T* g = gfinal[s].data_ptr<T>();
      for (int64_t j = 0; j < M; ++j) GS[j / W][s][j % W] = g[j];
    }
  const T* gr[NS];
  bool any_grec = false;
  for (int s = 0; s < NS; ++s) {
    gr[s] = (grec.size() == (size_t)NS && grec[s].numel()) ? grec[s].data_ptr<T>() : nullptr;
    any_grec = any_grec || gr[s];
  }
  torch::Tensor gI = out[0];
  torch::Tensor gz = torch::empty({B, H}, opts);
  const T* Ip = I.data_ptr<T>();
  const T* ck = ckpt.data_ptr<T>();
  T* gIp = gI.data_ptr<T>();
  const T* gzp = gz.data_ptr<T>();
  const T* Wp = Wrec.data_ptr<T>();
  for (int64_t seg = nseg - 1; seg >= 0; --seg) {
    const int64_t t0 = seg * every;
    const int64_t len = std::min(every, steps - t0);
    std::copy(ck + seg * nblk * NS * W, ck + (seg + 1) * nblk * NS * W, &buf[0][0][0]);
    for (int64_t tt = 0; tt + 1 < len; ++tt)  // the segment's states from its checkpoint
      step_all<T, RESET>(M, buf + tt * nblk, buf + (tt + 1) * nblk, P, Ip + (t0 + tt) * M,
                         (T*)nullptr, a.dt, (T* const*)nullptr, 0);
    for (int64_t tt = len - 1; tt >= 0; --tt) {
      const int64_t t = t0 + tt;
      // adjoint of z_t: its output gradient and its share of I_{t+1} = z_t W_rec^T + ...
      if (gZ.numel()) gz.copy_(gZ[t]);
      else gz.zero_();
      if (t + 1 < steps) recurrent_adjoint<T>(B, H, gIp + (t + 1) * M, Wp, gz.data_ptr<T>());
      auto* St = buf + tt * nblk;
      for_each_block(nblk, STEP_MIN_NEURONS_PER_THREAD / W, [&](int64_t b) {
        const int64_t j0 = b * W;
        const int n = (int)std::min<int64_t>(W, M - j0);
        if (any_grec)
          for (int s = 0; s < NS; ++s)
            if (gr[s])
              for (int i = 0; i < n; ++i) GS[b][s][i] += gr[s][t * M + j0 + i];
        const T* It = Ip + t * M + j0;
        T* gIt = gIp + t * M + j0;
        if (n == W) {
          adjoint_lanes<T, RESET, W, true>(W, St[b], GS[b], GP[b], P[b], It, gzp + j0, gIt,
                                           a.dt);
        } else {
          alignas(64) T Ipad[W];
          alignas(64) T gZpad[W];
          alignas(64) T gIpad[W];
          load_lanes<T, W>(It, n, Ipad);
          for (int i = 0; i < W; ++i) gZpad[i] = i < n ? gzp[j0 + i] : T(0);
          adjoint_lanes<T, RESET, W, true>(W, St[b], GS[b], GP[b], P[b], Ipad, gZpad, gIpad,
                                           a.dt);
          for (int i = 0; i < n; ++i) gIt[i] = gIpad[i];
        }
      });
    }
  }
  for (int s = 0; s < NS; ++s) {
    T* dst = out[1 + s].data_ptr<T>();
    for (int64_t j = 0; j < M; ++j) dst[j] = GS[j / W][s][j % W];
  }
  for (int q = 0; q < NP; ++q) {
    T* dst = out[1 + NS + q].data_ptr<T>();
    for (int64_t j = 0; j < M; ++j) dst[j] = GP[j / W][q][j % W];
  }
}

void check_recurrent(const torch::Tensor& X, const torch::Tensor& Wrec, int64_t H,
                     const char* what) {
  TORCH_CHECK(X.dim() == 3 && X.is_contiguous() && X.device().is_cpu(),
              what, " must be a contiguous CPU tensor (steps, batch, hidden)");
  TORCH_CHECK(Wrec.dim() == 2 && Wrec.size(0) == H && Wrec.size(1) == H &&
              Wrec.scalar_type() == X.scalar_type() && Wrec.device().is_cpu() &&
              Wrec.is_contiguous(),
              "recurrent weights must be contiguous (hidden, hidden), of the input's dtype, "
              "on the CPU");
}

}  // namespace

// Forward of a recurrent layer. U: (steps, B, H) = x W_in^T; Wrec: (H, H); z0: (B, H);
// state0: NS tensors (B*H,); params: NP tensors of 1 or B*H elements. Returns
// [Z (steps, B, H), final state (NS, (B*H,)), with every > 0 the currents
// I (steps, B, H) and the checkpoints (nseg, nblocks, NS, W), then the recorded states
// (steps, B*H), one per entry of record (increasing state indices)].
std::vector<torch::Tensor> hh_recurrent_forward(torch::Tensor U, torch::Tensor Wrec,
                                                torch::Tensor z0,
                                                std::vector<torch::Tensor> state0,
                                                std::vector<torch::Tensor> params, double dt,
                                                int64_t reset, int64_t every,
                                                std::vector<int64_t> record) {
  TORCH_CHECK(U.dim() == 3, "U must be (steps, batch, hidden)");
  const int64_t steps = U.size(0), B = U.size(1), H = U.size(2), M = B * H;
  check_recurrent(U, Wrec, H, "U");
  TORCH_CHECK(z0.dim() == 2 && z0.size(0) == B && z0.size(1) == H &&
              z0.scalar_type() == U.scalar_type() && z0.is_contiguous(),
              "z0 must be a contiguous (batch, hidden) tensor of U's dtype");
  check_vector(state0, NS, "state0");
  check_vector(params, NP, "params");
  for (int s = 0; s < NS; ++s)
    TORCH_CHECK(state0[s].is_contiguous() && state0[s].numel() == M &&
                state0[s].scalar_type() == U.scalar_type(),
                "state0 tensors must be (batch*hidden,) contiguous, of U's dtype");
  auto opts = U.options();
  std::vector<torch::Tensor> out;
  out.push_back(big_empty({steps, B, H}, opts));
  for (int s = 0; s < NS; ++s) out.push_back(torch::empty({M}, opts));
  torch::Tensor I, ckpt;
  if (every > 0) {
    constexpr int Wf = BLOCK_FLOAT_V, Wd = BLOCK_DOUBLE_V;
    const int64_t W = U.scalar_type() == torch::kDouble ? Wd : Wf;
    I = big_empty({steps, B, H}, opts);
    ckpt = torch::empty({(steps + every - 1) / every, (M + W - 1) / W, NS, W}, opts);
    out.push_back(I);
    out.push_back(ckpt);
  }
  const size_t first_rec = out.size();
  for (size_t k = 0; k < record.size(); ++k) {
    TORCH_CHECK(record[k] >= 0 && record[k] < NS && (k == 0 || record[k] > record[k - 1]),
                "record: increasing state indices below ", NS);
    out.push_back(big_empty({steps, M}, opts));
  }
  if (M == 0 || steps == 0) return out;
  torch::Tensor WrecT = Wrec.t().contiguous();
  AT_DISPATCH_FLOATING_TYPES(U.scalar_type(), "hh_recurrent_forward", [&] {
    using T = scalar_t;
    T* rec[NS];
    for (int s = 0; s < NS; ++s) rec[s] = nullptr;
    for (size_t k = 0; k < record.size(); ++k) rec[record[k]] = out[first_rec + k].data_ptr<T>();
    T* const* recp = record.empty() ? nullptr : rec;
    torch::Tensor* Ip = every > 0 ? &I : nullptr;
    torch::Tensor* cp = every > 0 ? &ckpt : nullptr;
    if (reset == 0)
      recurrent_forward_impl<T, 0>(U, WrecT, z0, state0, params, dt, every, out[0], out, 1, Ip, cp, recp);
    else if (reset == 1)
      recurrent_forward_impl<T, 1>(U, WrecT, z0, state0, params, dt, every, out[0], out, 1, Ip, cp, recp);
    else
      recurrent_forward_impl<T, 2>(U, WrecT, z0, state0, params, dt, every, out[0], out, 1, Ip, cp, recp);
  });
  return out;
}

// Backward of hh_recurrent_forward: I and the checkpoints from the forward; gZ: (steps, B,
// H) or empty (zero); gfinal, grec: NS tensors each (empty: zero) or an empty list.
// Returns [dL/dI (steps, B, H), dL/dstate0 (NS, (B*H,)), per-neuron parameter gradients
// (NP, (B*H,))]; dL/dU = dL/dI, and dL/dWrec, dL/dz0 follow from dL/dI (see recurrent.py).
std::vector<torch::Tensor> hh_recurrent_backward(torch::Tensor I, torch::Tensor Wrec,
                                                 torch::Tensor ckpt,
                                                 std::vector<torch::Tensor> params, double dt,
                                                 int64_t reset, int64_t every, torch::Tensor gZ,
                                                 std::vector<torch::Tensor> gfinal,
                                                 std::vector<torch::Tensor> grec) {
  TORCH_CHECK(I.dim() == 3, "I must be (steps, batch, hidden)");
  const int64_t steps = I.size(0), B = I.size(1), H = I.size(2), M = B * H;
  check_recurrent(I, Wrec, H, "I");
  TORCH_CHECK(every > 0, "backward needs checkpoints (every > 0)");
  check_vector(params, NP, "params");
  TORCH_CHECK(gZ.numel() == 0 || (gZ.is_contiguous() && gZ.numel() == steps * M &&
              gZ.scalar_type() == I.scalar_type()), "bad gZ");
  for (const auto& g : gfinal)
    TORCH_CHECK(g.numel() == 0 || (g.is_contiguous() && g.numel() == M), "bad gfinal");
  for (const auto& g : grec)
    TORCH_CHECK(g.numel() == 0 || (g.is_contiguous() && g.numel() == steps * M), "bad grec");
  auto opts = I.options();
  std::vector<torch::Tensor> out;
  out.push_back(big_empty({steps, B, H}, opts));
  for (int s = 0; s < NS; ++s) out.push_back(torch::zeros({M}, opts));
  for (int q = 0; q < NP; ++q) out.push_back(torch::zeros({M}, opts));
  if (M == 0 || steps == 0) {
    out[0].zero_();
    return out;
  }
  AT_DISPATCH_FLOATING_TYPES(I.scalar_type(), "hh_recurrent_backward", [&] {
    using T = scalar_t;
    constexpr int W = BlockWidth<T>::value;
    TORCH_CHECK(ckpt.is_contiguous() && ckpt.dim() == 4 && ckpt.size(0) == (steps + every - 1) / every &&
                ckpt.size(1) == (M + W - 1) / W && ckpt.size(2) == NS && ckpt.size(3) == W,
                "bad checkpoint shape");
    if (reset == 0)
      recurrent_backward_impl<T, 0>(I, Wrec, ckpt, params, dt, every, gZ, gfinal, grec, out);
    else if (reset == 1)
      recurrent_backward_impl<T, 1>(I, Wrec, ckpt, params, dt, every, gZ, gfinal, grec, out);
    else
      recurrent_backward_impl<T, 2>(I, Wrec, ckpt, params, dt, every, gZ, gfinal, grec, out);
  });
  return out;
}
"""

_FUNCTIONS = ["hh_recurrent_forward", "hh_recurrent_backward"]
_LOCK = threading.Lock()
_EXTENSIONS: dict = {}
_FAILURES: dict = {}


def generate_recurrent_cpp(model: ModelDefinition, method: str = DEFAULT_METHOD) -> str:
    """C++ source of the recurrent extension of ``model`` and ``method``: the feed-forward
    kernel's header and generated lane functions (:func:`.codegen.step_program`, printed by
    :mod:`.cpp_source`), its shared helpers, and the recurrent drivers."""
    program = step_program(model, CPP, method=method)
    driver = cpp_source._CPP_DRIVER
    if _ENTRY_MARKER not in driver:
        raise RuntimeError("hh_plugin: the feed-forward driver of cpp_source changed; the "
                           "recurrent kernel cannot find where its helpers end")
    helpers = driver[:driver.index(_ENTRY_MARKER)]
    header = (exprel_constants(cpp_source._CPP_HEADER).replace("MODEL_NAME", model.name)
              .replace("NUM_STATES", str(len(program.states)))
              .replace("NUM_PARAMS", str(len(program.parameters)))
              .replace("BLOCK_DOUBLE", str(cpp_source.BLOCK_DOUBLE))
              .replace("BLOCK_FLOAT", str(cpp_source.BLOCK_FLOAT)))

    def fill(text):
        return (text.replace("BLOCK_FLOAT_V", str(cpp_source.BLOCK_FLOAT))
                .replace("BLOCK_DOUBLE_V", str(cpp_source.BLOCK_DOUBLE))
                .replace("STEP_GRAIN", str(cpp_source.STEP_GRAIN)))
    return (header + cpp_source._cpp_block_code(program, cpp_source.INTERLEAVE)
            + fill(helpers) + fill(_RECURRENT_DRIVER))


def load_recurrent_extension(model: ModelDefinition, method: str = DEFAULT_METHOD):
    """Compile (first use) or load (cached) the recurrent extension of ``model`` and
    ``method``; :class:`~.cpp.PathUnavailable` when it cannot be built."""
    suffix = "" if method == DEFAULT_METHOD else f"_{method}"
    return load_once(
        (model.name, id(model), method), _EXTENSIONS, _FAILURES, _LOCK,
        lambda: cached_build(f"hh_recurrent_{model.name}{suffix}",
                             generate_recurrent_cpp(model, method), _FUNCTIONS,
                             f"the fused recurrent HH kernel for model {model.name!r}"),
        "the fused recurrent kernel", "building the fused recurrent kernel")


def _extension(key: str):
    model, method = _model_method(key)
    return load_recurrent_extension(model, method)


@torch.compiler.assume_constant_result
def recurrent_kernel_ready(key: str) -> bool:
    """Whether the recurrent kernel of ``key`` (:func:`.ops.kernel_key`) is built, or can be
    built, in this process (a constant of a traced graph)."""
    try:
        _extension(key)
    except (PathUnavailable, RuntimeError):
        return False
    return True


def _block_width(dtype: torch.dtype) -> int:
    return cpp_source.BLOCK_DOUBLE if dtype == torch.float64 else cpp_source.BLOCK_FLOAT


@torch.library.custom_op("hh_plugin::fused_recurrent", mutates_args=())
def fused_recurrent(kernel: str, U: torch.Tensor, w_rec: torch.Tensor, z0: torch.Tensor,
                    state0: List[torch.Tensor], params: List[torch.Tensor], dt_ms: float,
                    reset: int, every: int, record: List[int]) -> List[torch.Tensor]:
    """The recurrent time loop of kernel ``kernel`` (module docstring): ``U`` ``(T, B, H)``
    (uA), ``w_rec`` ``(H, H)``, ``z0`` ``(B, H)``, the state ``NS x (B*H,)``. Returns
    ``[Z (T, B, H), final state (NS), (with every > 0) I (T, B, H), checkpoints,
    recorded states (T, B*H) ...]``."""
    return list(_extension(kernel).hh_recurrent_forward(U, w_rec, z0, state0, params, dt_ms,
                                                        reset, every, record))


@fused_recurrent.register_fake
def _fused_recurrent_fake(kernel, U, w_rec, z0, state0, params, dt_ms, reset, every, record):
    T, B, H = U.shape
    M = B * H
    out = [U.new_empty((T, B, H))] + [U.new_empty((M,)) for _ in state0]
    if every > 0:
        W = _block_width(U.dtype)
        out += [U.new_empty((T, B, H)),
                U.new_empty(((T + every - 1) // every, (M + W - 1) // W, len(state0), W))]
    return out + [U.new_empty((T, M)) for _ in record]


@torch.library.custom_op("hh_plugin::fused_recurrent_backward", mutates_args=())
def fused_recurrent_backward(kernel: str, I: torch.Tensor, w_rec: torch.Tensor,
                             ckpt: torch.Tensor, params: List[torch.Tensor], dt_ms: float,
                             reset: int, every: int, gZ: torch.Tensor,
                             gfinal: List[torch.Tensor],
                             grec: List[torch.Tensor]) -> List[torch.Tensor]:
    """``[dL/dI (T, B, H), dL/dstate0 (NS), dL/dparams (per neuron, NP)]``; an empty tensor
    among the output gradients stands for zero."""
    return list(_extension(kernel).hh_recurrent_backward(I, w_rec, ckpt, params, dt_ms, reset,
                                                         every, gZ, gfinal, grec))


@fused_recurrent_backward.register_fake
def _fused_recurrent_backward_fake(kernel, I, w_rec, ckpt, params, dt_ms, reset, every, gZ,
                                   gfinal, grec):
    T, B, H = I.shape
    ns = ckpt.shape[2]
    return ([I.new_empty((T, B, H))] + [I.new_empty((B * H,)) for _ in range(ns)]
            + [I.new_empty((B * H,)) for _ in params])


def _setup_context(ctx, inputs, output):
    kernel, U, w_rec, z0, state0, params, dt_ms, reset, every, record = inputs
    ns = len(state0)
    ctx.meta = (kernel, ns, dt_ms, reset, every, tuple(record))
    ctx.param_shapes = [p.shape for p in params]
    if every > 0:
        ctx.save_for_backward(output[0], output[1 + ns], output[2 + ns], w_rec, z0, *params)


def _backward(ctx, grads):
    kernel, ns, dt_ms, reset, every, record = ctx.meta
    if every <= 0:
        raise RuntimeError("hh_plugin: the fused recurrent kernel ran without checkpoints "
                           "(no input required gradients); run it again with gradients "
                           "enabled")
    Z, I, ckpt, w_rec, z0, *params = ctx.saved_tensors
    empty = I.new_empty(0)
    gZ = empty if grads[0] is None else grads[0].contiguous()
    gfinal = [empty if g is None else g.contiguous() for g in grads[1:1 + ns]]
    # grads[1 + ns], grads[2 + ns]: the currents and checkpoints, saved for this backward
    # (not returned to the caller), take no gradient
    grec = []
    traces = grads[3 + ns:]
    if record and any(g is not None for g in traces):
        given = dict(zip(record, traces))
        grec = [empty if given.get(s) is None else given[s].contiguous() for s in range(ns)]
    out = fused_recurrent_backward(kernel, I, w_rec, ckpt, params, dt_ms, reset, every, gZ,
                                   gfinal, grec)
    gI, gs0 = out[0], out[1:1 + ns]
    H = I.shape[2]
    z_prev = torch.cat([z0.unsqueeze(0), Z[:-1]])  # z_{t-1} for every step t
    g_w = gI.reshape(-1, H).t().mm(z_prev.reshape(-1, H))
    g_z0 = gI[0].mm(w_rec)
    gparams = [g.sum().reshape(shape) if shape.numel() == 1 else g.reshape(shape)
               for g, shape in zip(out[1 + ns:], ctx.param_shapes)]
    return (None, gI, g_w, g_z0, list(gs0), gparams, None, None, None,
            (None if record else []))


fused_recurrent.register_autograd(_backward, setup_context=_setup_context)


# ------------------------------------------------------------------------ the runners
def _naive(x, state, w_in, w_rec, p, dt, names, everything):
    """The step loop (:func:`hh_recurrent_step`): ``(spikes, state or trajectories)``."""
    from norse.torch.module.snn import _merge_states

    outputs, states = [], []
    rows = {name: [] for name in names}
    for t in range(x.shape[0]):
        z, state = hh_recurrent_step(x[t], state, w_in, w_rec, p, dt)
        outputs.append(z)
        if everything:
            states.append(state)
        for name in names:
            rows[name].append(getattr(state, name))
    z = torch.stack(outputs)
    if everything:
        return z, _merge_states(states)
    if names:
        return z, _recorded(type(state), names, {n: torch.stack(r) for n, r in rows.items()})
    return z, state


def _fused(x, state, w_in, w_rec, p, dt, names, everything, checkpoint):
    model = type(p).model
    key = kernel_key(model, p.method)
    if not torch.compiler.is_compiling():
        load_recurrent_extension(model, p.method)  # PathUnavailable here falls back
    elif not recurrent_kernel_ready(key):
        raise PathUnavailable(f"the fused recurrent {p.method} kernel of model "
                              f"{model.name!r} cannot be built")
    T = x.shape[0]
    hidden_shape = tuple(state.z.shape)
    H = hidden_shape[-1]
    B = math.prod(hidden_shape[:-1])
    M = B * H
    dtype = x.dtype
    U = torch.nn.functional.linear(x, w_in).reshape(T, B, H).contiguous()
    z0 = state.z.to(dtype).reshape(B, H).contiguous()
    states = [torch.broadcast_to(getattr(state, n).to(dtype), hidden_shape).reshape(M)
              .contiguous() for n in model.state_names]
    params = _flat_parameters(p, x, hidden_shape)
    reset = RESET_CODES[None if p.V_reset is None else p.spk_reset]
    record = list(range(len(model.state_names))) if everything else \
        [model.state_names.index(n) for n in names]
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in [U, w_rec, z0, *states, *params])
    every = checkpoint_interval(checkpoint, T) if needs_grad else 0
    ns = len(states)
    out = fused_recurrent(key, U, w_rec.contiguous(), z0, states, params, float(dt) * 1e3,
                          reset, every, record)
    Z = out[0].reshape((T,) + hidden_shape)
    cls = recurrent_state_type(model)
    if everything or names:
        traces = {n: r.reshape((T,) + hidden_shape)
                  for n, r in zip([model.state_names[k] for k in record],
                                  out[len(out) - len(record):])}
        if everything:
            return Z, cls(*(traces[n] for n in model.state_names), Z)
        return Z, _recorded(cls, names, traces)
    final = [s.reshape(hidden_shape) for s in out[1:1 + ns]]
    return Z, cls(*final, Z[-1])


def recurrent_path_unavailable_reason(path: str, x: torch.Tensor,
                                      method: str = DEFAULT_METHOD) -> Optional[str]:
    """Why the recurrent layer cannot run on ``path`` for the input ``x``, or ``None``."""
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}; choose one of {PATHS}")
    if path in ("naive", "auto"):
        return None
    if path in ("compiled", "triton"):
        return (f"the recurrent layer has no {path!r} path (its time loop runs as the step "
                f"loop, path='naive', or the fused C++ kernel, path='fused_cpp')")
    if method not in FUSED_METHODS["fused_cpp"]:
        return (f"the fused kernel integrates with {list(FUSED_METHODS['fused_cpp'])} only, "
                f"not {method!r}")
    if x.dtype not in _FUSED_DTYPES:
        return f"the fused_cpp path supports float32 and float64, got {x.dtype}"
    if torch.onnx.is_in_onnx_export():
        return ("ONNX export: the fused kernel is a custom operator that ONNX does not know, "
                "so the export decomposes it into the step loop (path='naive')")
    if x.device.type != "cpu":
        return (f"the fused_cpp path runs on the CPU; the input is on {x.device} (use "
                f"path='naive')")
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return "torch.jit traces the step loop (the fused kernel is opaque to it)"
    return compiler_available()


def hh_recurrent_sequence(x: torch.Tensor, state, input_weights: torch.Tensor,
                          recurrent_weights: torch.Tensor, p, dt: float = 1e-5, *,
                          record_states=False, path: str = "auto", checkpoint=None):
    r"""Run a recurrent HH layer over ``T = x.shape[0]`` steps (module docstring).

    Arguments:
        x: input ``(T, ..., input_size)``, floating point.
        state: the initial flat recurrent state (``HHRecurrentState``), fields of shape
            ``(..., hidden)``.
        input_weights: :math:`W_{in}` ``(hidden, input_size)``; recurrent_weights:
            :math:`W_{rec}` ``(hidden, hidden)`` (uA per unit input, per spike), of ``x``'s
            dtype.
        p: parameters NamedTuple; dt: step in seconds.
        record_states: ``False`` (the final state), ``True`` (every field's ``(T, ...,
            hidden)`` trajectory, ``z`` the spikes) or names of neuron state variables
            (those trajectories, ``None`` elsewhere and in ``z``).
        path: ``'auto'`` (the fused C++ kernel for CPU float32/float64 inputs where a
            compiler is found, else the step loop), ``'fused_cpp'``, ``'naive'`` (the step
            loop, :func:`~hh_plugin.torch.functional.hh.hh_recurrent_step`); ``'compiled'``
            and ``'triton'`` do not exist for this layer (:class:`~.cpp.PathUnavailable`).
        checkpoint: the fused backward's checkpoint interval
            (:func:`~.sequence.checkpoint_interval`).

    Returns ``(spikes (T, ..., hidden), state)``, the same on every path (float64: the
    same spike steps, values to round-off).
    """
    model = type(p).model
    check_dt(dt, model, p.method)
    names = record_names(record_states, model)
    everything = record_states is True
    if everything:
        names = ()
    H = recurrent_weights.shape[0] if recurrent_weights.ndim == 2 else -1
    if recurrent_weights.ndim != 2 or recurrent_weights.shape[1] != H:
        raise ValueError(f"recurrent_weights of shape {tuple(recurrent_weights.shape)}: "
                         f"expected (hidden, hidden)")
    if input_weights.ndim != 2 or input_weights.shape != (H, x.shape[-1]):
        raise ValueError(f"input_weights of shape {tuple(input_weights.shape)}: expected "
                         f"(hidden, input_size) = {(H, x.shape[-1])}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"input of shape {tuple(x.shape)}: expected (T, ..., input_size) "
                         f"with T >= 1 time steps")
    if tuple(state.z.shape) != tuple(x.shape[1:-1]) + (H,):
        raise ValueError(f"state.z of shape {tuple(state.z.shape)} does not match the input: "
                         f"expected {tuple(x.shape[1:-1]) + (H,)} (the input's batch "
                         f"dimensions, then the {H} hidden neurons)")
    reason = recurrent_path_unavailable_reason("fused_cpp" if path == "auto" else path, x,
                                               p.method)
    if path != "auto" and reason is not None:
        raise PathUnavailable(f"path {path!r} is unavailable: {reason}")
    if reason is None and path != "naive":
        try:
            return _fused(x, state, input_weights, recurrent_weights, p, dt, names,
                          everything, checkpoint)
        except PathUnavailable as exc:
            if path != "auto":
                raise
            warnings.warn(f"hh_plugin: the fused recurrent kernel is unavailable ({exc}); "
                          f"falling back to the step loop", RuntimeWarning, stacklevel=2)
    return _naive(x, state, input_weights, recurrent_weights, p, dt, names, everything)


__all__ = ["fused_recurrent", "fused_recurrent_backward", "generate_recurrent_cpp",
           "hh_recurrent_sequence", "load_recurrent_extension",
           "recurrent_path_unavailable_reason"]
