r"""The reference model's spike function: a Heaviside step with a ReLU surrogate gradient.

Forward :math:`H(x) = 1` iff :math:`x \ge 0` (so :math:`H(0) = 1`); backward

.. math::
    \frac{\partial H}{\partial x} \approx \alpha \max(0, w - |x|),

with :math:`\alpha = 0.3`, :math:`w = 1` by default (BrainPy's ``ReluGrad``).
The HH spike output is the rising edge over one step,

.. math::
    z = H(x') \, (1 - H(x)), \qquad x = \frac{V - V_{th}}{V_{scale}},

exactly one spike per upward crossing of :math:`V_{th}`, with gradients through both
factors. The scale :math:`V_{scale}` (mV, :func:`surrogate_scale`) is ``HHSpec(V_scale=...)``
or by default :math:`|V_{th}|`: the reference divides by :math:`V_{th}`; :math:`|V_{th}|`
is the same for its positive thresholds and keeps a negative threshold meaning "V above
V_th". Where :math:`V_{th} = 0` the default is
:data:`~hh_plugin.model.spec.ZERO_THRESHOLD_SCALE` (1 mV). The scale changes no spike
(:math:`H(x) = H(V - V_{th})` for any positive scale), only the gradients: with the
default scale they flow into :math:`V_{th}` through both the shift and :math:`|V_{th}|`,
as in the reference.
"""

import torch

from ...model.spec import ZERO_THRESHOLD_SCALE


class ReLUSurrogate(torch.autograd.Function):
    """Heaviside forward, :math:`\\alpha \\max(0, w - |x|)` backward."""

    @staticmethod
    def forward(x, alpha, width):
        return (x >= 0).to(x.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, alpha, width = inputs
        ctx.save_for_backward(x, alpha, width)

    @staticmethod
    def backward(ctx, grad_output):
        x, alpha, width = ctx.saved_tensors
        return grad_output * alpha * torch.clamp(width - x.abs(), min=0.0), None, None


def heaviside_relu(x: torch.Tensor, alpha: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """:math:`H(x)` with the ReLU surrogate gradient (``alpha``, ``width`` as tensors)."""
    return ReLUSurrogate.apply(x, alpha, width)


def surrogate_scale(V_th: torch.Tensor, V_scale=None) -> torch.Tensor:
    r"""The surrogate's scale :math:`V_{scale}` (mV): ``V_scale`` when given, else
    :math:`|V_{th}|` where :math:`V_{th} \ne 0` and
    :data:`~hh_plugin.model.spec.ZERO_THRESHOLD_SCALE` (1 mV) where :math:`V_{th} = 0`
    (differentiable in :math:`V_{th}`: :math:`\partial V_{scale}/\partial V_{th} =
    \operatorname{sign} V_{th}`, 0 at 0)."""
    if V_scale is not None:
        return V_scale
    magnitude = V_th.abs()
    return torch.where(magnitude > 0, magnitude,
                       torch.full_like(magnitude, ZERO_THRESHOLD_SCALE))


def rising_edge(V_new: torch.Tensor, V_old: torch.Tensor, V_th: torch.Tensor,
                alpha: torch.Tensor, width: torch.Tensor, scale=None) -> torch.Tensor:
    r"""Spike output :math:`H(x')(1 - H(x))` of one step from :math:`V` to :math:`V'` (mV),
    :math:`x = (V - V_{th})/V_{scale}`; ``scale`` (mV) as :func:`surrogate_scale` reads
    ``V_scale`` (``None``: :math:`|V_{th}|`, 1 mV at :math:`V_{th} = 0`)."""
    scale = surrogate_scale(V_th, scale)
    return (heaviside_relu((V_new - V_th) / scale, alpha, width)
            * (1.0 - heaviside_relu((V_old - V_th) / scale, alpha, width)))
