r"""The fused C++ kernels as PyTorch custom operators (:mod:`torch.library`).

``hh_plugin::fused_sequence`` (the forward over the whole time loop) and
``hh_plugin::fused_sequence_backward`` (its recomputing adjoint), ``hh_plugin::fused_step``
and ``hh_plugin::fused_step_backward`` (one step, the cell) are registered with fake
(meta) implementations, which give the output shapes without running a kernel, and each
backward as its forward's autograd formula. :func:`torch.compile` therefore traces
:class:`~hh_plugin.torch.HH` on its default path, and an
:class:`~hh_plugin.torch.HHCell` stepped in a loop, into one graph (the kernel an opaque
node, no graph break, the same arithmetic as in eager mode), and
:func:`torch.export.export` exports them.

Each model and integration method has its own generated kernel; the operators name it by
a string key (:func:`kernel_key`: the model's name, the method and a hash of the
definition), so one pair of operators serves every model. A key is resolved to its model in this process's
registry, filled when a module or :func:`~hh_plugin.torch.fused.sequence.hh_sequence`
first meets the model, else among the registered models (an exported program loaded in
a fresh process).

Outputs of the forward, for ``NS`` state variables: the spikes ``(T, M)``, the final
state (``NS`` tensors ``(M,)``), the checkpoints for the backward when ``every > 0``
(:func:`~hh_plugin.torch.fused.sequence.checkpoint_interval`; shape ``(blocks,
segments, NS, W)``, ``W`` the kernel's block width) and one ``(T, M)`` trajectory per
index of ``record``.
"""

from __future__ import annotations

import hashlib
import json
from typing import List

import torch

from ...model.definition import ModelDefinition, get_model, known_models
from ...model.integrators import DEFAULT_METHOD
from .codegen import CPP, kernel_parameters, step_program
from .cpp import PathUnavailable, load_extension
from .cpp_source import BLOCK_DOUBLE, BLOCK_FLOAT

_MODELS: dict = {}


def kernel_key(model: ModelDefinition, method: str = DEFAULT_METHOD) -> str:
    """``'<model name>-<method>-<16 hex digits of the definition's hash>'``, registered for
    the operators to find the kernel of ``model`` integrated with ``method``."""
    name = f"torch_kernel_key:{method}"
    key = model._cache.get(name)
    if key is None:
        digest = hashlib.sha256(json.dumps(model.to_dict(), sort_keys=True).encode())
        key = model._cache[name] = f"{model.name}-{method}-{digest.hexdigest()[:16]}"
        _MODELS[key] = (model, method)
    return key


def _model_method(key: str):
    entry = _MODELS.get(key)
    if entry is None:
        name, method, _ = key.rsplit("-", 2)
        if name in known_models() and kernel_key(get_model(name), method) == key:
            entry = _MODELS[key]
        else:
            raise RuntimeError(f"hh_plugin: no model for the fused kernel {key!r} in this "
                               f"process; create the module (or register the model) first")
    return entry


def _extension(key: str):
    model, method = _model_method(key)
    if method == DEFAULT_METHOD:
        return load_extension(model)
    return load_extension(model, method=method)


@torch.compiler.assume_constant_result
def kernel_ready(key: str) -> bool:
    """Whether the kernel ``key`` (:func:`kernel_key`) is built, or can be built, in this
    process. Under :func:`torch.compile` this runs once, when the code is traced, and its
    answer is a constant of the graph (a build cannot be traced)."""
    try:
        _extension(key)
    except (PathUnavailable, RuntimeError):
        return False
    return True


def _block_width(dtype: torch.dtype) -> int:
    return BLOCK_DOUBLE if dtype == torch.float64 else BLOCK_FLOAT


