"""Declared parameter constraints (the estimator's ``_parameter_constraints``), checked by sers itself.

Each parameter has a list of allowed forms: an :class:`Interval`, :class:`Choices` of strings,
:data:`ARRAY_LIKE`, a type, or None. :func:`check_params` raises a ``ParameterError`` (a
ValueError and a TypeError, as scikit-learn's own InvalidParameterError) whose message names the
rule to follow: ``"dropout must be in [0, 1), not 1.5"``. The checks are sers's own rather than
scikit-learn's ``sklearn.utils._param_validation``: a private module that may change on any release.
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

from sers.classifiers.data import InputError, ParameterError
from sers.classifiers.methods import get_method, names_where


class Interval:
    """Numbers of ``kind`` (Integral or Real) between ``left`` and ``right`` (None: unbounded);
    ``closed`` is "left", "right", "both" or "neither". Booleans and NaN are never in one."""

    def __init__(self, kind, left, right, closed):
        if closed not in ("left", "right", "both", "neither"):
            raise ValueError(f"closed must be left, right, both or neither, not {closed!r}")
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def is_satisfied_by(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, self.kind):
            return False
        if isinstance(value, Real) and math.isnan(value):
            return False
        left_ok = self.left is None or (value >= self.left if self.closed in ("left", "both") else value > self.left)
        right_ok = self.right is None or (value <= self.right if self.closed in ("right", "both")
                                          else value < self.right)
        return left_ok and right_ok

    def __str__(self):
        if self.right is None:
            return (">= " if self.closed in ("left", "both") else "> ") + f"{self.left:g}"
        opening = "[" if self.closed in ("left", "both") else "("
        closing = "]" if self.closed in ("right", "both") else ")"
        return f"in {opening}{self.left:g}, {self.right:g}{closing}"


class Choices:
    """One of the strings of a live collection (a registry may gain entries after import), kept in
    its order (for messages and --help), with how to say "not one of them"."""

    def __init__(self, options, message="{name} must be one of {options}, not {value!r}"):
        self.source, self.message = options, message

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, str) and value in self.source

    def __str__(self):
        return ", ".join(self.source)


class _ArrayLike:
    """A sequence or array (anything with a length or ``__array__``), but not a string."""

    def is_satisfied_by(self, value) -> bool:
        return not isinstance(value, (str, bytes)) and (hasattr(value, "__len__") or hasattr(value, "__array__"))

    def __str__(self):
        return "a list or array"


ARRAY_LIKE = _ArrayLike()
# scikit-learn's convention for ``verbose``: a flag or a level.
VERBOSE = (bool, Interval(Integral, 0, None, closed="left"))

TYPE_NAMES = {Integral: "an integer", Real: "a number", str: "a string", bool: "True or False"}


def satisfies(constraint, value) -> bool:
    if constraint is None:
        return value is None
    if isinstance(constraint, type):
        return isinstance(value, constraint)
    return constraint.is_satisfied_by(value)


def describe(constraint) -> str:
    """An Interval as ">= 1", "> 0" or "in [0, 1)"; Choices as "one of a, b"; None as "None"; a type
    as "an integer", ..."""
    if isinstance(constraint, Interval):
        return str(constraint)
    if isinstance(constraint, Choices):
        return f"one of {constraint}"
    if constraint is None:
        return "None"
    if isinstance(constraint, type):
        return TYPE_NAMES.get(constraint, constraint.__name__)
    return str(constraint)


def check_params(constraints: dict, params: dict) -> None:
    """Each of ``params`` against its declared constraints; the first that fails is a ParameterError."""
    for name, allowed in constraints.items():
        value = params[name]
        if any(satisfies(constraint, value) for constraint in allowed):
            continue
        choices = [c for c in allowed if isinstance(c, Choices)]
        if choices and isinstance(value, str):
            raise ParameterError(choices[0].message.format(name=name, options=choices[0], value=value))
        rule = " or ".join(describe(c) for c in allowed)
        raise ParameterError(f"{name} must be {rule}, not {value!r}")


def check_combination(params: dict) -> None:
    """The rules between the estimator's parameters: the anchors each method needs, and which
    methods and features ``align="vowel"`` works with."""
    method, anchors = get_method(params["method"]), params["anchors"]
    if method.anchors == "layers" and (not anchors or not all(isinstance(a, (int, np.integer)) for a in anchors)):
        raise InputError(f"method {method.name!r} needs anchors as layer numbers, e.g. anchors=[3, 5, 7] "
                         "(from `sers anchor` or your own choice)")
    if method.anchors == "groups" and (not anchors or not all(isinstance(g, (list, tuple)) and g for g in anchors)):
        raise InputError(f"method {method.name!r} needs anchors as groups of layers, "
                         "e.g. anchors=[[3, 4, 5], [8, 9, 10]]")
    if params["align"] == "vowel" and not method.vowel:
        raise InputError(f"align='vowel' aligns anchor layers vowel by vowel: it works with methods "
                         f"{' and '.join(names_where(vowel=True))}, not {method.name!r}")
    if params["align"] == "vowel" and params["features"] != "pooled":
        raise InputError("align='vowel' compares pooled vowel segments: use it with features='pooled'")
