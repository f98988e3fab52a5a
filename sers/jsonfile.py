"""Reading the JSON files stages write (anchors, similarity, metrics, maps) with one-line errors."""
from __future__ import annotations

import json
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
