"""Emotion heads over layer features: losses, the anchoring estimator, metrics.

Works on arrays from anywhere; nothing here opens a cache.

    >>> from sers.classifiers import LayerAnchoringClassifier
    >>> clf = LayerAnchoringClassifier(method="lam", anchors=[3, 5, 7]).fit(X_src, y_src, X_tgt)
"""
from sers.classifiers.data import InputError
from sers.classifiers.estimator import LayerAnchoringClassifier
from sers.classifiers.heads import METHODS
from sers.classifiers.losses import GradientReversal, class_conditional_coral, coral_loss, reverse_gradient
from sers.classifiers.metrics import classification_metrics, uar

__all__ = ["LayerAnchoringClassifier", "InputError", "METHODS", "coral_loss", "class_conditional_coral",
           "reverse_gradient", "GradientReversal", "classification_metrics", "uar"]
