r"""The fused network kernel as a torch autograd function: the forward with its tape (or
checkpoints), the backward in reverse time, both in the C++ that :mod:`.fused` and
:mod:`.fused_backward` generate; what is differentiated is said in :mod:`.fused_backward`.
"""

from __future__ import annotations

import os

import torch


def flat_constants(P, inc, out, E, q, dtype) -> torch.Tensor:
    """A receptor's constants as one tensor ``[E, P (row-major), c, k, q]`` (``E`` 0 for a
    current), in the layout of the kernel's receptor values; tensors among them (trainable
    synapse parameters, :meth:`~.receptors.ReceptorNumerics.constants`) keep their graph."""
    items = ([0.0 if E is None else E] + [v for row in P for v in row] + list(inc) + list(out)
             + list(q))
    return torch.stack([v.to(dtype) if torch.is_tensor(v) else torch.tensor(float(v), dtype=dtype)
                        for v in items])


def _cloned(tensors):
    """A copy of nested lists and tuples of tensors (a checkpoint the kernel may not
    overwrite in place)."""
    if torch.is_tensor(tensors):
        return tensors.clone()
    return type(tensors)(_cloned(t) for t in tensors)


#: Most bytes the tape of one call may take (``$HH_PLUGIN_NETWORK_TAPE_BYTES``, default
#: 1 GiB); a longer run is taped in segments that fit, from checkpoints (:class:`NetworkRun`).
TAPE_BYTES = int(os.environ.get("HH_PLUGIN_NETWORK_TAPE_BYTES", 2 ** 30))


