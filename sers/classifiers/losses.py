"""Domain-alignment losses: CORAL, class-conditional CORAL and the gradient-reversal layer of DANN."""
from __future__ import annotations

import numpy as np
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


def class_conditional_coral(source: torch.Tensor, source_classes, target: torch.Tensor,
                            target_classes) -> torch.Tensor:
    """Mean over shared classes ``c`` of CORAL(source rows of ``c``, target rows of ``c``).

    The classes are known on both sides without emotion labels (e.g. vowel classes from forced
    alignments). A class is compared only when each side has at least two rows of it (a
    covariance needs two); with no such class the loss is zero.
    """
    source_classes, target_classes = np.asarray(source_classes), np.asarray(target_classes)
    terms = []
    for name in np.intersect1d(source_classes, target_classes):
        source_rows, target_rows = np.flatnonzero(source_classes == name), np.flatnonzero(target_classes == name)
        if len(source_rows) >= 2 and len(target_rows) >= 2:
            terms.append(coral_loss(source[torch.from_numpy(source_rows).to(source.device)],
                                    target[torch.from_numpy(target_rows).to(target.device)]))
    return torch.stack(terms).mean() if terms else source.new_zeros(())


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
