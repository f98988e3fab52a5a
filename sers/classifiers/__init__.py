"""Emotion heads over layer features: the methods, losses, the anchoring estimator, metrics.

Works on arrays from anywhere; nothing here opens a cache.

    >>> from sers.classifiers import LayerAnchoringClassifier
    >>> clf = LayerAnchoringClassifier(method="lam", anchors=[3, 5, 7]).fit(X_src, y_src, X_tgt)

Names are imported on first use, so that ``sers.classifiers.methods`` (the method registry,
read by the report and the CLI) loads without torch.
"""
from sers.lazy import lazy_names

_WHERE = {"LayerAnchoringClassifier": "estimator", "InputError": "data", "ParameterError": "data",
          "TargetSet": "fit_data", "DevSet": "fit_data", "SpeakerStatistics": "speakers",
          "standardise_by_speaker": "speakers", "METHODS": "methods",
          "Method": "methods", "method_names": "methods", "coral_loss": "losses",
          "class_conditional_coral": "losses", "reverse_gradient": "losses", "GradientReversal": "losses",
          "classification_metrics": "metrics", "uar": "metrics"}

__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_names(__name__, _WHERE)
