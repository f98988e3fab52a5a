"""The training loop of :class:`~sers.classifiers.estimator.LayerAnchoringClassifier`, one objective per alignment.

Each step draws a batch of labelled source rows (and as many unlabelled target rows when the
method aligns) and minimises

    class-weighted cross-entropy(source)              last, wsum (aligned_by "none")
    + λ · Σ_b CORAL(source_b, target_b)               coral, lam, lam-gl ("coral"; b: aligned branches)
    + BCE of a domain classifier behind gradient
      reversal of strength λ · (2 / (1 + e^{-10 p}) - 1)  dann ("gradient-reversal"; p: progress 0 -> 1)
    + λ_vowel · vowel-level CORAL                     align="vowel" (lam, lam-gl)

with Adam; after each epoch the dev UAR (when given) picks the best epoch and stops early.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from sers.classifiers import data
from sers.classifiers.losses import coral_loss
from sers.classifiers.segments import VowelBatches, aligned_layers, vowel_coral


def no_alignment(model, source_embeddings, target_embeddings, aligned, lambda_, progress, coral_scale):
    """(alignment term, its weighted contribution): nothing to align."""
    align = torch.zeros((), device=source_embeddings[0].device)
    return align, align


def coral_alignment(model, source_embeddings, target_embeddings, aligned, lambda_, progress, coral_scale):
    """Σ over aligned branches of CORAL(source, target), weighted by λ."""
    align = sum(coral_loss(source_embeddings[b], target_embeddings[b], coral_scale) for b in aligned)
    return align, lambda_ * align


def adversarial_alignment(model, source_embeddings, target_embeddings, aligned, lambda_, progress, coral_scale):
    """The domain classifier's loss; λ enters as the gradient-reversal strength, ramped up (Ganin et al.)."""
    model.domain[0].alpha = lambda_ * (2 / (1 + math.exp(-10 * progress)) - 1)
    align = domain_loss(model, source_embeddings, target_embeddings)
    return align, align


# aligned_by (sers.classifiers.methods) -> its term
OBJECTIVES = {"none": no_alignment, "coral": coral_alignment, "gradient-reversal": adversarial_alignment}


def domain_loss(model, source_embeddings, target_embeddings) -> torch.Tensor:
    """Binary cross-entropy of the domain classifier (source = 0, target = 1) behind gradient reversal."""
    logits = torch.cat([model.domain_logits(source_embeddings), model.domain_logits(target_embeddings)])
    labels = torch.cat([torch.zeros(len(source_embeddings[0])), torch.ones(len(target_embeddings[0]))])
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.device))


def vowel_term(model, batches, branches, aligned, segments, coral_scale, rows=None) -> torch.Tensor:
    """The vowel-level term on ``segments`` ((source, target) sets of (features, vowels)): on the
    rows one :meth:`VowelBatches.take` drew, or on every segment (``rows=None``)."""
    (source, source_vowels), (target, target_vowels) = segments
    if rows is None:
        rows = (np.arange(len(source_vowels)), source_vowels, np.arange(len(target_vowels)), target_vowels)
    layers = aligned_layers(branches, aligned)
    return vowel_coral(model, branches, aligned, batches.tensor(source, rows[0], "source", layers), rows[1],
                       batches.tensor(target, rows[2], "target", layers), rows[3], coral_scale)


def class_weights(label_index: np.ndarray, n_classes: int, device) -> torch.Tensor:
    """Inverse-frequency class weights, normalised so a balanced corpus gets weight 1."""
    counts = np.bincount(label_index, minlength=n_classes)
    return torch.tensor(len(label_index) / (len(counts) * counts), dtype=torch.float32, device=device)


@dataclass
class Outcome:
    history: list[dict]           # one record per epoch: losses, dev_uar (with a dev set), seconds
    best_epoch: int
    best_dev_uar: float | None


def train_head(model, params, aligned_by: str, batches, branches, aligned, source, label_index, n_classes,
               target=None, segments=None, dev_uar=None) -> Outcome:
    """Fit ``model`` (a :class:`~sers.classifiers.heads.LayerHead`) in place; keep its best epoch's weights.

    ``params``: the estimator (its hyper-parameters are read: lr, epochs, batch_size, lambda_, ...).
    ``target``: unlabelled target rows, or None when nothing is aligned. ``dev_uar()``: the
    current model's dev UAR, or None without a dev set (then the last epoch is kept).
    """
    device = params.device
    weights = class_weights(label_index, n_classes, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    shuffle = torch.Generator().manual_seed(params.seed)
    n_rows = len(label_index)
    n_batches = max(1, n_rows // params.batch_size)  # equal batches of >= batch_size rows
    target_rows = data.Cycle(data.n_rows(target), shuffle) if target is not None else None
    objective = OBJECTIVES[aligned_by] if target is not None else no_alignment
    vowel_weight = params.lambda_ if params.vowel_lambda is None else params.vowel_lambda
    if segments is not None:  # own generator: the utterance batches stay those of align="utterance"
        vowel_batches = VowelBatches(segments[0][1], segments[1][1], params.batch_size,
                                     torch.Generator().manual_seed(params.seed))
    names = ("loss_ce", "loss_align") + (("loss_vowel",) if segments is not None else ()) + ("loss_total",)
    best_uar, best_state, since_best = -1.0, None, 0
    history = []
    for epoch in range(1, params.epochs + 1):
        started = time.perf_counter()
        model.train()
        sums = np.zeros(len(names))
        order = torch.randperm(n_rows, generator=shuffle).numpy()
        for step, rows in enumerate(np.array_split(order, n_batches)):
            source_embeddings = model.embed(*batches.inputs(source, rows, "source"))
            labels = torch.from_numpy(label_index[rows]).to(device)
            ce = F.cross_entropy(model.classify(source_embeddings), labels, weight=weights)
            target_embeddings = (model.embed(*batches.inputs(target, target_rows.take(len(rows)), "target"))
                                 if target_rows is not None else None)
            progress = ((epoch - 1) * n_batches + step) / (params.epochs * n_batches)
            align, weighted = objective(model, source_embeddings, target_embeddings, aligned, params.lambda_,
                                        progress, params.coral_scale)
            loss = ce + weighted
            terms = [ce, align]
            if segments is not None:
                vowel = vowel_term(model, batches, branches, aligned, segments, params.coral_scale,
                                   vowel_batches.take())
                loss = loss + vowel_weight * vowel
                terms.append(vowel)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sums += [t.item() for t in terms + [loss]]
        record = {"epoch": epoch, **dict(zip(names, sums / n_batches))}
        if dev_uar is not None:
            record["dev_uar"] = dev_uar()
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        if params.verbose:
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        if dev_uar is None:
            continue
        if record["dev_uar"] > best_uar:
            best_uar, since_best = record["dev_uar"], 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since_best += 1
            if params.patience and since_best >= params.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    if dev_uar is None:
        return Outcome(history, history[-1]["epoch"], None)
    return Outcome(history, max(history, key=lambda r: (r["dev_uar"], -r["epoch"]))["epoch"], best_uar)
