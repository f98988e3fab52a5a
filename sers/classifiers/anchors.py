"""Anchor layers for `lam` and `lam-gl`: reading anchors.json and shaping it for a method.

anchors.json (written by `sers anchor`) holds ``"layers"`` (top-k single layers, or for the
group strategy the union of the groups) and, for the group strategy, ``"groups"``; the
measure, scores and similarity file that chose them ride along and are ignored here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from sers.classifiers.methods import get_method
from sers.errors import SersError
from sers.jsonfile import read_json


def load_anchors(anchors) -> dict:
    """``anchors.json`` path, a parsed dict, layer numbers or groups -> {"layers", "groups", "file"}."""
    if anchors is None:
        return {"layers": None, "groups": None, "file": None, "target_labels": None}
    found = {"file": None}
    if isinstance(anchors, (str, os.PathLike)):
        path = Path(anchors)
        anchors = read_json(path, missing="no such anchors file (write one with `sers anchor`)",
                            invalid="not an anchors.json")
        found["file"] = str(path)
        if not isinstance(anchors, (dict, list)):  # e.g. a file holding 5 or null
            raise SersError(f"{path}: not an anchors.json (expected an object with 'layers' or 'groups', "
                            f"found {json.dumps(anchors)})")
    found["target_labels"] = None
    if isinstance(anchors, dict):
        found["target_labels"] = anchors.get("chosen_with_target_labels")
        layers, groups = anchors.get("layers"), anchors.get("groups")
        if not layers and not groups:
            raise SersError(f"{found['file'] or 'anchors'}: needs a 'layers' list or a 'groups' list of lists")
    elif all(isinstance(a, (list, tuple)) for a in anchors):
        layers, groups = None, anchors
    else:
        layers, groups = anchors, None
    try:
        found["groups"] = [[int(x) for x in g] for g in groups] if groups else None
        found["layers"] = sorted({int(x) for x in layers} if layers else {x for g in found["groups"] for x in g})
    except (TypeError, ValueError):
        raise SersError(f"{found['file'] or 'anchors'}: layers must be integers, groups lists of integers") from None
    return found


def anchors_for(method: str, anchors: dict):
    """lam reads single layers (a group file's layers, flattened); lam-gl reads groups (a layer
    list becomes its runs of consecutive layers: [3, 4, 5, 9] -> [[3, 4, 5], [9]])."""
    kind = get_method(method).anchors
    if kind == "none":
        return None
    if anchors["layers"] is None:
        raise SersError(f"method {method} needs --anchors: an anchors.json from `sers anchor`, or layers like 3,5,7")
    if kind == "layers":
        return anchors["layers"]
    if anchors["groups"]:
        return anchors["groups"]
    groups = [[anchors["layers"][0]]]
    for layer in anchors["layers"][1:]:
        (groups[-1].append(layer) if layer == groups[-1][-1] + 1 else groups.append([layer]))
    return groups
