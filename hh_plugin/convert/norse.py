r"""A trained Norse model as a :class:`~hh_plugin.network.NetworkSpec`.

Supported: a ``norse.torch.SequentialState`` or ``torch.nn.Sequential`` of

- an *encoder*: any layers before the first neuron layer (``Linear``, ``ReLU``, ...). They
  run in torch on the input; their output is the external current (uA) of the first
  neuron layer, identical for both backends;
- neuron layers: the plugin's :class:`~hh_plugin.torch.HH`/``HHCell`` (an HH population),
  ``HHRecurrent``/``HHRecurrentCell`` (input weights, and recurrent weights as a
  projection onto itself with a delay of one step: Norse's :math:`W_{rec} z_{t-1}`), and
  Norse's ``LI``/``LICell`` (a :class:`~hh_plugin.network.leaky_integrator.LISpec`
  population);
- one ``torch.nn.Linear`` between two neuron layers: a ``current_pulse`` projection with
  delay 0 (weights :math:`W`, a spike at step :math:`k` adds :math:`W z_k` to the next
  layer's input in step :math:`k`, as in Norse) and its bias as a constant current.

A batch of inputs becomes one network: each population holds ``batch`` copies of the
layer (neuron ``b * n + j`` is neuron ``j`` of sample ``b``) with block-diagonal
projections, so one Brian2 run simulates the whole batch; :meth:`NorseNetwork.per_sample`
splits a result back into ``(T, batch, n)``.

Initial states: a layer's ``V_init='rest'`` (the modules' default) or a number starts
both backends from that potential with the gates at steady state; random draws are
refused, except ``'default'``, which becomes the population's default state.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..network import (CurrentInput, NetworkSpec, Population, Projection, Sparse,
                       current_pulse)
from ..network.leaky_integrator import LISpec
from ..model.initial import DEFAULT, REST

#: The receptor of converted projections.
RECEPTOR = "in"


@dataclass
class NorseNetwork:
    """The converted network: ``spec``, the run length ``steps``, the ``batch`` size and
    the population of each neuron layer (``layers[index in the Sequential] = name``)."""

    spec: NetworkSpec
    steps: int
    batch: int
    layers: Dict[int, str] = field(default_factory=dict)

    def per_sample(self, values, population: str) -> np.ndarray:
        """``(T, batch * n)`` spikes or a trace of ``population`` as ``(T, batch, n)``."""
        values = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor)
                            else values)
        n = self.spec.populations[population].size // self.batch
        return values.reshape(values.shape[0], self.batch, n)


def _neuron_kind(layer) -> Optional[str]:
    import norse.torch as norse

    from ..torch.module.hh import HH, HHCell, HHRecurrent, HHRecurrentCell

    if isinstance(layer, (HHRecurrent, HHRecurrentCell)):
        return "hh_recurrent"
    if isinstance(layer, (HH, HHCell)):
        return "hh"
    if isinstance(layer, (norse.LI, norse.LICell)):
        return "li"
    return None


def _block_diagonal(weight: np.ndarray, batch: int) -> Sparse:
    """``batch`` copies of a ``(n_out, n_in)`` weight matrix as sparse synapses."""
    n_out, n_in = weight.shape
    post, pre = np.nonzero(weight)
    values = weight[post, pre]
    offsets = np.arange(batch)
    pre_all = (pre[None, :] + offsets[:, None] * n_in).reshape(-1)
    post_all = (post[None, :] + offsets[:, None] * n_out).reshape(-1)
    return Sparse(pre_all, post_all, np.tile(values, batch))


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy()


def _layer_name(index: int, layer) -> str:
    return f"{type(layer).__name__}{index}"


def _incoming_weights(layer, kind, pending, n_pre):
    """Weights ``(n_out, n_pre)`` and bias of the spikes entering a neuron layer: the
    Linear's; for a recurrent HH layer its input weights after it
    (:math:`W_{in} (W z + b)`)."""
    weight = bias = None
    if pending is not None:
        weight = _numpy(pending[1].weight)
        bias = None if pending[1].bias is None else _numpy(pending[1].bias)
    if kind == "hh_recurrent":
        w_in = _numpy(layer.input_weights)
        weight = w_in if weight is None else w_in @ weight
        bias = None if bias is None else w_in @ bias
    if weight.shape[1] != n_pre:
        raise ValueError(f"{type(layer).__name__}: weights for {weight.shape[1]} inputs "
                         f"after a layer of {n_pre} neurons")
    return weight, bias


def network_from_norse(model: torch.nn.Module, inputs: torch.Tensor,
                       steps: Optional[int] = None) -> NorseNetwork:
    r"""Convert ``model`` for ``inputs``.

    Args:
        model: ``norse.torch.SequentialState`` or ``torch.nn.Sequential`` (see the module
            docs for the layers it may hold).
        inputs: the model's input, ``(T, batch, features)`` (as Norse takes it), or
            ``(batch, features)`` held constant for ``steps`` steps.
        steps: the run length for a constant input.

    Returns:
        a :class:`NorseNetwork`; run ``NetworkModule(result.spec)`` or
        ``build_network(result.spec, result.steps)`` for ``result.steps`` steps.

    Raises:
        TypeError: a model that is not a sequence of layers, or a layer the network
            cannot represent (named, with the reason).
        ValueError: inconsistent time steps, shapes or an empty model.
    """
    if not isinstance(model, torch.nn.Sequential) and not hasattr(model, "stateful_layers"):
        raise TypeError(f"model must be a norse.torch.SequentialState or torch.nn.Sequential, "
                        f"got {type(model).__name__}")
    layers = list(model)
    kinds = [_neuron_kind(layer) for layer in layers]
    neuron_at = [i for i, k in enumerate(kinds) if k is not None]
    if not neuron_at:
        raise ValueError("the model has no neuron layer (HH, HHCell, HHRecurrent, LI, ...)")
    if not isinstance(inputs, torch.Tensor) or inputs.ndim not in (2, 3):
        raise ValueError("inputs must be a tensor (T, batch, features) or (batch, features)")
    if inputs.ndim == 2:
        if steps is None or int(steps) < 1:
            raise ValueError("a constant (batch, features) input needs steps >= 1")
        steps = int(steps)
    else:
        if steps is not None and int(steps) != inputs.shape[0]:
            raise ValueError(f"steps={steps} but the input has {inputs.shape[0]} steps")
        steps = inputs.shape[0]
    batch = inputs.shape[-2]

    dts = {float(layers[i].dt) for i in neuron_at}
    if len(dts) != 1:
        raise ValueError(f"the neuron layers use different time steps {sorted(dts)} s")
    dt_ms = dts.pop() * 1e3

    first = neuron_at[0]
    with torch.no_grad():
        current = inputs.to(torch.float64)
        for index, layer in enumerate(layers[:first]):
            encoder = (copy.deepcopy(layer).to(torch.float64)  # the user's model stays as is
                       if isinstance(layer, torch.nn.Module) else layer)
            current = encoder(current)
            if not isinstance(current, torch.Tensor):
                raise TypeError(f"layer {index} ({type(layer).__name__}) before the first "
                                f"neuron layer returns {type(current).__name__}, not a "
                                f"tensor: the encoder must be stateless layers")
        if kinds[first] == "hh_recurrent":  # its input weights act on the encoder's output
            current = torch.nn.functional.linear(
                current, layers[first].input_weights.to(torch.float64))
    current = _numpy(current)

    populations: List[Population] = []
    projections: List[Projection] = []
    currents: List[CurrentInput] = []
    names: Dict[int, str] = {}
    previous: Optional[Tuple[int, str, int]] = None  # (index, population, size)
    pending = None  # a Linear waiting for its target layer
    for index in range(first, len(layers)):
        layer, kind = layers[index], kinds[index]
        label = f"layer {index} ({type(layer).__name__})"
        if kind is None:
            if isinstance(layer, torch.nn.Linear) and pending is None and previous is not None:
                pending = (index, layer)
                continue
            why = ("two Linear layers in a row (multiply them into one)"
                   if isinstance(layer, torch.nn.Linear) else
                   "only one torch.nn.Linear may connect two neuron layers (a spike train "
                   "cannot pass through other layers in both backends)")
            raise TypeError(f"{label} cannot be represented in the network: {why}")
        if previous is not None and pending is None and kind != "hh_recurrent":
            raise TypeError(f"{label} follows {names[previous[0]]} without a Linear layer: "
                            f"the network connects neuron layers through Linear weights")
        name = _layer_name(index, layer)
        if kind == "li":
            if previous is None:
                raise TypeError(f"{label}: a leaky integrator as the first neuron layer is "
                                f"not supported (it would only filter the input current)")
            size = pending[1].out_features
            populations.append(Population(name, batch * size, LISpec.from_norse(layer.p)))
        else:
            spec = layer.p.to_spec()
            size = int(layer.hidden_size) if kind == "hh_recurrent" else None
            if size is None:
                size = (pending[1].out_features if pending is not None
                        else current.shape[-1])
            if spec.size is not None:
                raise TypeError(f"{label}: per-neuron parameters are not supported by the "
                                f"converter (they would have to be tiled over the batch)")
            V_init = layer.V_init
            if isinstance(V_init, str) and V_init == REST:  # deterministic: the same number
                V_init = float(layer.resting_state()["V"])
            initial = {"V": float(V_init)} if not isinstance(V_init, str) else {}
            if isinstance(V_init, str) and V_init != DEFAULT:
                raise TypeError(f"{label}: V_init={V_init!r} draws random values; the "
                                f"converter needs the same values on both backends (give "
                                f"a number)")
            populations.append(Population(name, batch * size, spec, initial=initial))
            if kind == "hh_recurrent":
                projections.append(Projection(
                    name, name, _block_diagonal(_numpy(layer.recurrent_weights), batch),
                    current_pulse(RECEPTOR), delay=1, name=f"{name}_recurrent"))
        if previous is None:
            if current.shape[-1] != size:
                raise ValueError(f"{label}: the encoder gives {current.shape[-1]} currents "
                                 f"for {size} neurons")
            values = current.reshape(batch * size) if current.ndim == 2 else \
                current.reshape(steps, batch * size)
            currents.append(CurrentInput(name, values))
        else:
            weight, bias = _incoming_weights(layer, kind, pending, previous[2])
            projections.append(Projection(previous[1], name, _block_diagonal(weight, batch),
                                          current_pulse(RECEPTOR), delay=0,
                                          name=f"{previous[1]}_to_{name}"))
            if bias is not None:
                currents.append(CurrentInput(name, np.tile(bias, batch)))
            pending = None
        names[index] = name
        previous = (index, name, size)
    if pending is not None:
        raise TypeError(f"layer {pending[0]} (Linear) ends the model: its output is not a "
                        f"neuron layer; end the model with a neuron layer such as LI")
    spec = NetworkSpec(populations, projections, currents, dt=dt_ms)
    return NorseNetwork(spec, steps, batch, names)
