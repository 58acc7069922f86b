r"""One projection of a :class:`~hh_plugin.network.NetworkSpec` as torch operations.

The weights are one ``torch.nn.Parameter`` per projection:

- dense projections: the ``(target, source)`` matrix, applied as
  :math:`x \mathrel{+}= W z` with ``torch.nn.functional.linear`` (what a
  ``torch.nn.Linear`` between two Norse layers computes);
- sparse projections: the vector of the synapses' weights, stored and applied sparsely,
  :math:`x_{post_k} \mathrel{+}= w_k z_{pre_k}` (``index_select``, multiply,
  ``index_add``), so memory and work scale with the number of synapses.

Synapses with different delays are grouped by delay value; each group reads the source's
spikes of its own past step.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
import torch

from ...network.connectivity import Connection


class ProjectionOperator(torch.nn.Module):
    """Applies one projection's weights to presynaptic spikes, grouped by delay.

    ``weight`` is the trainable ``nn.Parameter`` (dense matrix or sparse values);
    :attr:`delays` lists the distinct delays; :meth:`apply` returns the contribution of
    the synapses of one delay to the target's synaptic variable.
    """

    def __init__(self, connection: Connection, dtype, device=None):
        super().__init__()
        self.dense = connection.dense
        self.n_pre, self.n_post = connection.n_pre, connection.n_post
        delay = np.asarray(connection.delay)
        # a projection without synapses still has one (empty) group, so that its weight
        # takes part in every run (a gradient of size 0, as DistributedDataParallel needs)
        self.delays: Tuple[int, ...] = tuple(int(d) for d in np.unique(delay)) or (1,)
        self.uniform = len(self.delays) <= 1
        if self.dense:
            weight = torch.tensor(np.asarray(connection.weight_matrix), dtype=dtype,
                                  device=device)
        else:
            weight = torch.tensor(np.asarray(connection.weight), dtype=dtype, device=device)
        self.weight = torch.nn.Parameter(weight)
        self._groups: List[str] = []
        if self.dense:
            if not self.uniform:
                matrix = delay.reshape(self.n_post, self.n_pre)
                for d in self.delays:
                    self.register_buffer(f"mask_{d}", torch.as_tensor(matrix == d, dtype=dtype,
                                                                      device=device))
        else:
            pre = np.asarray(connection.pre)
            post = np.asarray(connection.post)
            for d in self.delays:
                sel = np.nonzero(delay == d)[0]
                self.register_buffer(f"pre_{d}", torch.tensor(pre[sel], device=device))
                self.register_buffer(f"post_{d}", torch.tensor(post[sel], device=device))
                if not self.uniform:
                    self.register_buffer(f"sel_{d}", torch.as_tensor(sel, device=device))

    def apply(self, z: torch.Tensor, delay: int, weight=None) -> torch.Tensor:
        """Contribution ``(..., n_post)`` of the synapses with ``delay`` for spikes
        ``z`` of shape ``(..., n_pre)`` (``weight``: values to use instead of the
        parameter, e.g. weights that STDP changed)."""
        w = self.weight if weight is None else weight
        if w.dtype != z.dtype:
            w = w.to(z.dtype)
        if self.dense:
            if not self.uniform:
                w = w * getattr(self, f"mask_{delay}").to(z.dtype)
            return torch.nn.functional.linear(z, w)
        pre = getattr(self, f"pre_{delay}")
        post = getattr(self, f"post_{delay}")
        if not self.uniform:
            w = w.index_select(0, getattr(self, f"sel_{delay}"))
        values = z.index_select(-1, pre) * w
        out = z.new_zeros(z.shape[:-1] + (self.n_post,))
        return out.index_add(-1, post, values)

    def extra_repr(self) -> str:
        kind = "dense" if self.dense else f"sparse, {self.weight.numel()} synapses"
        return f"{self.n_pre} -> {self.n_post}, {kind}, delays={list(self.delays)}"


    def synapse_indices(self):
        """``(pre, post)`` index tensors of a sparse projection with one delay."""
        d = self.delays[0]
        return getattr(self, f"pre_{d}"), getattr(self, f"post_{d}")
