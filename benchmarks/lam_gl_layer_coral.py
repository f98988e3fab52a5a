"""One-off experiment (issue 12): does aligning a concat group layer by layer close lam-gl's gap to lam?

    python benchmarks/lam_gl_layer_coral.py group  --methods lam,lam-gl --no-write   # sers as it is
    python benchmarks/lam_gl_layer_coral.py layers --methods lam-gl --no-write
    python benchmarks/lam_gl_layer_coral.py both   --methods lam-gl --no-write

A ``concat`` group's projection is ReLU(Σ_l W_l x_l + b). ``layers`` replaces the group's one
CORAL term by one per layer, on that layer's share W_l x_l (as lam aligns each anchor's
projection); ``both`` adds them to the group's term. Everything after the variant is passed to
benchmarks/transfer.py. The variants are patched in here, not options of sers: they did not
help (docs/benchmarks/transfer.md, "lam-gl aligned layer by layer").
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sers.classifiers import heads, training  # noqa: E402
from sers.classifiers.losses import coral_loss  # noqa: E402

VARIANTS = ("group", "layers", "both")


def layer_shares(head, x, mask):
    """Per branch: for a concat group of pooled inputs, the (batch, hidden) share W_l x_l of each layer; else None."""
    shares = []
    for branch, slots in enumerate(head.branch_slots):
        if len(slots) > 1 and head.combine_by == "concat" and mask is None:
            weight = head.projections[branch].weight
            shares.append(torch.einsum("bnd,hnd->nbh", x[:, slots], weight.view(weight.shape[0], len(slots), -1)))
        else:
            shares.append(None)
    return shares


def patch(variant: str) -> None:
    embed, build = heads.LayerHead.embed, heads.LayerHead.__init__

    def init(self, *args, **kwargs):
        build(self, *args, **kwargs)
        self.recent_shares = []  # the shares of the last embed() calls: source, then target

    def embed_and_keep_shares(self, x, mask=None):
        self.recent_shares = (self.recent_shares + [layer_shares(self, x, mask)])[-2:]
        return embed(self, x, mask)

    def coral_by_layer(model, source_embeddings, target_embeddings, aligned, lambda_, progress, coral_scale):
        source_shares, target_shares = model.recent_shares
        align = 0
        for b in aligned:
            group = coral_loss(source_embeddings[b], target_embeddings[b], coral_scale)
            if source_shares[b] is None:
                align = align + group
                continue
            by_layer = sum(coral_loss(s, t, coral_scale) for s, t in zip(source_shares[b], target_shares[b]))
            align = align + by_layer + (group if variant == "both" else 0)
        return align, lambda_ * align

    heads.LayerHead.__init__ = init
    heads.LayerHead.embed = embed_and_keep_shares
    training.OBJECTIVES["coral"] = coral_by_layer


if __name__ == "__main__":
    variant = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    if variant not in VARIANTS:
        sys.exit(f"usage: lam_gl_layer_coral.py {{{','.join(VARIANTS)}}} [benchmarks/transfer.py options]")
    if variant != "group":
        patch(variant)
    import transfer
    transfer.main(sys.argv[1:])
