"""One head family for every method: per-branch projections, a shared MLP, optional domain classifier.

A *branch* is one layer or a group of layers, and ``combine`` says how a group's layers become
one embedding: "mean" or "learned" (softmax-weighted sum) of the layers, then one projection to
``hidden`` and a ReLU; "concat" (the layers side by side into one projection); or "per-layer"
(one projection and ReLU per layer, as ``lam`` has, and their embeddings averaged: the group is
still one embedding, aligned by one CORAL term). The classifier reads the mean of the branch
embeddings, each weighted by its number of layers, so that every layer counts once whether it
sits in a group or alone. With frame features each projection first pools its frames by
attention (:mod:`sers.classifiers.frames`), so the projections and every loss see one vector per
utterance as with pooled features. The methods differ only in their branches and in which
branch embeddings the alignment loss sees: see the table in :mod:`sers.classifiers.methods`.
"""
from __future__ import annotations

import torch
from torch import nn

from sers.classifiers.frames import AttentivePooling
from sers.classifiers.losses import GradientReversal
from sers.classifiers.options import GROUP_WEIGHTS


class LayerHead(nn.Module):
    """Input (batch, slots, D) where slot i holds layer ``layers[i]``; output logits and branch embeddings.

    With ``attentive=True`` the input is (batch, slots, T, D) frames with a (batch, T) mask of real frames.
    """

    def __init__(self, layers: list[int], branches: list[list[int]], input_dim: int, num_classes: int,
                 hidden: int = 256, dropout: float = 0.2, combine: str = "mean",
                 domain_classifier: bool = False, attentive: bool = False):
        super().__init__()
        if combine not in GROUP_WEIGHTS:
            raise ValueError(f"combine={combine!r}; choose from {', '.join(GROUP_WEIGHTS)}")
        slot_of = {layer: i for i, layer in enumerate(layers)}
        self.branch_slots = [[slot_of[layer] for layer in branch] for branch in branches]
        self.combine_by = combine
        # One weight vector per multi-layer branch; zeros -> uniform softmax, i.e. start as the mean.
        self.layer_logits = nn.ParameterList(
            [nn.Parameter(torch.zeros(len(slots)), requires_grad=(combine == "learned"))
             for slots in self.branch_slots])
        # concat: one projection per layer, summed before the ReLU; per-layer: one projection and
        # ReLU per layer (a nn.ModuleList per group). A mean of the layers ties the projections together.
        widths = [input_dim * (len(slots) if combine == "concat" else 1) for slots in self.branch_slots]
        self.projections = nn.ModuleList([self._per_part(slots, lambda: nn.Linear(width, hidden))
                                          for slots, width in zip(self.branch_slots, widths)])
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(),
                                        nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        self.domain = (nn.Sequential(GradientReversal(0.0), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 1)) if domain_classifier else None)
        # Created last, and only for frames: pooled models keep their parameters and initial values.
        self.attention = (nn.ModuleList([self._per_part(slots, lambda: AttentivePooling(width))
                                         for slots, width in zip(self.branch_slots, widths)])
                          if attentive else None)

    def _per_part(self, slots: list[int], make) -> nn.Module:
        """``make()`` once for the branch, or once per layer of a "per-layer" group."""
        if self.combine_by == "per-layer" and len(slots) > 1:
            return nn.ModuleList([make() for _ in slots])
        return make()

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
        if self.combine_by == "concat":  # (batch, [T,] slots x D)
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
        projection = self.projections[branch]
        attention = self.attention[branch] if mask is not None else None
        if isinstance(projection, nn.ModuleList):  # a per-layer group: one embedding per layer, averaged
            attentions = attention if attention is not None else [None] * len(slots)
            return torch.stack([self._project(x[:, slot], layer_projection, layer_attention, mask)
                                for slot, layer_projection, layer_attention
                                in zip(slots, projection, attentions)]).mean(0)
        return self._project(self.combine(branch, x, slots), projection, attention, mask)

    def attention_weights(self, branch: int, x: torch.Tensor, slots: list[int], mask: torch.Tensor) -> torch.Tensor:
        """(batch, T) attention weights of one branch's frames (a per-layer group: their mean over its layers)."""
        attention = self.attention[branch]
        if isinstance(attention, nn.ModuleList):
            return torch.stack([layer_attention.weights(x[:, slot], mask)
                                for slot, layer_attention in zip(slots, attention)]).mean(0)
        return attention.weights(self.combine(branch, x, slots), mask)

    @staticmethod
    def _project(x: torch.Tensor, projection: nn.Module, attention: nn.Module | None,
                 mask: torch.Tensor | None) -> torch.Tensor:
        """ReLU(projection(x)), frames pooled by ``attention`` first."""
        if attention is not None:
            x = attention(x, mask)
        return torch.relu(projection(x))

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
