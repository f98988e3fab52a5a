"""Synthetic layer features with a known answer, for tests and benchmarks.

Every layer of both languages encodes the emotion class as a displacement of size
``separation`` along class directions, plus unit Gaussian noise. On the *anchor*
layers the target language uses the same class directions as the source (shared
emotion structure); on every other layer it uses its own random directions and
an offset (language-specific encoding). A classifier trained on source labels
therefore transfers through the anchor layers and nowhere else.

With ``anchor_shift > 0`` the target's anchor layers also carry class-independent
variance of standard deviation ``anchor_shift`` along a few directions that hold
nothing but unit noise in the source (a covariance shift, e.g. channel or speaker
variability specific to the target corpus). A source-only classifier never learns
to ignore these directions, so the target noise leaks into its decisions; CORAL
sees the covariance mismatch and drives the projection's weights on them to zero.
"""
from __future__ import annotations

import numpy as np

CLASSES = ("A", "H", "N", "S")


def _directions(rng, dim: int, count: int) -> np.ndarray:
    """(count, dim) orthonormal rows."""
    q, _ = np.linalg.qr(rng.standard_normal((dim, count)))
    return q.T


def planted_corpora(n_source=400, n_target=400, num_layers=6, dim=32, anchors=(2, 3), separation=2.5,
                    language_offset=1.0, anchor_shift=0.0, class_shares=(0.2, 0.3, 0.35, 0.15), seed=0):
    """Source and target features as (n, num_layers, dim) float32 arrays, with labels.

    Returns ``{"X_source", "y_source", "X_target", "y_target"}``; ``y_target`` is for
    scoring only. ``class_shares`` makes the classes imbalanced, as in emotion corpora.
    """
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    anchors = set(int(a) for a in anchors)
    source_dirs, target_dirs, offsets, nuisance_dirs = [], [], [], []
    for layer in range(num_layers):
        basis = _directions(rng, dim, 2 * k)
        source_dirs.append(basis[:k])
        nuisance_dirs.append(basis[k:])
        target_dirs.append(basis[:k] if layer in anchors else _directions(rng, dim, k))
        offsets.append(np.zeros(dim) if layer in anchors else language_offset * rng.standard_normal(dim))

    def side(n, directions, is_target):
        labels = rng.choice(k, size=n, p=np.asarray(class_shares) / np.sum(class_shares))
        x = rng.standard_normal((n, num_layers, dim))
        for layer in range(num_layers):
            x[:, layer] += separation * directions[layer][labels]
            if is_target:
                x[:, layer] += offsets[layer]
            if anchor_shift and layer in anchors:
                if is_target:
                    x[:, layer] += anchor_shift * rng.standard_normal((n, k)) @ nuisance_dirs[layer]
                else:
                    x[:, layer] += separation * nuisance_dirs[layer][labels]
        return x.astype(np.float32), np.asarray(CLASSES)[labels]

    X_source, y_source = side(n_source, source_dirs, False)
    X_target, y_target = side(n_target, target_dirs, True)
    return {"X_source": X_source, "y_source": y_source, "X_target": X_target, "y_target": y_target}
