"""Property-based tests of the manifest reader: what is written is read back; anything else
is refused with a SersError naming the manifest, never another exception."""
import csv
import io
import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sers.errors import SersError
from sers.inputs.manifest import read_manifest

# Cell text as users write it: any printable characters (commas, quotes, CJK, emoji) but no
# line breaks, and no surrounding spaces (the reader strips those).
_cell = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=12).map(str.strip)
_name = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd", "Lo")), min_size=1, max_size=10)
_times = st.one_of(st.none(), st.tuples(st.floats(0, 1e4), st.floats(0.001, 1e4)).map(lambda t: (t[0], t[0] + t[1])))
_row = st.fixed_dictionaries({"path": _name.map(lambda n: f"{n}.wav"), "label": _cell, "split": _cell,
                              "speaker": _cell, "language": _cell, "times": _times})
_rows = st.lists(_row, min_size=1, max_size=8)
_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _write(rows, form: str, folder: Path) -> Path:
    records = []
    for i, row in enumerate(rows):
        start, end = row["times"] or ("", "")
        records.append({"id": f"utt{i}", "path": row["path"], "label": row["label"], "split": row["split"],
                        "speaker": row["speaker"], "language": row["language"],
                        "start": "" if start == "" else repr(start), "end": "" if end == "" else repr(end)})
    if form == "jsonl":
        path = folder / "m.jsonl"
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
        return path
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]), delimiter="\t" if form == "tsv" else ",")
    writer.writeheader()
    writer.writerows(records)
    path = folder / f"m.{form}"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


@_SETTINGS
@given(rows=_rows, form=st.sampled_from(["csv", "tsv", "jsonl"]))
def test_valid_manifests_round_trip(rows, form):
    with tempfile.TemporaryDirectory() as folder:
        utterances = read_manifest(_write(rows, form, Path(folder)))
        assert [u.id for u in utterances] == [f"utt{i}" for i in range(len(rows))]
        for utt, row in zip(utterances, rows):
            assert utt.path == os.path.abspath(Path(folder) / row["path"])
            assert (utt.label, utt.split, utt.speaker, utt.language) == (
                row["label"], row["split"], row["speaker"], row["language"])
            assert (utt.start, utt.end) == (row["times"] or (None, None))


@_SETTINGS
@given(content=st.binary(max_size=300), suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".txt"]))
def test_any_bytes_give_utterances_or_a_sers_error(content, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"m{suffix}"
        path.write_bytes(content)
        try:
            utterances = read_manifest(path)
        except SersError as exc:
            assert str(path) in str(exc)
        else:
            assert utterances and all(u.id and u.path for u in utterances)


@_SETTINGS
@given(rows=_rows, damage=st.sampled_from(["drop path", "bad time", "end before start", "repeat id",
                                            "extra cell", "nul byte"]))
def test_damaged_manifests_give_a_sers_error(rows, damage):
    with tempfile.TemporaryDirectory() as folder:
        path = _write(rows, "csv", Path(folder))
        lines = path.read_text(encoding="utf-8").splitlines()
        header = lines[0].split(",")
        if damage == "drop path":
            lines[0] = lines[0].replace("path", "recording", 1)
        elif damage == "bad time":
            lines.append(f"x{len(rows)},x.wav,,,,,soon,")
        elif damage == "end before start":
            lines.append(f"x{len(rows)},x.wav,,,,,2.0,1.0")
        elif damage == "repeat id":
            lines.append("utt0,x.wav,,,,,,")
        elif damage == "extra cell":
            lines.append(",".join(["y", "y.wav"] + [""] * len(header)))
        else:
            lines.append("z,z\0.wav,,,,,,")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            read_manifest(path)
        except SersError as exc:
            assert str(path) in str(exc)
        else:
            raise AssertionError(f"{damage}: accepted")