@torch.library.custom_op("hh_plugin::fused_sequence", mutates_args=())
def fused_sequence(kernel: str, I: torch.Tensor, state0: List[torch.Tensor],
                   params: List[torch.Tensor], dt_ms: float, reset: int, every: int,
                   record: List[int]) -> List[torch.Tensor]:
    """Run the generated kernel ``kernel`` over ``I`` (``(T, M)``, uA) from ``state0``."""
    return list(_extension(kernel).hh_forward(I, state0, params, dt_ms, reset, every,
                                              record))


@fused_sequence.register_fake
def _fused_sequence_fake(kernel, I, state0, params, dt_ms, reset, every, record):
    T, M = I.shape
    out = [I.new_empty((T, M))] + [I.new_empty((M,)) for _ in state0]
    if every > 0:
        W = _block_width(I.dtype)
        out.append(I.new_empty(((M + W - 1) // W, (T + every - 1) // every, len(state0), W)))
    return out + [I.new_empty((T, M)) for _ in record]


@torch.library.custom_op("hh_plugin::fused_sequence_backward", mutates_args=())
def fused_sequence_backward(kernel: str, I: torch.Tensor, ckpt: torch.Tensor,
                            params: List[torch.Tensor], dt_ms: float, reset: int, every: int,
                            gZ: torch.Tensor, gfinal: List[torch.Tensor],
                            grec: List[torch.Tensor], pgrad: bool) -> List[torch.Tensor]:
    """The adjoint pass: ``[dL/dI, dL/dstate0 (NS), dL/dparams (per neuron, NP)]``; an
    empty tensor among the output gradients stands for zero."""
    return list(_extension(kernel).hh_backward(I, ckpt, params, dt_ms, reset, every, gZ,
                                               gfinal, grec, pgrad))


@fused_sequence_backward.register_fake
def _fused_sequence_backward_fake(kernel, I, ckpt, params, dt_ms, reset, every, gZ, gfinal,
                                  grec, pgrad):
    T, M = I.shape
    ns = ckpt.shape[2]
    return ([I.new_empty((T, M))] + [I.new_empty((M,)) for _ in range(ns)]
            + [I.new_empty((M,)) for _ in params])


def _setup_context(ctx, inputs, output):
    kernel, I, state0, params, dt_ms, reset, every, record = inputs
    ns = len(state0)
    ctx.meta = (kernel, ns, dt_ms, reset, every, tuple(record))
    ctx.param_shapes = [p.shape for p in params]
    if every > 0:
        ctx.save_for_backward(I, output[1 + ns], *params)


def _backward(ctx, grads):
    kernel, ns, dt_ms, reset, every, record = ctx.meta
    if every <= 0:
        raise RuntimeError("hh_plugin: the fused kernel ran without checkpoints (no input "
                           "required gradients); run it again with gradients enabled")
    I, ckpt, *params = ctx.saved_tensors
    empty = I.new_empty(0)
    gZ = empty if grads[0] is None else grads[0].contiguous()
    gfinal = [empty if g is None else g.contiguous() for g in grads[1:1 + ns]]
    grec = []
    traces = grads[2 + ns:] if every > 0 else []
    if record and any(g is not None for g in traces):
        given = dict(zip(record, traces))
        grec = [empty if given.get(s) is None else given[s].contiguous() for s in range(ns)]
    pgrad = bool(_any(ctx.needs_input_grad[3]))
    out = fused_sequence_backward(kernel, I, ckpt, params, dt_ms, reset, every, gZ, gfinal,
                                  grec, pgrad)
    gI, gs0 = out[0], out[1:1 + ns]
    gparams = [None] * len(ctx.param_shapes)
    if pgrad:
        gparams = [g.sum().reshape(shape) if shape.numel() == 1 else g.reshape(shape)
                   for g, shape in zip(out[1 + ns:], ctx.param_shapes)]
    # torch.library compares this with the inputs' pytree, where a non-empty int list
    # (``record``) is one leaf and an empty one an empty node
    return None, gI, list(gs0), gparams, None, None, None, (None if record else [])


def _any(needs) -> bool:
    """``needs_input_grad`` of a list input (one flag per tensor, or one flag)."""
    return any(needs) if isinstance(needs, (list, tuple)) else bool(needs)


fused_sequence.register_autograd(_backward, setup_context=_setup_context)


# ------------------------------------------------------------------------- one step
@torch.library.custom_op("hh_plugin::fused_step", mutates_args=())
def fused_step(kernel: str, I: torch.Tensor, states: List[torch.Tensor],
               params: List[torch.Tensor], dt_ms: float, reset: int) -> List[torch.Tensor]:
    """One step of kernel ``kernel``: ``[spikes, new state (NS)]``, each of ``I``'s shape."""
    return list(_extension(kernel).hh_step_forward(I, states, params, dt_ms, reset))


@fused_step.register_fake
def _fused_step_fake(kernel, I, states, params, dt_ms, reset):
    return [torch.empty_like(I) for _ in range(1 + len(states))]


@torch.library.custom_op("hh_plugin::fused_step_backward", mutates_args=())
def fused_step_backward(kernel: str, I: torch.Tensor, states: List[torch.Tensor],
                        params: List[torch.Tensor], dt_ms: float, reset: int,
                        gz: torch.Tensor, gstates: List[torch.Tensor],
                        pgrad: bool) -> List[torch.Tensor]:
    """The adjoint step: ``[dL/dI, dL/dstate (NS)]`` in ``I``'s shape and, with ``pgrad``,
    the per-neuron parameter gradients (``NP`` tensors ``(M,)``)."""
    return list(_extension(kernel).hh_step_backward(I, states, params, dt_ms, reset, gz,
                                                    gstates, pgrad))


@fused_step_backward.register_fake
def _fused_step_backward_fake(kernel, I, states, params, dt_ms, reset, gz, gstates, pgrad):
    out = [torch.empty_like(I) for _ in range(1 + len(states))]
    if pgrad:
        out += [I.new_empty((I.numel(),)) for _ in params]
    return out


def _step_setup_context(ctx, inputs, output):
    kernel, I, states, params, dt_ms, reset = inputs
    ctx.meta = (kernel, len(states), dt_ms, reset)
    ctx.param_shapes = [p.shape for p in params]
    ctx.save_for_backward(I, *states, *params)


def _step_backward(ctx, grads):
    kernel, ns, dt_ms, reset = ctx.meta
    I, *tensors = ctx.saved_tensors
    states, params = tensors[:ns], tensors[ns:]
    empty = I.new_empty(0)
    gz = empty if grads[0] is None else grads[0].contiguous()
    gstates = [empty if g is None else g.contiguous() for g in grads[1:1 + ns]]
    pgrad = _any(ctx.needs_input_grad[3])
    out = fused_step_backward(kernel, I, list(states), list(params), dt_ms, reset, gz,
                              gstates, pgrad)
    gparams = [None] * len(params)
    if pgrad:  # only the parameters the adjoint step differentiates (not alpha, width)
        gparams = [(g.sum().reshape(shape) if shape.numel() == 1 else g.reshape(shape))
                   if has else None for g, shape, has in
                   zip(out[1 + ns:], ctx.param_shapes, _gradient_flags(kernel))]
    return None, out[0], list(out[1:1 + ns]), gparams, None, None


def _gradient_flags(key: str) -> tuple:
    """Per kernel parameter (:func:`.codegen.kernel_parameters` order): does the adjoint
    step give it a gradient?"""
    model, method = _model_method(key)
    slot = f"torch_step_gradient_flags:{method}"
    flags = model._cache.get(slot)
    if flags is None:
        grads = step_program(model, CPP, method=method).parameter_gradients
        flags = model._cache[slot] = tuple(name in grads for name in kernel_parameters(model))
    return flags


fused_step.register_autograd(_step_backward, setup_context=_step_setup_context)
