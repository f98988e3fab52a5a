"""Declared parameter constraints (scikit-learn's ``_parameter_constraints``) with messages in sers's words.

scikit-learn checks each parameter against a list of constraints (an ``Interval``, a set of
strings, a type, None) and raises ``InvalidParameterError``. The checks here are the same,
through :func:`sklearn.utils._param_validation.validate_parameter_constraints`; only the
message is ours: ``"dropout must be in [0, 1), not 1.5"`` names the rule to follow.
"""
from __future__ import annotations

from numbers import Integral, Real

from sklearn.utils._param_validation import (InvalidParameterError, Interval, StrOptions,
                                             validate_parameter_constraints)

from sers.classifiers.data import ParameterError


class Choices(StrOptions):
    """StrOptions over a live collection (a registry may gain entries after import), remembering its
    order (for messages and --help) and how to say "not one of them"."""

    def __init__(self, options, message="{name} must be one of {options}, not {value!r}"):
        super().__init__(set(options))
        self.source, self.message = options, message

    def is_satisfied_by(self, val):
        return isinstance(val, str) and val in self.source

    def __str__(self):
        return ", ".join(self.source)


TYPE_NAMES = {Integral: "an integer", Real: "a number", str: "a string"}


def describe(constraint) -> str:
    """An Interval as ">= 1", "> 0" or "in [0, 1)"; None as "None"; a type as "an integer", ..."""
    if isinstance(constraint, Interval):
        if constraint.right is None:
            return (">= " if constraint.closed in ("left", "both") else "> ") + f"{constraint.left:g}"
        opening = "[" if constraint.closed in ("left", "both") else "("
        closing = "]" if constraint.closed in ("right", "both") else ")"
        return f"in {opening}{constraint.left:g}, {constraint.right:g}{closing}"
    if isinstance(constraint, Choices):
        return f"one of {constraint}"
    if constraint is None:
        return "None"
    return TYPE_NAMES.get(constraint, getattr(constraint, "__name__", str(constraint)))


def check_params(constraints: dict, params: dict, caller: str) -> None:
    """Each of ``params`` against its declared constraints; the first that fails is a ParameterError."""
    for name, allowed in constraints.items():
        try:
            validate_parameter_constraints({name: allowed}, {name: params[name]}, caller_name=caller)
        except InvalidParameterError:
            value = params[name]
            choices = [c for c in allowed if isinstance(c, Choices)]
            if choices and isinstance(value, str):
                raise ParameterError(choices[0].message.format(name=name, options=choices[0], value=value)) from None
            rule = " or ".join(describe(c) for c in allowed)
            raise ParameterError(f"{name} must be {rule}, not {value!r}") from None
