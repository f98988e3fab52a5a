"""The training methods: one entry each, the one place that says what a method reads and aligns.

A method is a choice of *branches* (which layers the head reads, one projection per branch)
and of an *alignment* (what pulls the source and target branch embeddings together):

    name     branches                         aligned by          anchors
    last     [[L-1]]                          none                none
    wsum     [[0, 1, ..., L-1]] (learned)     none                none
    coral    [[L-1]]                          coral               none
    dann     [[L-1]]                          gradient-reversal   none
    lam      [[a1], [a2], ..., [L-1]]         coral (anchors)     layers
    lam-gl   [[g1...], [g2...], ..., [L-1]]   coral (groups)      groups
    anchors-only  lam's branches              none                layers
    groups-only   lam-gl's branches           none                groups

Every aligning method has an *ablation*: the method with the same branches and heads and no
alignment term (lam -> anchors-only, lam-gl -> groups-only, coral and dann -> last). `sers
train` trains it beside the method, so every results table shows what the alignment itself adds.

Every other part of sers (the estimator, the CLI choices, the report, the demo) reads this
table. Adding a method is one entry here, plus an objective in
:mod:`sers.classifiers.training` if its alignment is a new kind.

This module imports nothing heavy (no torch), so that the report and the CLI's ``--help``
can read it in milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass

BRANCHES = ("last", "all", "anchors", "groups")
ALIGNMENTS = ("none", "coral", "gradient-reversal")
ANCHOR_KINDS = ("none", "layers", "groups")


@dataclass(frozen=True)
class Method:
    """What one training method reads and aligns.

    branches : "last" (the last layer), "all" (every layer, learned softmax weights: SUPERB's
        weighted sum), "anchors" (one branch per anchor layer) or "groups" (one per group of layers).
        Anchor and group methods also read the last layer, as a branch that is never aligned,
        unless an anchor or a group holds it (it is then read, and aligned, once).
    aligned_by : "none", "coral" (λ · CORAL at every aligned branch) or "gradient-reversal"
        (a domain classifier behind gradient reversal of strength λ).
    anchors : "none", "layers" (``anchors=[3, 5, 7]``) or "groups" (``anchors=[[3, 4, 5]]``).
    vowel : ``align="vowel"`` applies (vowel-by-vowel CORAL at the anchors).
    demo : trained by `sers demo`.
    ablation : for an aligning method, the method with its branches and no alignment (the
        no-alignment ablation that tables compare it with); None for the others.
    """

    name: str
    description: str
    branches: str
    aligned_by: str
    anchors: str
    vowel: bool = False
    demo: bool = True
    ablation: str | None = None

    @property
    def reads_target(self) -> bool:
        """Reads unlabelled target rows: its loss has an alignment term (whose weight λ matters)."""
        return self.aligned_by != "none"

    @property
    def uses_anchors(self) -> bool:
        return self.anchors != "none"

    def branch_layers(self, anchors, available_layers) -> tuple[list[list[int]], list[int]]:
        """(branches as lists of layer numbers, indices of the branches the alignment loss sees).

        The highest available layer is "the last layer".
        """
        layers = sorted(int(layer) for layer in available_layers)
        last = layers[-1]
        if self.branches in ("last", "all"):
            branches = [[last]] if self.branches == "last" else [layers]
            return branches, ([0] if self.reads_target else [])
        if self.branches == "anchors":
            branches = [[int(a)] for a in anchors]
        else:
            branches = [[int(layer) for layer in group] for group in anchors]
        aligned = list(range(len(branches))) if self.reads_target else []
        # The last layer is always read; unaligned only when no anchor or group holds it already.
        # A second, unaligned copy of it beside a group that holds it took half of the classifier's
        # input and cost lam-gl up to 0.09 target UAR (docs/benchmarks/transfer.md, "per-language").
        if not any(last in branch for branch in branches):
            branches.append([last])
        return branches, aligned


METHODS: dict[str, Method] = {method.name: method for method in (
    Method("last", "last layer only, no alignment (the baseline)", "last", "none", "none"),
    Method("wsum", "learned weighted sum of every layer (SUPERB style), no alignment", "all", "none", "none"),
    Method("coral", "last layer, CORAL to the target (Deep CORAL)", "last", "coral", "none", ablation="last"),
    Method("dann", "last layer, domain classifier behind gradient reversal (DANN)", "last",
           "gradient-reversal", "none", demo=False, ablation="last"),
    Method("anchors-only", "lam's anchor layers and heads without the alignment term (lam's ablation)",
           "anchors", "none", "layers"),
    Method("lam", "CORAL at each anchor layer (layer anchoring)", "anchors", "coral", "layers", vowel=True,
           ablation="anchors-only"),
    Method("groups-only", "lam-gl's groups and heads without the alignment term (lam-gl's ablation)",
           "groups", "none", "groups"),
    Method("lam-gl", "CORAL at each group of layers (layer anchoring, groups)", "groups", "coral", "groups",
           vowel=True, ablation="groups-only"),
)}


def method_names() -> tuple[str, ...]:
    """Every method, baselines first (the order of tables and ``--help``)."""
    return tuple(METHODS)


def get_method(name: str) -> Method:
    """The registry entry of ``name``; a ``ValueError`` listing the names otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}") from None


def base_method(run_name: str) -> Method | None:
    """The method of a run name ("lam+vowel" -> lam), or None for a name that is none of ours
    (runs written by other tools, which the report still lists)."""
    return METHODS.get(str(run_name).split("+")[0])


def names_where(**wanted) -> tuple[str, ...]:
    """The methods whose attributes equal ``wanted``: ``names_where(vowel=True)`` -> lam, lam-gl."""
    return tuple(name for name, method in METHODS.items()
                 if all(getattr(method, key) == value for key, value in wanted.items()))


VOWEL_METHODS = names_where(vowel=True)  # those `--align vowel` / `<method>+vowel` apply to


def with_ablations(methods) -> list[str]:
    """``methods`` with the ablation of each aligning one placed just before it, where missing:
    ["last", "lam"] -> ["last", "anchors-only", "lam"]. Run names like "lam+vowel" count as their method."""
    out = []
    for name in methods:
        ablation = (base_method(name) or Method(name, "", "last", "none", "none")).ablation
        if ablation and ablation not in out and ablation not in methods:
            out.append(ablation)
        out.append(name)
    return out


def help_text() -> str:
    """One line per method, for ``--help``."""
    return "; ".join(f"{name}: {method.description}" for name, method in METHODS.items())
