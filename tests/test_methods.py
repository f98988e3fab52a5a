"""The method registry (sers.classifiers.methods): every entry consistent, every user reading it."""
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import sers.classifiers
from sers.classifiers import LayerAnchoringClassifier
from sers.classifiers.methods import (ALIGNMENTS, ANCHOR_KINDS, BRANCHES, METHODS, Method, base_method,
                                      get_method, method_names, names_where, with_ablations)
from sers.classifiers.training import OBJECTIVES
from sers.synth.planted import planted_corpora

# branches -> the anchor kind it needs
ANCHORS_OF_BRANCHES = {"last": "none", "all": "none", "anchors": "layers", "groups": "groups"}


@pytest.mark.parametrize("name", method_names())
def test_every_entry_is_consistent(name):
    method = METHODS[name]
    assert method.name == name and method.description
    assert method.branches in BRANCHES and method.aligned_by in ALIGNMENTS and method.anchors in ANCHOR_KINDS
    assert method.anchors == ANCHORS_OF_BRANCHES[method.branches]
    assert method.aligned_by in OBJECTIVES  # every kind of alignment has its objective
    assert not method.vowel or method.uses_anchors  # vowel-level alignment acts at anchor layers
    assert method.reads_target == (method.aligned_by != "none")
    # an aligning method names its ablation: the same branches, nothing aligned
    assert (method.ablation is not None) == method.reads_target
    if method.ablation:
        ablation = METHODS[method.ablation]
        assert not ablation.reads_target and ablation.anchors == method.anchors
        assert ablation.branch_layers([[1, 2]] if method.anchors == "groups" else [1, 2], range(6))[0] == \
            method.branch_layers([[1, 2]] if method.anchors == "groups" else [1, 2], range(6))[0]


@pytest.mark.parametrize("name, anchors, branches, aligned", [
    ("last", None, [[5]], []), ("wsum", None, [[0, 1, 2, 3, 4, 5]], []), ("coral", None, [[5]], [0]),
    ("dann", None, [[5]], [0]), ("lam", [1, 3], [[1], [3], [5]], [0, 1]), ("lam", [2, 5], [[2], [5]], [0, 1]),
    ("lam-gl", [[1, 2], [3, 4]], [[1, 2], [3, 4], [5]], [0, 1]),
    # a group (or an anchor) holding the last layer: read once, aligned, no unaligned copy
    ("lam-gl", [[3, 4, 5]], [[3, 4, 5]], [0]),
    ("lam-gl", [[1], [4, 5]], [[1], [4, 5]], [0, 1]),
    # the ablations read what their methods read, and align nothing
    ("anchors-only", [1, 3], [[1], [3], [5]], []), ("groups-only", [[1, 2], [3, 4]], [[1, 2], [3, 4], [5]], [])])
def test_branches_are_the_table_of_the_docstring(name, anchors, branches, aligned):
    assert METHODS[name].branch_layers(anchors, range(6)) == (branches, aligned)


def test_lookups():
    assert method_names() == ("last", "wsum", "coral", "dann", "anchors-only", "lam", "groups-only", "lam-gl")
    assert names_where(vowel=True) == ("lam", "lam-gl")
    assert base_method("lam-gl+vowel") is METHODS["lam-gl"] and base_method("transformer") is None
    with pytest.raises(ValueError, match="unknown method 'x'; choose from last, wsum"):
        get_method("x")
    with pytest.raises(AttributeError):
        METHODS["lam"].vowel = False  # frozen: entries are read, never changed in place


def test_every_list_of_methods_is_the_registry():
    from sers.cli import main
    from sers.pipeline import demo, vowel_alignment
    from sers.report.inputs import METHOD_ORDER, aligns, uses_anchors

    assert list(sers.classifiers.METHODS) == list(method_names())
    assert METHOD_ORDER == method_names()
    assert vowel_alignment.VOWEL_METHODS == names_where(vowel=True)
    assert demo.METHODS == names_where(demo=True)
    assert [m for m in method_names() if aligns(m)] == ["coral", "dann", "lam", "lam-gl"]
    assert [m for m in method_names() if uses_anchors(m)] == ["anchors-only", "lam", "groups-only", "lam-gl"]
    assert uses_anchors("lam+vowel")
    help_text = CliRunner().invoke(main, ["train", "--help"]).output
    assert all(name in help_text for name in method_names())


