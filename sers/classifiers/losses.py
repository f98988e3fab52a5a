"""Domain-alignment losses: CORAL and the gradient-reversal layer of DANN."""
from __future__ import annotations

import torch


def covariance(features: torch.Tensor) -> torch.Tensor:
    """Unbiased (d, d) covariance of a (n, d) batch (n >= 2)."""
    centred = features - features.mean(dim=0, keepdim=True)
    return centred.T @ centred / (features.shape[0] - 1)


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL (Sun & Saenko, 2016): ||C_s - C_t||_F^2 / (4 d^2) on batch covariances.

    Only second-order statistics are compared, so the batches may differ in size
    and no pairing between source and target rows is implied.
    """
    if source.shape[1] != target.shape[1]:
        raise ValueError(f"CORAL needs the same feature width, got {source.shape[1]} and {target.shape[1]}")
    d = source.shape[1]
    difference = covariance(source) - covariance(target)
    return (difference * difference).sum() / (4 * d * d)


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return -ctx.alpha * grad_output, None


def reverse_gradient(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Identity forward, gradient multiplied by ``-alpha`` backward (Ganin & Lempitsky, 2015)."""
    return _ReverseGradient.apply(x, float(alpha))


class GradientReversal(torch.nn.Module):
    """Module form of :func:`reverse_gradient`; set ``alpha`` during training for a schedule."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return reverse_gradient(x, self.alpha)
