"""Anchor layers for `lam` and `lam-gl`: reading anchors.json and shaping it for a method.

anchors.json (written by `sers anchor`) holds ``"layers"`` (top-k single layers, or for the
group strategy the union of the groups) and, for the group and both strategies, ``"groups"``;
"both" (the default) adds ``"group_candidates"``, the group settings lam-gl chooses among. The
measure, scores and similarity file that chose them ride along and are checked, not used.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from sers.classifiers.methods import get_method
from sers.errors import SersError
from sers.jsonfile import field_error, is_number, layer_list, number_list, object_field, read_json, shown, text_field


def load_anchors(anchors, num_layers: int | None = None) -> dict:
    """``anchors.json`` path, a parsed dict, layer numbers or groups -> {"layers", "groups", "file"}.

    Strict, since a loose reading trains on other layers without a word: layers are distinct
    integers (1.5, 0.9, true and "1" are refused, not read as 1, 0, 1, 1), within
    0 .. ``num_layers`` - 1 where the model's count is given; groups are non-empty lists that share
    no layer; a file holding both ``layers`` and ``groups`` has the union of the groups as its
    layers; the scores it carries are numbers. Each mistake is one line naming the file and field.
    """
    if anchors is None:
        return {"layers": None, "groups": None, "group_candidates": None, "file": None, "target_labels": None}
    found = {"file": None, "target_labels": None}
    source = "--anchors"
    if isinstance(anchors, (str, os.PathLike)):
        path = Path(anchors)
        anchors = read_json(path, missing="no such anchors file (write one with `sers anchor`)",
                            invalid="not an anchors.json")
        found["file"] = source = str(path)
        if not isinstance(anchors, (dict, list)):  # e.g. a file holding 5 or null
            raise SersError(f"{path}: not an anchors.json (expected an object with 'layers' or 'groups', "
                            f"found {json.dumps(anchors)})")
    if hasattr(anchors, "tolist"):  # a numpy array of layers or groups
        anchors = anchors.tolist()
    if isinstance(anchors, dict):
        _check_fields(anchors, source)
        found["target_labels"] = anchors.get("chosen_with_target_labels")
        layers, groups = anchors.get("layers"), anchors.get("groups")
        if not layers and not groups:
            raise SersError(f"{source}: needs a 'layers' list or a 'groups' list of lists")
    elif isinstance(anchors, (list, tuple)) and anchors and all(isinstance(a, (list, tuple)) for a in anchors):
        layers, groups = None, list(anchors)
    else:
        layers, groups = anchors, None
    if groups:
        found["groups"] = _groups(groups, source, num_layers)
        union = sorted(layer for group in found["groups"] for layer in group)
    else:
        found["groups"] = None
    # "both" (sers anchor's default) holds lam's top-k layers beside lam-gl's groups: no union to match.
    both = isinstance(anchors, dict) and anchors.get("strategy") == "both"
    found["group_candidates"] = _group_candidates(anchors, source, num_layers) if both else None
    if layers:
        found["layers"] = sorted(layer_list(layers, source, "layers", num_layers))
        if groups and not both and found["layers"] != union:
            raise SersError(f"{source}: field 'layers' {found['layers']} is not the union of field 'groups' "
                            f"{found['groups']}; write both with one `sers anchor` run, or give only one of them")
    else:
        found["layers"] = union
    return found


def _groups(groups, source, num_layers) -> list[list[int]]:
    if not isinstance(groups, list):
        raise field_error(source, "groups", f"must be a list of lists of layer numbers, not {shown(groups)}")
    checked, owner = [], {}
    for i, group in enumerate(groups):
        if isinstance(group, tuple):
            group = list(group)
        if not isinstance(group, list) or not group:
            raise field_error(source, f"groups[{i}]", f"must be a non-empty list of layer numbers, not {shown(group)}")
        checked.append(layer_list(group, source, f"groups[{i}]", num_layers))
        for layer in checked[-1]:
            if layer in owner:
                raise field_error(source, "groups", f"puts layer {layer} in groups {owner[layer]} and {i}")
            owner[layer] = i
    return checked


def _group_candidates(anchors: dict, source, num_layers) -> list[dict] | None:
    """The ``group_candidates`` of a "both" file: [{"tag": "2x1", "groups": [[...]]}, ...], or None."""
    listed = anchors.get("group_candidates")
    if listed is None:
        return None
    if not isinstance(listed, list) or not listed:
        raise field_error(source, "group_candidates", f"must be a non-empty list of group settings, not {shown(listed)}")
    out = []
    for i, entry in enumerate(object_field(e, source, f"group_candidates[{i}]") for i, e in enumerate(listed)):
        groups = _groups(entry.get("groups"), source, num_layers)
        size, count = entry.get("size"), entry.get("count")
        if size != len(groups[0]) or count != len(groups) or any(len(g) != size for g in groups):
            raise field_error(source, f"group_candidates[{i}]", f"says {size}x{count} but holds groups {groups}")
        out.append({"tag": f"{size}x{count}", "groups": groups})
    return out


def _check_fields(anchors: dict, source) -> None:
    """The fields `sers anchor` writes beside the layers, where present: what they are must be what
    they say (a score given as a string would be read by nothing here, but means a damaged file)."""
    if "strategy" in anchors:
        text_field(anchors["strategy"], source, "strategy", ("both", "topk", "group"))
    for name in ("measure", "direction", "similarity_file", "chosen_with_target_labels"):
        if name in anchors:
            text_field(anchors[name], source, name, nullable=True)
    if "scores" in anchors:
        scores = object_field(anchors["scores"], source, "scores")
        for key, value in scores.items():
            if not key.lstrip("-").isdigit():
                raise field_error(source, "scores", f"has the key {shown(key)}, not a layer number")
            if not (value is None or is_number(value)):
                raise field_error(source, f"scores.{key}", f"must be a number or null, not {shown(value)}")
    if "group_scores" in anchors:
        groups = anchors.get("groups")
        number_list(anchors["group_scores"], source, "group_scores", nullable=False)
        if isinstance(groups, list) and len(anchors["group_scores"]) != len(groups):
            raise field_error(source, "group_scores", f"has {len(anchors['group_scores'])} entries for "
                                                      f"{len(groups)} groups")


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
