r"""Whole-sequence HH simulation on a chosen computation path.

:func:`hh_sequence` runs ``T`` steps of :func:`hh_plugin.torch.functional.hh.hh_step` and
returns the same spikes and states on every path:

``'naive'``
    the reference: a Python loop over ``hh_step`` (any device, dtype, autograd mode).
``'compiled'``
    the same loop with chunks of steps compiled by :func:`torch.compile`.
``'fused_cpp'``
    one generated C++ kernel for the whole time loop (CPU, float32/float64), with a
    recomputing backward (:mod:`.cpp`).
``'triton'``
    a generated Triton kernel for the whole time loop (CUDA tensors; forward only, see
    :mod:`.triton_kernel`).
``'auto'``
    ``'fused_cpp'`` for CPU float32/float64 tensors when a compiler is available,
    ``'triton'`` for CUDA tensors without gradients when Triton is installed, else
    ``'naive'``.

A path requested explicitly that cannot run raises :class:`PathUnavailable` with the reason.
:data:`FUSED_METHODS` lists the integration methods each generated kernel implements; for
another method ``'auto'`` takes the next path that does (the ``'naive'`` loop, whose
gradients are autograd's through :func:`~hh_plugin.torch.functional.hh.hh_step`).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Tuple

import torch

from ...model.integrators import DEFAULT_METHOD
from ..functional.hh import _cast, check_dt, hh_step
from ..functional.parameters import state_type
from ..options import checked_names
from .codegen import FUSED_METHODS, RESET_CODES, kernel_parameters
from .cpp import PathUnavailable, compiler_available, load_extension
from .ops import fused_sequence, kernel_key, kernel_ready

PATHS = ("auto", "naive", "compiled", "fused_cpp", "triton")
_FUSED_DTYPES = (torch.float32, torch.float64)


def _check_path(path: str) -> str:
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}; choose one of {PATHS}")
    return path


def record_names(record_states, model) -> Tuple[str, ...]:
    """The state variables to record, in the model's order: ``False``/``None``: none;
    ``True``: all (``V`` and the gates); a name or a sequence of names (``('V',)``):
    those. An unknown name or another type is refused (``ValueError``/``TypeError``)."""
    if record_states is None or record_states is False:
        return ()
    if record_states is True:
        return tuple(model.state_names)
    names = checked_names(record_states, model.state_names, "record_states",
                          "state variable", model.name,
                          "True, False or state variable names such as ('V',)")
    return tuple(n for n in model.state_names if n in names)


def _recorded(cls, names, values):
    """A state of ``cls`` holding the recorded ``(T, ...)`` trajectories by name and
    ``None`` for the variables not recorded."""
    return cls(*(values.get(field) if field in names else None for field in cls._fields))


def path_unavailable_reason(path: str, input_current: torch.Tensor,
                            record_states: bool = False,
                            method: str = DEFAULT_METHOD) -> Optional[str]:
    """Why ``path`` cannot run for this input (and integration ``method``), or ``None``."""
    _check_path(path)
    if path in ("naive", "auto"):
        return None
    if path in FUSED_METHODS and method not in FUSED_METHODS[path]:
        return (f"the {path} path integrates with {list(FUSED_METHODS[path])} only, not "
                f"{method!r} (use path='naive' or 'compiled')")
    if path == "compiled":
        if not hasattr(torch, "compile"):
            return "torch.compile is not available in this torch version"
        return None
    if input_current.dtype not in _FUSED_DTYPES:
        return f"the {path} path supports float32 and float64, got {input_current.dtype}"
    if path == "fused_cpp":
        if torch.onnx.is_in_onnx_export():
            return ("ONNX export: the fused kernel is a custom operator that ONNX does not "
                    "know, so the export decomposes it into the plain step (path='naive')")
        if input_current.device.type != "cpu":
            return (f"the fused_cpp path runs on the CPU; the input is on "
                    f"{input_current.device} (use path='triton' or 'naive')")
        return compiler_available()
    if path == "triton":
        from .triton_kernel import triton_unavailable_reason
        return triton_unavailable_reason(input_current)
    return None  # pragma: no cover


def resolve_path(path: str, input_current: torch.Tensor, record_states: bool = False,
                 needs_grad: bool = False, method: str = DEFAULT_METHOD) -> str:
    """The concrete path for ``path`` (``'auto'`` resolved); raises if it cannot run."""
    _check_path(path)
    if path == "auto":
        if path_unavailable_reason("fused_cpp", input_current, record_states, method) is None:
            return "fused_cpp"
        if (not needs_grad and input_current.device.type == "cuda"
                and path_unavailable_reason("triton", input_current, record_states,
                                            method) is None):
            return "triton"
        return "naive"
    reason = path_unavailable_reason(path, input_current, record_states, method)
    if reason is not None:
        raise PathUnavailable(f"path {path!r} is unavailable: {reason}")
    if path == "triton" and needs_grad:
        raise PathUnavailable("path 'triton' is unavailable: the Triton kernel is forward-only "
                              "(no gradients); use path='fused_cpp' on the CPU or 'naive'")
    return path


def _naive(input_current, state, p, dt, names):
    """``(spikes, recorded state or None, final state)``, as every path's runner."""
    outputs = []
    rows = {name: [] for name in names}
    for t in range(input_current.shape[0]):
        z, state = hh_step(input_current[t], state, p, dt)
        outputs.append(z)
        for name in names:
            rows[name].append(getattr(state, name))
    recorded = _recorded(type(state), names, {name: torch.stack(r) for name, r in
                                              rows.items()}) if names else None
    return torch.stack(outputs), recorded, state


