r"""The reference model's spike function: a Heaviside step with a ReLU surrogate gradient.

Forward :math:`H(x) = 1` iff :math:`x \ge 0` (so :math:`H(0) = 1`); backward

.. math::
    \frac{\partial H}{\partial x} \approx \alpha \max(0, w - |x|),

with :math:`\alpha = 0.3`, :math:`w = 1` by default (BrainPy's ``ReluGrad``).
The HH spike output is the rising edge over one step,

.. math::
    z = H(x') \, (1 - H(x)), \qquad x = \frac{V - V_{th}}{|V_{th}|},

exactly one spike per upward crossing of :math:`V_{th}`, with gradients through both
factors. (The reference divides by :math:`V_{th}`; :math:`|V_{th}|` is the same for
its positive thresholds and keeps a negative threshold meaning "V above V_th".)
"""

import torch


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


def rising_edge(V_new: torch.Tensor, V_old: torch.Tensor, V_th: torch.Tensor,
                alpha: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    r"""Spike output :math:`H(x')(1 - H(x))` of one step from :math:`V` to :math:`V'` (mV)."""
    scale = V_th.abs()
    return (heaviside_relu((V_new - V_th) / scale, alpha, width)
            * (1.0 - heaviside_relu((V_old - V_th) / scale, alpha, width)))