def test_the_registry_and_run_schema_load_without_torch():
    code = ("import sys, sers.classifiers.methods, sers.runs, sers.report.inputs\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_new_method_is_one_entry(monkeypatch):
    """CORAL at a learned weighted sum of every layer: no code beyond its entry."""
    monkeypatch.setitem(METHODS, "wsum-coral", Method("wsum-coral", "weighted sum, CORAL", "all", "coral", "none"))
    d = planted_corpora(n_source=120, n_target=80, seed=1)
    model = LayerAnchoringClassifier(method="wsum-coral", hidden=8, epochs=2, batch_size=32)
    model.fit(d["X_source"], d["y_source"], d["X_target"])
    assert model.branches_ == [list(range(d["X_source"].shape[1]))] and model.history_[0]["loss_align"] > 0
    assert np.isfinite(model.predict_proba(d["X_target"])).all()
    assert model.module_.layer_logits[0].requires_grad  # "all" branches learn their layer weights


def test_the_classifier_weighs_every_layer_once_whether_grouped_or_alone():
    """lam-gl's one group of three anchors beside the last layer: 3/4 and 1/4 of the classifier's input
    (an unweighted mean gave the last layer alone as much as the group)."""
    import torch

    from sers.classifiers.heads import LayerHead

    head = LayerHead(layers=[1, 2, 3, 5], branches=[[1, 2, 3], [5]], input_dim=4, num_classes=2, hidden=8)
    group, last = torch.ones(2, 8), torch.zeros(2, 8)
    torch.testing.assert_close(head.mix([group, last]), torch.full((2, 8), 0.75))
    lam = LayerHead(layers=[1, 2, 3, 5], branches=[[1], [2], [3], [5]], input_dim=4, num_classes=2, hidden=8)
    torch.testing.assert_close(lam.mix([group, group, group, last]), torch.full((2, 8), 0.75))


def test_ablations_are_added_before_their_method():
    assert with_ablations(["last", "lam"]) == ["last", "anchors-only", "lam"]
    assert with_ablations(["lam-gl+vowel", "coral"]) == ["groups-only", "lam-gl+vowel", "last", "coral"]
    assert with_ablations(["anchors-only", "lam", "wsum"]) == ["anchors-only", "lam", "wsum"]
    assert with_ablations(["lam", "lam+vowel"]) == ["anchors-only", "lam", "lam+vowel"]


@pytest.mark.parametrize("method, ablation, anchors", [("lam", "anchors-only", [1, 3]),
                                                        ("lam-gl", "groups-only", [[1, 2], [3, 4]])])
def test_the_ablation_is_the_method_without_its_alignment_term(method, ablation, anchors):
    """Same layers, same heads, same parameters: the ablation is the method at λ = 0, prediction for
    prediction; with λ > 0 the same architecture learns other weights."""
    d = planted_corpora(n_source=160, n_target=120, seed=3)
    fit = dict(hidden=16, epochs=3, batch_size=32, seed=5, anchors=anchors)
    args = (d["X_source"], d["y_source"], d["X_target"])
    plain = LayerAnchoringClassifier(method=ablation, **fit).fit(*args)
    at_zero = LayerAnchoringClassifier(method=method, lambda_=0.0, **fit).fit(*args)
    aligned = LayerAnchoringClassifier(method=method, lambda_=3.0, **fit).fit(*args)
    assert plain.branches_ == at_zero.branches_ == aligned.branches_
    shapes = {k: v.shape for k, v in plain.module_.state_dict().items()}
    assert shapes == {k: v.shape for k, v in aligned.module_.state_dict().items()}
    np.testing.assert_array_equal(plain.predict_proba(d["X_target"]), at_zero.predict_proba(d["X_target"]))
    assert not np.allclose(plain.predict_proba(d["X_target"]), aligned.predict_proba(d["X_target"]))
    assert aligned.history_[0]["loss_align"] > 0 and plain.history_[0]["loss_align"] == 0
