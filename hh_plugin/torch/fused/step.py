r"""The fused single step: one call of the generated C++ kernel per time step (the cell).

:func:`hh_step_fused` computes :func:`hh_plugin.torch.functional.hh.hh_step` (spikes with
the surrogate gradient, the new state, an optional reset) in one call of the extension
built by :mod:`.cpp`, and its backward in one call of the generated adjoint step
(gradients to the input current, the old state and every model parameter and
``V_reset``; not to the surrogate's ``alpha``, ``width``, as in :func:`hh_step`). Both run
the *same* compiled lane functions as the sequence kernel on the same padded blocks of
neurons, so a cell stepped in a Python loop gives bit-for-bit the spikes and states of
:class:`hh_plugin.torch.HH` on the fused path, in float32 as in float64.

The plain torch step :func:`hh_step` rounds differently in float32: it divides where
the kernel multiplies by a reciprocal (``1/C``, ``1/V_scale``), rounds every product
where the compiler fuses multiply-adds, and takes torch's ``exp``/``expm1`` instead of
the kernel's (libmvec); near-threshold crossings can then move by a step.

:func:`hh_step_auto`, which :class:`hh_plugin.torch.HHCell` and the functional
activations use, runs the fused step where it applies (:func:`fused_step_unavailable_reason`)
and :func:`hh_step` otherwise.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from ...model.limits import check_step
from ..functional.hh import hh_step
from ..functional.parameters import state_type
from .codegen import CPP, FUSED_METHODS, RESET_CODES, kernel_parameters, step_program
from .cpp import PathUnavailable, load_extension
from .ops import fused_step, kernel_key, kernel_ready

_FUSED_DTYPES = (torch.float32, torch.float64)
_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)
_GRADIENT_PARAMETERS: dict = {}
_PARAMETER_CACHE: dict = {}
_WARNED: set = set()


def _tracing() -> Optional[str]:
    """Why the opaque extension must not run here (a graph is being captured), or ``None``."""
    compiler = getattr(torch, "compiler", None)
    if compiler is not None:
        if compiler.is_compiling():
            return "torch.compile/torch.export is tracing the step"
        exporting = getattr(compiler, "is_exporting", None)
        if exporting is not None and exporting():
            return "torch.export is tracing the step"
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return "torch.jit is tracing the step"
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    if active is not None and active():
        return "a functorch transform (vmap, grad, functionalize) is active"
    return None


def _graph_capture() -> bool:
    """Whether torch.compile or torch.export captures a graph (not torch.jit, not a
    functorch transform), where the step can be the custom operator of :mod:`.ops`."""
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return False  # ONNX does not know the custom operator: the plain step is exported
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    if active is not None and active():
        return False
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)
    return torch.compiler.is_compiling() or exporting()


def _tensor_reason(t, dtype, capture: bool = False) -> Optional[str]:
    if not capture and type(t) not in _PLAIN_TYPES:
        return f"a {type(t).__name__} (the fused step takes plain tensors)"
    if not t.is_cpu:
        return f"a tensor on {t.device} (the fused step runs on the CPU)"
    if t.layout is not torch.strided:
        return f"a {t.layout} tensor (the fused step takes dense tensors)"
    if t.dtype is not dtype:
        return f"dtypes {dtype} and {t.dtype} mixed (the fused step takes one dtype)"
    return None


def fused_step_unavailable_reason(input_current, state, p) -> Optional[str]:
    """Why :func:`hh_step_auto` would fall back to the plain torch step, or ``None``.

    The fused step takes CPU float32/float64 dense plain tensors, input and state of one
    dtype, where a C++ compiler built the extension; under torch.compile and torch.export
    it is traced as the custom operator ``hh_plugin::fused_step`` (:mod:`.ops`), under
    torch.jit and functorch transforms it does not apply."""
    if not isinstance(input_current, torch.Tensor):
        return "the input is not a tensor"
    method = getattr(p, "method", "exponential_euler")
    if method not in FUSED_METHODS["fused_cpp"]:
        return (f"the fused step integrates with {list(FUSED_METHODS['fused_cpp'])} only, "
                f"not {method!r}")
    dtype = input_current.dtype
    if dtype not in _FUSED_DTYPES:
        return f"the fused step supports float32 and float64, got {dtype}"
    capture = _graph_capture()  # tensors are then fake or functional subclasses
    reason = _tensor_reason(input_current, dtype, capture)
    if reason is not None:
        return reason
    for t in state:
        reason = (_tensor_reason(t, dtype, capture) if isinstance(t, torch.Tensor)
                  else "a state that is not a tensor")
        if reason is not None:
            return reason
    reason = _tracing()
    if reason is not None:
        if capture and kernel_ready(kernel_key(type(p).model, method)):
            return None  # the step is traced as the custom operator hh_plugin::fused_step
        return reason
    try:
        _extension(type(p).model, method)
    except PathUnavailable as exc:
        return str(exc)
    return None


def _extension(model, method: str):
    """The fused extension of ``model`` and ``method`` (the default method's by the plain
    call, as before methods existed)."""
    if method == "exponential_euler":
        return load_extension(model)
    return load_extension(model, method=method)


def _gradient_parameters(model, method: str = "exponential_euler") -> tuple:
    """Per kernel parameter: does the adjoint step give it a gradient?"""
    flags = _GRADIENT_PARAMETERS.get((model.name, method), (None, None))
    if flags[0] is not model:
        grads = step_program(model, CPP, method=method).parameter_gradients
        flags = _GRADIENT_PARAMETERS[(model.name, method)] = (
            model, tuple(name in grads for name in kernel_parameters(model)))
    return flags[1]


def _parameters(p, like: torch.Tensor, shape) -> list:
    """Kernel parameters as flat tensors of ``like``'s dtype, cached per ``p`` while no
    tensor of ``p`` requires gradients or is modified in place."""
    from .sequence import _flat_parameters

    tensors = [v for v in p if isinstance(v, torch.Tensor)]
    if torch.is_grad_enabled() and any(v.requires_grad for v in tensors):
        return _flat_parameters(p, like, shape)  # fresh: autograd records the casts
    key = (id(p), like.dtype, tuple(shape))
    versions = tuple(v._version for v in tensors)
    hit = _PARAMETER_CACHE.get(key)
    if hit is not None and hit[0] is p and hit[1] == versions:
        return hit[2]
    flat = _flat_parameters(p, like, shape)
    if len(_PARAMETER_CACHE) >= 16:
        _PARAMETER_CACHE.clear()
    _PARAMETER_CACHE[key] = (p, versions, flat)
    return flat


class FusedStepFunction(torch.autograd.Function):
    """One fused step and its adjoint (see the module docstring).

    ``forward(ctx, ext, meta, fixed, I, *states, *params)``: ``I`` and the states
    contiguous, of one shape; the kernel parameters (:func:`.codegen.kernel_parameters`
    order, 1 or ``I.numel()`` elements each) either as the trailing tensor arguments
    (when gradients may reach them) or as the list ``fixed`` (fewer arguments for
    autograd to inspect). ``meta = (number of states, dt in ms, reset code, per
    parameter: has a gradient)``. Returns the spikes and the new states."""

    @staticmethod
    def forward(ctx, ext, meta, fixed, I, *tensors):
        ns, dt_ms, reset, _ = meta
        states = list(tensors[:ns])
        params = list(tensors[ns:]) if fixed is None else fixed
        out = ext.hh_step_forward(I, states, params, dt_ms, reset)
        ctx.set_materialize_grads(False)
        if any(ctx.needs_input_grad[3:]):
            ctx.ext, ctx.meta, ctx.fixed = ext, meta, fixed
            ctx.save_for_backward(I, *tensors)
        return tuple(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, gz, *gstates):
        ns, dt_ms, reset, has_gradient = ctx.meta
        I, *tensors = ctx.saved_tensors
        states = tensors[:ns]
        params = tensors[ns:] if ctx.fixed is None else ctx.fixed
        needs = ctx.needs_input_grad
        wanted = ([n and h for n, h in zip(needs[4 + ns:], has_gradient)]
                  if ctx.fixed is None else [False] * len(params))
        empty = I.new_empty(0)
        out = ctx.ext.hh_step_backward(
            I, states, params, dt_ms, reset, empty if gz is None else gz.contiguous(),
            [empty if g is None else g.contiguous() for g in gstates], any(wanted))
        gparams = []
        if ctx.fixed is None:
            for q, p in enumerate(params):
                if wanted[q]:
                    g = out[1 + ns + q]
                    gparams.append(g.sum().reshape(p.shape) if p.numel() == 1
                                   else g.view(p.shape))
                else:
                    gparams.append(None)
        return (None, None, None, out[0] if needs[3] else None,
                *[g if needs[4 + s] else None for s, g in enumerate(out[1:1 + ns])], *gparams)


def hh_step_fused(input_current: torch.Tensor, state, p, dt: float = 1e-5):
    r"""One step of :func:`~hh_plugin.torch.functional.hh.hh_step` in the fused C++ kernel.

    Same arguments and results, except that every state variable of the result has the
    common shape of the input and the state (as the spikes have). Raises :class:`.cpp.PathUnavailable` if the extension cannot be
    built; the inputs must satisfy :func:`fused_step_unavailable_reason`."""
    model = type(p).model
    reason = fused_step_unavailable_reason(input_current, state, p) \
        if p.method not in FUSED_METHODS["fused_cpp"] else None
    if reason is not None:
        raise PathUnavailable(reason)
    if _graph_capture():
        return _traced_step(input_current, state, p, dt)
    ext = _extension(model, p.method)
    tensors = [input_current, *state]
    shape = state.V.shape
    if any(t.shape != shape for t in tensors):
        shape = torch.broadcast_shapes(*(t.shape for t in tensors))
        tensors = [torch.broadcast_to(t, shape) for t in tensors]
    tensors = [t.contiguous() for t in tensors]
    params = _parameters(p, input_current, shape)
    reset = RESET_CODES[None if p.V_reset is None else p.spk_reset]
    dt_ms = float(dt) * 1e3
    if not torch.is_grad_enabled():
        out = ext.hh_step_forward(tensors[0], tensors[1:], params, dt_ms, reset)
    else:
        meta = (len(tensors) - 1, dt_ms, reset, _gradient_parameters(model, p.method))
        if any(t.requires_grad for t in params):
            out = FusedStepFunction.apply(ext, meta, None, *tensors, *params)
        elif any(t.requires_grad for t in tensors):
            out = FusedStepFunction.apply(ext, meta, params, *tensors)
        else:  # nothing to differentiate: no autograd node
            out = ext.hh_step_forward(tensors[0], tensors[1:], params, dt_ms, reset)
    return out[0], state_type(model)(*out[1:])


def _traced_step(input_current, state, p, dt):
    """:func:`hh_step_fused` as the custom operator (graph capture: no caches, no
    extension call)."""
    from .sequence import _flat_parameters

    model = type(p).model
    tensors = [input_current, *state]
    shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    tensors = [torch.broadcast_to(t, shape).contiguous() for t in tensors]
    params = _flat_parameters(p, input_current, shape)
    reset = RESET_CODES[None if p.V_reset is None else p.spk_reset]
    out = fused_step(kernel_key(model, p.method), tensors[0], tensors[1:], params,
                     float(dt) * 1e3, reset)
    return out[0], state_type(model)(*out[1:])


def hh_step_auto(input_current: torch.Tensor, state, p, dt: float = 1e-5):
    """:func:`hh_step_fused` where it applies (:func:`fused_step_unavailable_reason`),
    else the plain torch step :func:`~hh_plugin.torch.functional.hh.hh_step`. Both refuse
    a ``dt`` (seconds) above the model's ``max_dt``."""
    model = type(p).model
    dt_ms = float(dt) * 1e3
    if dt_ms > model.max_dt:
        check_step(dt_ms, model, "dt is in seconds")
    reason = fused_step_unavailable_reason(input_current, state, p)
    if reason is None:
        try:
            return hh_step_fused(input_current, state, p, dt)
        except ValueError:
            pass  # parameters that do not broadcast to the state: hh_step decides
    elif reason.startswith(("the fused C++ path needs", "building the fused")):
        if model.name not in _WARNED:
            _WARNED.add(model.name)
            warnings.warn(f"hh_plugin: {reason}; the cell runs the slower torch step",
                          RuntimeWarning, stacklevel=3)
    return hh_step(input_current, state, p, dt)
