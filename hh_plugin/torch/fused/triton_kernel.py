r"""The Triton path: a forward kernel generated from the model definition.

:func:`.triton_source.generate_triton` writes a ``@triton.jit`` kernel in which each program
holds ``BLOCK`` neurons' state in registers for the whole time loop (one load of the input
and one store of the spikes per step). The source is written to the cache directory
(:func:`.cpp.cache_dir`) and imported from there, because Triton reads a kernel's source
from its file.

Scope, honestly: this path is **forward only** (no gradients; use ``'fused_cpp'`` on the
CPU for training). It runs on CUDA tensors with Triton installed. Without a GPU it is
tested with Triton's interpreter (``TRITON_INTERPRET=1`` set before Triton is imported),
which has no ``libdevice.expm1``; there ``expm1`` is computed from ``exp`` and ``log``
(Kahan's method) instead. It has not been timed on a GPU in this project.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from typing import Optional

import torch

from ...model.definition import ModelDefinition
from ...model.expressions import EXPREL_TAYLOR_CUTOFF_FLOAT32, EXPREL_TAYLOR_CUTOFF_FLOAT64
from ..functional.parameters import state_type
from .codegen import RESET_CODES, source_hash
from .triton_source import generate_triton

_MODULES: dict = {}


def _triton_import_error() -> Optional[str]:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install
        return f"triton is not installed or cannot be imported ({exc.__class__.__name__}: {exc})"
    return None


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def triton_unavailable_reason(input_current: torch.Tensor, allow_cpu: bool = False) -> Optional[str]:
    """Why the Triton path cannot run for this input, or ``None``."""
    reason = _triton_import_error()
    if reason is not None:
        return reason
    if input_current.device.type != "cuda":
        if allow_cpu and interpreter_enabled():
            return None
        return (f"the triton path needs CUDA tensors (input on {input_current.device}); "
                f"torch.cuda.is_available() is {torch.cuda.is_available()}")
    return None


def load_module(model: ModelDefinition, method: str = "exponential_euler"):
    """Generate, write and import the Triton kernel module for ``model`` and ``method``
    (cached)."""
    key = model.name, id(model), method
    mod = _MODULES.get(key)
    if mod is not None:
        return mod
    from .cpp import cache_dir

    source = generate_triton(model, method)
    name = f"hh_triton_{model.name}_{source_hash(source)}"
    folder = cache_dir() / "triton"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    _MODULES[key] = mod
    return mod


def hh_sequence_triton(input_current: torch.Tensor, state, p, dt: float,
                       record_states=False, block: int = 128,
                       allow_cpu: bool = False, return_final: bool = False):
    """Forward over ``T = input_current.shape[0]`` steps with the generated Triton kernel.

    Returns ``(spikes, state)`` like :func:`.sequence.hh_sequence` (``record_states`` as
    there: a trajectory is stored only for the variables named; ``return_final``: also the
    final state, as ``(spikes, recorded or None, final)``). ``allow_cpu`` lets CPU
    tensors through when Triton's interpreter is enabled (tests).
    """
    reason = triton_unavailable_reason(input_current, allow_cpu=allow_cpu)
    if reason is not None:
        from .cpp import PathUnavailable
        raise PathUnavailable(f"path 'triton' is unavailable: {reason}")
    import triton.language as tl

    from .codegen import kernel_parameters
    from .sequence import _flat_parameters, _recorded, record_names

    model = type(p).model
    names = record_names(record_states, model)
    mod = load_module(model, p.method)
    dtype = input_current.dtype
    T = input_current.shape[0]
    step_shape = tuple(input_current.shape[1:])
    M = math.prod(step_shape)
    I = input_current.detach().reshape(T, M).contiguous()
    s0 = [torch.broadcast_to(getattr(state, n).detach().to(dtype), step_shape)
          .reshape(M).contiguous() for n in model.state_names]
    s1 = [torch.empty_like(s) for s in s0]
    rec = [torch.empty_like(I) if name in names else I for name in model.state_names]
    params = [q.detach() for q in _flat_parameters(p, input_current, step_shape)]
    Z = torch.empty_like(I)
    args = [I, Z, torch.full((1,), float(dt) * 1e3, dtype=dtype, device=I.device)]
    for a, b_, r in zip(s0, s1, rec):
        args += [a, b_, r]
    for q in params:
        args += [q, 0 if q.numel() == 1 else 1]
    args += [T, M]
    assert len(params) == len(kernel_parameters(model))
    reset = RESET_CODES[None if p.V_reset is None else p.spk_reset]
    grid = ((M + block - 1) // block,)
    mod.hh_forward_kernel[grid](
        *args, RESET=reset, **{f"RECORD_{name}": name in names for name in model.state_names},
        EPS=(EXPREL_TAYLOR_CUTOFF_FLOAT64 if dtype == torch.float64
             else EXPREL_TAYLOR_CUTOFF_FLOAT32),
        LIBDEVICE=I.device.type == "cuda" and not interpreter_enabled(),
        DT=tl.float64 if dtype == torch.float64 else tl.float32, BLOCK=block)
    cls = state_type(model)
    Zr = Z.reshape(input_current.shape)
    final = cls(*(s.reshape(step_shape) for s in s1))
    recorded = _recorded(cls, names, {name: r.reshape(input_current.shape)
                                      for name, r in zip(model.state_names, rec)}) \
        if names else None
    if return_final:
        return Zr, recorded, final
    return Zr, (recorded if names else final)
