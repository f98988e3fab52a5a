"""Domain-alignment losses: CORAL, class-conditional CORAL and the gradient-reversal layer of DANN."""
from __future__ import annotations

import numpy as np
import torch
from sers.classifiers.options import CORAL_SCALES


def covariance(features: torch.Tensor) -> torch.Tensor:
    """Unbiased (d, d) covariance of a (n, d) batch (n >= 2)."""
    centred = features - features.mean(dim=0, keepdim=True)
    return centred.T @ centred / (features.shape[0] - 1)




def coral_loss(source: torch.Tensor, target: torch.Tensor, scale: str = "relative") -> torch.Tensor:
    """CORAL between batch covariances: how differently two batches co-vary.

    ``scale="4d2"`` is Deep CORAL as published (Sun & Saenko, 2016): ||C_s - C_t||_F^2 / (4 d^2).
    Its value depends on the width d and on the scale of the features: on projected speech
    features it is about 1e-3 of the cross-entropy, so a weight of 1 does nothing, and a network
    can lower it by shrinking its features instead of aligning them.
    ``scale="relative"`` (the default) divides by the covariances' own size instead:

        ||C_s - C_t||_F^2 / (||C_s||_F^2 + ||C_t||_F^2)

    0 for equal covariances, at most 2, the same for any width and any feature scale, so a
    weight of 1 sets the alignment on the scale of the cross-entropy.
    Only second-order statistics are compared, so the batches may differ in size
    and no pairing between source and target rows is implied.
    """
    if source.shape[1] != target.shape[1]:
        raise ValueError(f"CORAL needs the same feature width, got {source.shape[1]} and {target.shape[1]}")
    cov_s, cov_t = covariance(source), covariance(target)
    difference = ((cov_s - cov_t) ** 2).sum()
    if scale == "4d2":
        return difference / (4 * source.shape[1] ** 2)
    if scale != "relative":
        raise ValueError(f"CORAL scale must be one of {', '.join(CORAL_SCALES)}, not {scale!r}")
    # the epsilon keeps two constant batches (zero covariances) at 0 instead of 0/0
    return difference / ((cov_s ** 2).sum() + (cov_t ** 2).sum() + 1e-12)


def class_conditional_coral(source: torch.Tensor, source_classes, target: torch.Tensor,
                            target_classes, scale: str = "relative") -> torch.Tensor:
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
                                    target[torch.from_numpy(target_rows).to(target.device)], scale))
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