class NetworkRun:
    r"""One call of the fused network kernel with gradients: the forward's arguments
    (``args``, in ``network_forward``'s order), the layout of the differentiable inputs
    and what the backward needs.

    When the whole tape (:math:`T N (n_{states} + n_{synaptic} + n_{receptors} [+1])`
    numbers, plus :math:`T n_{pre}` per Tsodyks-Markram projection and
    :math:`T n_{synapses}` per projection with a plasticity rule) fits in :data:`TAPE_BYTES`, the forward keeps it. Else the run is cut into
    segments of :math:`K` steps whose tape fits: the forward runs them one after another
    (each continuing from the last, the spikes of the previous steps reaching it through
    the history as in a run in pieces) and keeps a checkpoint of the states at each
    segment's start; the backward recomputes each segment's tape from its checkpoint, in
    reverse order, and hands the gradients of the spikes that a segment received from
    earlier steps (its history) on to those steps. Memory: one segment's tape plus
    :math:`T/K` checkpoints of :math:`N (n_{states} + n_{synaptic} + 1)` numbers, for one
    more forward pass of compute."""

    def __init__(self, ext, args: list, layout: list, projections: list, weights: list,
                 n_constants: int, history: list, history_lengths: list):
        self.ext, self.args = ext, args
        self.layout = layout            # per population (has external current, ns, nx, np)
        self.projections = projections  # per projection: the sorted-by-source order
        self.weights = weights          # per projection: the weight's shape
        self.n_constants = n_constants  # receptor constant tensors, all populations
        self.history = history          # per history entry: the shapes of its rows
        self.lengths = history_lengths  # per history entry: how many steps it keeps
        self.rasters = None

    # ------------------------------------------------------------------ segments
    def _tape(self, steps: int):
        a = self.args
        tape = [[torch.empty((steps, a[2][6 * p + 1]), dtype=self.dtype)
                 for _ in range(self.widths[p])] for p in range(len(self.widths))]
        # a Tsodyks-Markram projection's releases, by arrival step and source neuron; a
        # plastic projection's transmitted weights, by arrival step and synapse
        return tape + [([torch.zeros((steps, csr[0].numel() - 1), dtype=self.dtype)]
                        if a[13][9 * q + 6] else [])
                       + ([torch.zeros((steps, csr[1].numel()), dtype=self.dtype)]
                          if a[13][9 * q + 7] >= 0 else [])
                       for q, csr in enumerate(a[14])]

    def _history_at(self, k0: int, rasters: list):
        """The history a segment starting at step ``k0`` takes (per population, then
        spike source: the last steps before it, ``(m, n)`` uint8) and, per entry, the step
        of its first row."""
        a = self.args
        npop = len(self.widths)
        out, first = [], []
        for h, old in enumerate(a[19]):
            if k0 == 0:
                out.append(old)
                first.append(-old.shape[0])
                continue
            length = self.lengths[h]
            before = rasters[h][:k0] if h < npop else a[12][h - npop][:k0]
            rows = torch.cat([old, before])[max(0, old.shape[0] + k0 - length):]
            out.append(rows.contiguous() if length else rows[:0].contiguous())
            first.append(k0 - rows.shape[0] if length else k0)
        return out, first

    def _run_segment(self, k0, k1, states, syn, since, proj_state, record, record_index,
                     history, tape):
        a = list(self.args)
        a[0] = k1 - k0
        a[3], a[5], a[11], a[16] = states, syn, since, proj_state
        a[10] = [e[k0:k1] if e.numel() else e for e in a[10]]
        a[12] = [r[k0:k1] for r in a[12]]
        a[17], a[18], a[19] = record, record_index, history
        return self.ext.network_forward(*a, tape), a

    def forward(self):
        a = self.args
        steps, states, syn, rec_meta, since = a[0], a[3], a[5], a[6], a[11]
        npop = len(states)
        self.dtype = dtype = states[0][0].dtype
        self.widths = [len(states[p]) + len(syn[p]) + len(rec_meta[p]) // 6
                       + (a[2][6 * p + 3] >= 0) for p in range(npop)]
        row = (sum(self.widths[p] * a[2][6 * p + 1] for p in range(npop))
               + sum((csr[0].numel() - 1 if a[13][9 * q + 6] else 0)
                     + (csr[1].numel() if a[13][9 * q + 7] >= 0 else 0)
                     for q, csr in enumerate(a[14]))) * dtype.itemsize
        K = max(1, min(steps, TAPE_BYTES // max(row, 1)))
        self.segments = [(k0, min(steps, k0 + K)) for k0 in range(0, steps, K)]
        self.checkpoints = []
        rasters = [[] for _ in range(npop)]
        for k0, k1 in self.segments:
            if len(self.segments) > 1:
                self.checkpoints.append(_cloned((states, syn, since, a[16])))
            history, _ = self._history_at(k0, [torch.cat(r) if r else None for r in rasters])
            record = [[t[k0:k1] for t in rec] for rec in a[17]]
            tape = self._tape(k1 - k0) if len(self.segments) == 1 else []
            out, _ = self._run_segment(k0, k1, states, syn, since, a[16], record, a[18],
                                       history, tape)
            for p in range(npop):
                rasters[p].append(out[p])
            self.tape = tape
        self.rasters = [torch.cat(r) for r in rasters]
        result = [z.to(dtype) for z in self.rasters]
        for p in range(npop):
            result += list(states[p]) + list(syn[p])
        for rec in a[17]:
            result += list(rec)
        # the outputs' counts only: holding the outputs here would be a reference cycle
        self.counts = [(len(states[p]), len(syn[p]), len(a[17][p])) for p in range(npop)]
        a[3] = a[5] = a[17] = None
        return tuple(result)

    def backward(self, grads, needs) -> tuple:
        a = self.args
        npop = len(self.counts)
        dtype = self.dtype
        steps = a[0]

        def prepared(g):
            return None if g is None else g.contiguous().to(dtype)

        k = npop
        grad_spikes = [prepared(g) for g in grads[:npop]]
        grad_final = []
        for ns, nx, _ in self.counts:
            grad_final.append([prepared(g) for g in grads[k:k + ns + nx]])
            k += ns + nx
        grad_record = []
        for _, _, nrec in self.counts:
            grad_record.append([prepared(g) for g in grads[k:k + nrec]])
            k += nrec
        # which inputs need gradients: per population [ext, states, syn, params], then weights,
        # then receptor constants, then the history's spikes
        want_ext = want_params = False
        i = 0
        for has_ext, ns, nx, npar in self.layout:
            want_ext |= has_ext and needs[i]
            i += 1 if has_ext else 0
            i += ns + nx
            want_params |= any(needs[i:i + npar])
            i += npar
        i += len(self.projections)
        want_const = any(needs[i:i + self.n_constants])
        want_history = any(needs[i + self.n_constants:])
        empty = torch.empty(0, dtype=dtype)
        # gradients of the spikes that later segments received through their history
        extra = [None] * npop
        history_grads = [torch.zeros(len(rows), *(rows[0] if rows else ()), dtype=dtype)
                         for rows in self.history]
        ext_grads = [torch.zeros_like(e) if e.numel() and want_ext else None for e in a[10]]
        param_grads = weight_grads = const_grads = None
        lam = [[g if g is not None else empty for g in gf] for gf in grad_final]
        for index in reversed(range(len(self.segments))):
            k0, k1 = self.segments[index]
            history, first = self._history_at(k0, self.rasters)
            if len(self.segments) == 1:
                tape, spikes = self.tape, self.rasters
            else:  # recompute the segment's tape from its checkpoint
                states, syn, since, proj_state = _cloned(self.checkpoints[index])
                tape = self._tape(k1 - k0)
                spikes, _ = self._run_segment(k0, k1, states, syn, since, proj_state,
                                              [[] for _ in range(npop)],
                                              [[] for _ in range(npop)], history, tape)
            gz = []
            for p in range(npop):
                g = None if grad_spikes[p] is None else grad_spikes[p][k0:k1]
                if extra[p] is not None:
                    g = extra[p][k0:k1] if g is None else g + extra[p][k0:k1]
                gz.append(empty if g is None else g.contiguous())
            grec = [[empty if g is None else g[k0:k1].contiguous() for g in rec]
                    for rec in grad_record]
            result = self.ext.network_backward(
                k1 - k0, a[1], a[2], a[4], a[6], a[7], a[8], a[9],
                [e[k0:k1] if e.numel() else e for e in a[10]], [r[k0:k1] for r in a[12]],
                a[13], a[14], history, tape, spikes, gz, grec, a[18], lam,
                [int(want_ext), int(want_params), int(want_const), 1])
            tape = None
            first_const = npop + len(self.projections)
            for p, (has_ext, ns, nx, npar) in enumerate(self.layout):
                res = result[p]
                if ext_grads[p] is not None:
                    ext_grads[p][k0:k1] = res[0]
                lam[p] = res[1:1 + ns + nx]
            if want_params:
                seg = [result[p][1 + ns + nx:1 + ns + nx + npar]
                       for p, (_, ns, nx, npar) in enumerate(self.layout)]
                param_grads = seg if param_grads is None else [
                    [x + y for x, y in zip(u, v)] for u, v in zip(param_grads, seg)]
            seg = [result[npop + q][0] for q in range(len(self.projections))]
            weight_grads = seg if weight_grads is None else [
                x + y for x, y in zip(weight_grads, seg)]
            seg = [result[first_const + p] for p in range(npop)]
            const_grads = seg if const_grads is None else [
                [x + y for x, y in zip(u, v)] for u, v in zip(const_grads, seg)]
            # the history's gradients: to earlier steps of this run, or to the input history
            for h, start in enumerate(first):
                g = result[first_const + npop + h][0]
                for r in range(g.shape[0]):
                    step = start + r
                    if step >= 0 and h < npop:
                        if extra[h] is None:
                            extra[h] = torch.zeros((steps, g.shape[1]), dtype=dtype)
                        extra[h][step] += g[r]
                    elif step < 0:
                        history_grads[h][len(self.history[h]) + step] += g[r]
        out = []
        for p, (has_ext, ns, nx, npar) in enumerate(self.layout):
            if has_ext:
                out.append(ext_grads[p])
            out += lam[p]
            out += param_grads[p] if want_params else [None] * npar
        for q, (order, shape) in enumerate(zip(self.projections, self.weights)):
            if a[13][9 * q + 7] >= 0:  # plastic: transmits its state's weights, not these
                out.append(None)
                continue
            g = torch.empty_like(weight_grads[q])
            g[torch.as_tensor(order)] = weight_grads[q]
            out.append(g.reshape(shape))
        for p in range(npop):
            out += [g.to(dtype) if want_const else None for g in const_grads[p]]
        for h, shapes in enumerate(self.history):
            out += [history_grads[h][row].reshape(shape) if want_history else None
                    for row, shape in enumerate(shapes)]
        return tuple(out)


class NetworkFunction(torch.autograd.Function):
    """The fused network kernel as an autograd function: ``apply(run, *inputs)`` with
    ``run`` a :class:`NetworkRun`; the outputs are the spikes (in the states' dtype, with
    the surrogate gradient), the final states and synaptic variables and the recorded
    traces."""

    @staticmethod
    def forward(ctx, run, *inputs):
        ctx.run = run
        return run.forward()

    @staticmethod
    def backward(ctx, *grads):
        # the tape lives as long as the graph (a second backward with retain_graph reuses it)
        return (None,) + ctx.run.backward(grads, ctx.needs_input_grad[1:])
