"""Emotion heads over layer features: the methods, losses, the anchoring estimator, metrics.

Works on arrays from anywhere; nothing here opens a cache.

    >>> from sers.classifiers import LayerAnchoringClassifier
    >>> clf = LayerAnchoringClassifier(method="lam", anchors=[3, 5, 7]).fit(X_src, y_src, X_tgt)

Names are imported on first use, so that ``sers.classifiers.methods`` (the method registry,
read by the report and the CLI) loads without torch.
"""
import importlib

_WHERE = {"LayerAnchoringClassifier": "estimator", "InputError": "data", "METHODS": "methods",
          "Method": "methods", "method_names": "methods", "coral_loss": "losses",
          "class_conditional_coral": "losses", "reverse_gradient": "losses", "GradientReversal": "losses",
          "classification_metrics": "metrics", "uar": "metrics"}

__all__ = list(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'sers.classifiers' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sers.classifiers.{_WHERE[name]}"), name)


def __dir__():
    return sorted(list(globals()) + __all__)