# ------------------------------------------------------------------ torch.compile path
_COMPILED: dict = {}


def _chunk_fn(k: int, names: Tuple[str, ...]):
    def run(I_chunk, state, p, dt: float):
        zs = []
        rows = [[] for _ in names]
        for t in range(k):
            z, state = hh_step(I_chunk[t], state, p, dt)
            zs.append(z)
            for row, name in zip(rows, names):
                row.append(getattr(state, name))
        return torch.stack(zs), state, [torch.stack(r) for r in rows]
    return run


def _compiled(input_current, state, p, dt, names, chunk: int = 8):
    """Chunks of ``chunk`` steps compiled with :func:`torch.compile` (the remainder
    step by step, also compiled); each chunk returns its spikes and the recorded
    variables ``names``."""
    T = input_current.shape[0]
    outputs, recorded = [], []
    t = 0
    for k in (chunk, 1):
        fn = _COMPILED.get((k, names))
        if fn is None:
            fn = _COMPILED[(k, names)] = torch.compile(_chunk_fn(k, names), dynamic=False)
        while T - t >= k:
            z, state, rows = fn(input_current[t:t + k], state, p, dt)
            outputs.append(z)
            recorded.append(rows)
            t += k
    traces = _recorded(type(state), names, {
        name: torch.cat([rows[j] for rows in recorded]) for j, name in enumerate(names)}) \
        if names else None
    return torch.cat(outputs), traces, state


# ------------------------------------------------------------------ fused C++ path
def checkpoint_interval(checkpoint, steps: int) -> int:
    """Steps between stored states for the fused backward.

    ``None`` or ``'sqrt'`` (default): :math:`\\lceil\\sqrt T\\rceil`, memory :math:`O(\\sqrt T)`
    per neuron (the segments are recomputed in cache, which measures no slower than
    storing every step); ``1``: the four state variables of every step; an integer
    ``k``: every ``k``-th step.
    """
    if checkpoint is None or checkpoint == "sqrt":
        return max(1, math.ceil(math.sqrt(steps)))
    if isinstance(checkpoint, bool) or not isinstance(checkpoint, int) or checkpoint < 1:
        raise ValueError(f"checkpoint must be None, 'sqrt' or a positive int, got {checkpoint!r}")
    return checkpoint


def _flat_parameters(p, like: torch.Tensor, step_shape) -> list:
    model = type(p).model
    values = _cast(p, like)
    M = math.prod(step_shape)
    flat = []
    for name in kernel_parameters(model):
        v = values[name]
        if v is None:  # V_reset without reset
            v = torch.zeros((), dtype=like.dtype, device=like.device)
        if v.numel() == 1:
            flat.append(v.reshape(1))
            continue
        try:
            full = torch.broadcast_to(v, step_shape)
        except RuntimeError:
            raise ValueError(f"parameter {name} of shape {tuple(v.shape)} does not broadcast "
                             f"to the population shape {tuple(step_shape)}") from None
        flat.append(full.reshape(M).contiguous())
    return flat


