"""One head family for every method: per-branch projections, a shared MLP, optional domain classifier.

A *branch* is one layer or a group of layers. Its layers are combined (mean, a
learned softmax-weighted sum, or concatenated), projected to ``hidden`` and passed through a ReLU;
the classifier reads the mean of the branch embeddings, each weighted by its number of layers, so
that every layer counts once whether it sits in a group or alone. With frame features each branch
first pools its (combined) frames by attention (:mod:`sers.classifiers.frames`), so the
projections and every loss see one vector per utterance as with pooled features. The methods differ only in
their branches and in which branch embeddings the alignment loss sees: see the table in
:mod:`sers.classifiers.methods`.
"""
from __future__ import annotations

import torch
from torch import nn

from sers.classifiers.frames import AttentivePooling
from sers.classifiers.losses import GradientReversal


class LayerHead(nn.Module):
    """Input (batch, slots, D) where slot i holds layer ``layers[i]``; output logits and branch embeddings.

    With ``attentive=True`` the input is (batch, slots, T, D) frames with a (batch, T) mask of real frames.
    """

    def __init__(self, layers: list[int], branches: list[list[int]], input_dim: int, num_classes: int,
                 hidden: int = 256, dropout: float = 0.2, learned_weights: bool = False,
                 domain_classifier: bool = False, attentive: bool = False, concatenate: bool = False):
        super().__init__()
        slot_of = {layer: i for i, layer in enumerate(layers)}
        self.branch_slots = [[slot_of[layer] for layer in branch] for branch in branches]
        # One weight vector per multi-layer branch; zeros -> uniform softmax, i.e. start as the mean.
        self.layer_logits = nn.ParameterList(
            [nn.Parameter(torch.zeros(len(slots)), requires_grad=learned_weights) for slots in self.branch_slots])
        # concatenate: a group's layers side by side into its projection, i.e. one projection per
        # layer, summed before the ReLU (a mean of the layers ties those projections together).
        self.concatenate = concatenate
        widths = [input_dim * (len(slots) if concatenate else 1) for slots in self.branch_slots]
        self.projections = nn.ModuleList([nn.Linear(width, hidden) for width in widths])
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(),
                                        nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        self.domain = (nn.Sequential(GradientReversal(0.0), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 1)) if domain_classifier else None)
        # Created last, and only for frames: pooled models keep their parameters and initial values.
        self.attention = nn.ModuleList([AttentivePooling(width) for width in widths]) if attentive else None

    def layer_weights(self, branch: int) -> torch.Tensor:
        """Softmax weights of a branch's layers (they sum to one)."""
        return torch.softmax(self.layer_logits[branch], dim=0)

    def embed(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """One (batch, hidden) embedding per branch."""
        return [self.embed_branch(b, x, slots, mask) for b, slots in enumerate(self.branch_slots)]

    def combine(self, branch: int, x: torch.Tensor, slots: list[int]) -> torch.Tensor:
        """The branch's layers of ``x[:, slots]`` combined: one layer as it is, several by their weights
        (frame by frame for frame inputs)."""
        if len(slots) == 1:
            return x[:, slots[0]]
        if self.concatenate:  # (batch, [T,] slots x D)
            picked = x[:, slots]
            return picked.movedim(1, -2).flatten(-2) if x.dim() == 4 else picked.flatten(1)
        if x.dim() == 4:
            return torch.einsum("bstd,s->btd", x[:, slots], self.layer_weights(branch))
        return torch.einsum("bsd,s->bd", x[:, slots], self.layer_weights(branch))

    def embed_branch(self, branch: int, x: torch.Tensor, slots: list[int],
                     mask: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, hidden) embedding of one branch, its layers read from ``x[:, slots]``.

        ``slots`` lets inputs that hold only some layers (segment features of the anchor
        layers) pass through the same projection as full utterance inputs.
        """
        combined = self.combine(branch, x, slots)
        if mask is not None:
            combined = self.attention[branch](combined, mask)
        return torch.relu(self.projections[branch](combined))

    def mix(self, embeddings: list[torch.Tensor]) -> torch.Tensor:
        """(batch, hidden) what the classifier reads: the branch embeddings averaged, each weighted by its
        number of layers. (An unweighted mean gave lam-gl's one group of three anchors as much weight
        as the last layer alone: source dev UAR 0.754 against 0.777 weighted, docs/benchmarks/transfer.md.)"""
        if len(embeddings) == 1:
            return embeddings[0]
        sizes = torch.tensor([float(len(slots)) for slots in self.branch_slots], device=embeddings[0].device)
        return torch.einsum("bnh,b->nh", torch.stack(embeddings), sizes / sizes.sum())

    def classify(self, embeddings: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.mix(embeddings))

    def domain_logits(self, embeddings: list[torch.Tensor]) -> torch.Tensor:
        return self.domain(self.mix(embeddings)).squeeze(1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.classify(self.embed(x, mask))
