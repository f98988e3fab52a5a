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

:func:`planted_vowel_corpora` adds vowel segments and a layer whose shift shows only
within vowel classes (the case for vowel-level alignment).
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


VOWELS = ("a", "e", "i", "o", "u")


def planted_vowel_corpora(n_source=400, n_target=400, num_layers=4, dim=16, anchors=(2,), confounded=(3,),
                          separation=2.5, confounded_separation=4.0, vowel_separation=2.0, segments_per_utterance=4, language_offset=1.0,
                          class_shares=(0.2, 0.3, 0.35, 0.15), seed=0):
    """Utterance and vowel segment features, with a false anchor that only the vowels expose.

    As in :func:`planted_corpora`, the ``anchors`` share the emotion structure across the
    languages and the layers outside ``anchors`` and ``confounded`` do not. The ``confounded``
    layers use the same directions in both languages, with a larger displacement
    (``confounded_separation``), so a source classifier leans on them; but what moves a target
    utterance along them is its vowel colour (which vowels it holds), not its emotion. Colours
    are drawn independently of the emotion with the emotion's class shares, so the utterance
    features of a confounded layer have the same distribution in both languages: no
    utterance-level measure or loss can tell it from a true anchor, yet it misleads the target.

    Each utterance has ``segments_per_utterance`` vowel segments: the utterance's noiseless
    features, a vowel-class displacement of size ``vowel_separation``, and unit noise. A target
    utterance of colour ``c`` holds only vowels of colour ``c`` (the j-th vowel has colour
    ``j mod 4``), so within one vowel class the target does not vary along the confounded
    directions while the source varies with the emotion: the per-vowel covariances differ,
    and vowel-level CORAL sees what utterance-level CORAL cannot.

    Returns ``{"X_source", "y_source", "X_target", "y_target"}`` ((n, num_layers, dim) arrays and
    labels; ``y_target`` for scoring only) and, per side, ``segments_*`` (S, num_layers, dim),
    ``vowels_*`` (S,) and ``utterance_*`` (S,) (row of the segment's utterance).
    """
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    shared = set(int(a) for a in anchors) | set(int(c) for c in confounded)
    shares = np.asarray(class_shares) / np.sum(class_shares)
    colour_of_vowel = np.arange(len(VOWELS)) % k
    source_dirs, target_dirs, vowel_dirs, offsets = [], [], [], []
    for layer in range(num_layers):
        basis = _directions(rng, dim, k + len(VOWELS))
        source_dirs.append(basis[:k])
        vowel_dirs.append(basis[k:])
        target_dirs.append(basis[:k] if layer in shared else _directions(rng, dim, k))
        offsets.append(np.zeros(dim) if layer in shared else language_offset * rng.standard_normal(dim))

    def side(n, is_target):
        labels = rng.choice(k, size=n, p=shares)
        colours = rng.choice(k, size=n, p=shares) if is_target else labels
        content = np.zeros((n, num_layers, dim))
        for layer in range(num_layers):
            moved_by, size = (colours, confounded_separation) if layer in confounded else (labels, separation)
            content[:, layer] = size * (target_dirs if is_target else source_dirs)[layer][moved_by]
            if is_target:
                content[:, layer] += offsets[layer]
        utterance = np.repeat(np.arange(n), segments_per_utterance)
        if is_target:  # a vowel of the utterance's colour
            choices = [np.flatnonzero(colour_of_vowel == c) for c in colours[utterance]]
            vowels = np.array([rng.choice(options) for options in choices])
        else:
            vowels = rng.integers(0, len(VOWELS), size=len(utterance))
        segments = content[utterance] + rng.standard_normal((len(utterance), num_layers, dim))
        for layer in range(num_layers):
            segments[:, layer] += vowel_separation * vowel_dirs[layer][vowels]
        x = content + rng.standard_normal((n, num_layers, dim))
        return (x.astype(np.float32), np.asarray(CLASSES)[labels], segments.astype(np.float32),
                np.asarray(VOWELS)[vowels], utterance)

    out = {}
    for name, n in (("source", n_source), ("target", n_target)):
        (out[f"X_{name}"], out[f"y_{name}"], out[f"segments_{name}"], out[f"vowels_{name}"],
         out[f"utterance_{name}"]) = side(n, name == "target")
    return out


def planted_frames(n=400, num_layers=2, dim=16, frames=(20, 40), burst_frames=3, separation=4.0, marker=3.0,
                   speaker_std=1.5, class_shares=(0.2, 0.3, 0.35, 0.15), seed=0):
    """Frame features whose emotion cue is a short burst, which mean pooling washes out.

    Each utterance has 20-40 frames of unit noise on top of a speaker offset (standard deviation
    ``speaker_std``, the same for all its frames). In ``burst_frames`` consecutive frames, at a
    random place, every layer carries the class displacement of size ``separation`` and a
    class-independent ``marker`` direction (a loud moment). The mean over the frames keeps only
    ``burst_frames / T`` of the class displacement but all of the speaker offset; attention that
    finds the marker reads the burst frames at full strength.

    Returns ``{"frames": {layer: [(T_i, dim) float16 per utterance]}, "y": labels, "burst":
    [(T_i,) bool per utterance]}``.
    """
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    bases = [_directions(rng, dim, k + 1) for _ in range(num_layers)]  # class directions, then the marker
    labels = rng.choice(k, size=n, p=np.asarray(class_shares) / np.sum(class_shares))
    lengths = rng.integers(frames[0], frames[1] + 1, size=n)
    out = {layer: [] for layer in range(num_layers)}
    bursts = []
    for label, length in zip(labels, lengths):
        start = rng.integers(0, length - burst_frames + 1)
        burst = np.zeros(length, bool)
        burst[start:start + burst_frames] = True
        bursts.append(burst)
        for layer, basis in enumerate(bases):
            x = rng.standard_normal((length, dim)) + speaker_std * rng.standard_normal(dim)
            x[burst] += separation * basis[label] + marker * basis[k]
            out[layer].append(x.astype(np.float16))
    return {"frames": out, "y": np.asarray(CLASSES)[labels], "burst": bursts}