def _fused_cpp(input_current, state, p, dt, names, checkpoint):
    model = type(p).model
    key = kernel_key(model, p.method)
    if not torch.compiler.is_compiling():  # build or load it now: PathUnavailable falls back
        if p.method == DEFAULT_METHOD:
            load_extension(model)
        else:
            load_extension(model, method=p.method)
    elif not kernel_ready(key):
        raise PathUnavailable(f"the fused {p.method} kernel of model {model.name!r} cannot be "
                              f"built")
    T = input_current.shape[0]
    step_shape = tuple(input_current.shape[1:])
    M = math.prod(step_shape)
    dtype = input_current.dtype
    I = input_current.reshape(T, M).contiguous()
    states = []
    for name in model.state_names:
        v = getattr(state, name)
        if v.dtype != dtype:
            v = v.to(dtype)
        states.append(torch.broadcast_to(v, step_shape).reshape(M).contiguous())
    params = _flat_parameters(p, input_current, step_shape)
    reset = RESET_CODES[None if p.V_reset is None else p.spk_reset]
    record = [model.state_names.index(name) for name in names]
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in [input_current, *states, *params])
    every = checkpoint_interval(checkpoint, T) if needs_grad else 0
    ns = len(states)
    out = fused_sequence(key, I, states, params, float(dt) * 1e3, reset, every, record)
    out = [out[0], *out[len(out) - len(record):], *out[1:1 + ns]] if record else out[:1 + ns]
    Z = out[0].reshape(input_current.shape)
    cls = state_type(model)
    final = cls(*(s.reshape(step_shape) for s in out[len(out) - len(states):]))
    if names:
        return Z, _recorded(cls, names, {name: r.reshape(input_current.shape)
                                         for name, r in zip(names, out[1:])}), final
    return Z, None, final


def hh_sequence(input_current: torch.Tensor, state, p, dt: float = 1e-5, *,
                record_states: bool = False, path: str = "auto",
                checkpoint=None, return_final: bool = False) -> Tuple[torch.Tensor, object]:
    r"""Run ``T = input_current.shape[0]`` HH steps.

    Arguments:
        input_current: ``(T, ...)`` current in uA.
        state: initial ``HHState`` of shape ``input_current.shape[1:]`` (broadcastable).
        p: parameters NamedTuple (``HHParameters``).
        dt: step in seconds.
        record_states: return the ``(T, ...)`` trajectories instead of the final state:
            ``True`` all state variables, ``False`` none (the final state), or names such
            as ``('V',)`` (:func:`record_names`): a state whose other fields are ``None``
            (only those trajectories are stored; on the fused C++ path only they are
            allocated).
        path: see the module docstring.
        checkpoint: fused C++ backward only: see :func:`checkpoint_interval`.
        return_final: also return the final state (all variables), to continue a run
            that recorded only some of them.

    Returns ``(spikes, state)`` exactly as :class:`hh_plugin.torch.HH` does, and with
    ``return_final`` ``(spikes, state, final_state)``.
    """
    check_dt(dt, type(p).model, p.method)
    names = record_names(record_states, type(p).model)
    needs_grad = torch.is_grad_enabled() and (
        input_current.requires_grad
        or any(isinstance(t, torch.Tensor) and t.requires_grad for t in state)
        or any(isinstance(t, torch.Tensor) and t.requires_grad for t in p))
    explicit = path != "auto"
    concrete = resolve_path(path, input_current, record_states, needs_grad, p.method)
    if concrete == "fused_cpp":
        try:
            z, recorded, final = _fused_cpp(input_current, state, p, dt, names, checkpoint)
        except PathUnavailable as exc:
            if explicit:
                raise
            warnings.warn(f"hh_plugin: the fused C++ kernel is unavailable ({exc}); "
                          f"falling back to the naive path (the step loop)", RuntimeWarning,
                          stacklevel=2)
            z, recorded, final = _naive(input_current, state, p, dt, names)
    elif concrete == "triton":
        from .triton_kernel import hh_sequence_triton
        z, recorded, final = hh_sequence_triton(input_current, state, p, dt, names,
                                                return_final=True)
    elif concrete == "compiled":
        z, recorded, final = _compiled(input_current, state, p, dt, names)
    else:
        z, recorded, final = _naive(input_current, state, p, dt, names)
    out = recorded if names else final
    return (z, out, final) if return_final else (z, out)
