"""Reading the JSON files stages write (anchors, similarity, metrics, maps) with one-line errors."""
from __future__ import annotations

import json
import numbers
from pathlib import Path

from sers.errors import SersError


def read_json(path, *, missing: str = "no such file", invalid: str = "not valid JSON"):
    """The parsed content of ``path``; SersError ``"<path>: <missing>"`` when it does not exist
    and ``"<path>: <invalid> (<parser message>)"`` when it is not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError):
        raise SersError(f"{path}: {missing}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SersError(f"{path}: {invalid} ({exc})") from None


# -- typed fields: what a hand-edited or damaged file gets wrong, named by file and field -----------

def shown(value, limit: int = 60) -> str:
    """A value as the file spells it (JSON), cut short: what the error line quotes."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def is_integer(value) -> bool:
    """An integer as JSON writes one: 1.0, 1.5, true and "1" are not (bool is an int in Python,
    and int(1.5) == 1 would quietly read another layer)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A JSON number (an integer or a float, NaN included); not true/false, not a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def field_error(source, field: str, problem: str) -> SersError:
    return SersError(f"{source}: field '{field}' {problem}")


def integer_field(value, source, field: str, *, minimum: int | None = None) -> int:
    if not is_integer(value):
        raise field_error(source, field, f"must be an integer, not {shown(value)}")
    if minimum is not None and value < minimum:
        raise field_error(source, field, f"must be at least {minimum}, not {value}")
    return int(value)


def layer_list(value, source, field: str, num_layers: int | None = None) -> list[int]:
    """A list of distinct layer numbers (0 .. num_layers - 1 where the model's count is known), in the
    order given; anything else is a SersError naming ``source`` and ``field`` (``layers[2]``)."""
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise field_error(source, field, f"must be a list of layer numbers, not {shown(value)}")
    seen = set()
    for i, layer in enumerate(value):
        if not is_integer(layer):
            raise field_error(source, f"{field}[{i}]", f"must be a layer number (an integer), not {shown(layer)}")
        if layer < 0 or (num_layers is not None and layer >= num_layers):
            top = f"0-{num_layers - 1}" if num_layers is not None else "0 or more"
            raise field_error(source, f"{field}[{i}]", f"is layer {layer}, out of range ({top})")
        if layer in seen:
            raise field_error(source, field, f"names layer {layer} twice")
        seen.add(int(layer))
    return [int(layer) for layer in value]


def number_list(value, source, field: str, length: int | None = None, *, nullable: bool = True) -> list:
    """A list of JSON numbers (and nulls, where ``nullable``), of ``length`` entries when given."""
    if not isinstance(value, list):
        raise field_error(source, field, f"must be a list of numbers, not {shown(value)}")
    if length is not None and len(value) != length:
        raise field_error(source, field, f"has {len(value)} entries but there are {length} layers")
    for i, item in enumerate(value):
        if not (is_number(item) or (nullable and item is None)):
            raise field_error(source, f"{field}[{i}]", f"must be a number{' or null' if nullable else ''}, "
                                                       f"not {shown(item)}")
    return value


def object_field(value, source, field: str) -> dict:
    if not isinstance(value, dict):
        raise field_error(source, field, f"must be an object, not {shown(value)}")
    return value


def text_field(value, source, field: str, choices=None, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise field_error(source, field, f"must be a string{' or null' if nullable else ''}, not {shown(value)}")
    if choices is not None and value not in choices:
        raise field_error(source, field, f"must be one of {', '.join(choices)}, not {shown(value)}")
    return value
