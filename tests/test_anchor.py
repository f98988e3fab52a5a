"""`sers anchor`: top-k layers and contiguous groups, per-measure direction, anchors.json."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from sers.cli import main
from sers.errors import SersError
from sers.pipeline.anchor import select_anchors
from sers.pipeline.similarity import compute_similarity
from test_similarity import NUM_LAYERS, PLANTED, write_planted


def table(**columns):
    """A similarity result with the given per-layer columns (directions from the registry)."""
    from sers.analysis.measures import MEASURES

    length = len(next(iter(columns.values())))
    return {"layers": list(range(length)),
            "measures": {name.replace("_", "-"): {"direction": MEASURES[name.replace("_", "-")].direction,
                                                  "values": values} for name, values in columns.items()}}


CORAL = [0.9, 0.2, 0.8, 0.1, 0.15, 0.12, 0.7, 0.05]  # best single: 7, 3, 5; best triple: 3-5


def test_topk_follows_each_measures_direction():
    result = table(coral=CORAL, cka=[1 - v for v in CORAL])
    coral = select_anchors(result, strategy="topk", k=3)
    assert coral["measure"] == "coral" and coral["direction"] == "lower"
    assert coral["layers"] == [3, 5, 7] and coral["strategy"] == "topk"
    cka = select_anchors(result, strategy="topk", measure="cka", k=3)
    assert cka["direction"] == "higher" and cka["layers"] == [3, 5, 7]
    assert select_anchors(result, strategy="topk", k=2, exclude=[7])["layers"] == [3, 5]
    assert select_anchors(result, strategy="topk", k=2, exclude=[7])["excluded"] == [7]


def test_anchors_json_has_the_keys_training_reads(tmp_path):
    anchors = select_anchors(table(coral=CORAL), strategy="topk", k=2, similarity_file=tmp_path / "similarity.json")
    assert list(anchors) == ["measure", "direction", "strategy", "layers", "chosen_with_target_labels", "scores",
                             "similarity_file", "excluded"]
    assert anchors["chosen_with_target_labels"] is None  # coral is label-free
    assert anchors["scores"] == {str(i): v for i, v in enumerate(CORAL)}
    assert anchors["similarity_file"] == str((tmp_path / "similarity.json").resolve())


def test_group_strategy_best_contiguous_windows_without_overlap():
    result = table(coral=CORAL)
    one = select_anchors(result, strategy="group", group_size=3)
    assert one["groups"] == [[3, 4, 5]] and one["layers"] == [3, 4, 5]
    assert one["group_scores"] == pytest.approx([np.mean(CORAL[3:6])])
    two = select_anchors(result, strategy="group", group_size=2, n_groups=2)
    # windows by mean: [3,4] 0.125, [4,5] 0.135 (overlaps), [6,7] 0.375, [5,6] 0.41, [2,3] 0.45
    assert two["groups"] == [[3, 4], [6, 7]]
    assert two["group_scores"] == pytest.approx([0.125, 0.375])
    assert two["layers"] == [3, 4, 6, 7]
    # an excluded layer breaks windows: nothing may span layer 4
    assert select_anchors(result, strategy="group", group_size=2, exclude=[4])["groups"] == [[6, 7]]


def test_default_measure_preference_and_missing_values():
    assert select_anchors(table(mmd=CORAL, domain=CORAL, cka=CORAL), strategy="topk", k=1)["measure"] == "mmd"
    assert select_anchors(table(domain=CORAL, probe=CORAL), strategy="topk", k=1)["measure"] == "domain"
    assert select_anchors(table(cka=CORAL), strategy="topk", k=1)["measure"] == "cka"  # no label-free one in the file
    with_gap = table(coral=[None, 0.3, 0.1, None])
    assert select_anchors(with_gap, strategy="topk", k=2)["layers"] == [1, 2]
    assert select_anchors(with_gap, strategy="topk", k=2)["scores"]["0"] is None


@pytest.mark.parametrize("kwargs,message", [
    (dict(k=9), "--k 9 but only 8 layers have a coral score"),
    (dict(measure="probe"), "measure 'probe' is not in the similarity file; available: coral"),
    (dict(strategy="group", group_size=3, n_groups=3), "only 2 non-overlapping groups of 3 consecutive layers"),
])
def test_errors_name_the_problem(kwargs, message):
    with pytest.raises(SersError, match=message.replace("(", r"\(")):
        select_anchors(table(coral=CORAL), **kwargs)


@pytest.fixture(scope="module")
def planted_similarity(tmp_path_factory):
    root = tmp_path_factory.mktemp("anchor")
    caches = write_planted(root)
    compute_similarity(*caches, root / "sim", target_labels="dev")
    return caches, root / "sim" / "similarity.json"


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_picks_the_planted_layers_with_every_measure(planted_similarity, tmp_path):
    _, similarity_json = planted_similarity
    measures = json.loads(similarity_json.read_text())["measures"]
    for measure in measures:
        for strategy in ("topk", "group"):
            out = tmp_path / f"{measure}-{strategy}.json"
            run = cli("anchor", similarity_json, "-o", out, "--measure", measure, "--strategy", strategy)
            assert run.exit_code == 0, run.output
            anchors = json.loads(out.read_text())
            assert anchors["layers"] == list(PLANTED), (measure, strategy)
            if strategy == "group":
                assert anchors["groups"] == [list(PLANTED)]
            assert anchors["similarity_file"] == str(similarity_json.resolve())
            assert f"anchors by {measure}" in run.output


def test_cli_default_measure_is_said(planted_similarity, tmp_path):
    _, similarity_json = planted_similarity
    run = cli("anchor", similarity_json, "-o", tmp_path / "a.json", "--k", "2", "--exclude", "4")
    assert run.exit_code == 0, run.output
    assert "anchors by coral (lower is better; default: the best label-free measure available)" in run.output
    anchors = json.loads((tmp_path / "a.json").read_text())
    assert anchors["layers"] == [3, 5] and anchors["excluded"] == [4]
    assert len(anchors["scores"]) == NUM_LAYERS


def test_exclude_must_name_layers_of_the_similarity(planted_similarity, tmp_path):
    """A layer that is not there would exclude nothing: a typo (42 for 4) must not pass unseen."""
    _, similarity_json = planted_similarity
    run = cli("anchor", similarity_json, "-o", tmp_path / "a.json", "--exclude", "1,42")
    assert run.exit_code != 0 and not (tmp_path / "a.json").exists()
    assert f"--exclude 42: no such layer; the similarity has layers 0-{NUM_LAYERS - 1}" in run.output
    run = cli("anchor", similarity_json, "-o", tmp_path / "a.json", "--k", "2", "--exclude", "0-2,4")  # ranges, as --layers
    assert run.exit_code == 0, run.output
    assert json.loads((tmp_path / "a.json").read_text())["excluded"] == [0, 1, 2, 4]
    run = cli("anchor", similarity_json, "-o", tmp_path / "b.json", "--exclude", "-1")  # not counted from the end
    assert run.exit_code != 0 and "expected layer numbers" in run.output
    result = table(coral=CORAL)
    for bad, message in (([8], "--exclude 8: no such layer; the similarity has layers 0-7"),
                         ([-1], "--exclude -1: no such layer"), (["3"], "--exclude '3': not a layer number")):
        with pytest.raises(SersError, match=message):
            select_anchors(result, strategy="topk", k=2, exclude=bad)
    sparse = {"layers": [0, 6, 12], "measures": {"coral": {"direction": "lower", "values": [0.3, 0.1, 0.2]}}}
    with pytest.raises(SersError, match="--exclude 5: no such layer; the similarity has layers 0, 6, 12"):
        select_anchors(sparse, strategy="topk", k=1, exclude=[5])
    assert select_anchors(sparse, strategy="topk", k=1, exclude=6)["layers"] == [12]


def test_cli_from_two_caches_runs_the_similarity_first(planted_similarity, tmp_path):
    caches, _ = planted_similarity
    out = tmp_path / "run" / "anchors.json"
    run = cli("anchor", *caches, "-o", out, "--strategy", "group", "--group-size", "3", "--measure", "mmd")
    assert run.exit_code == 0, run.output
    anchors = json.loads(out.read_text())
    assert anchors["groups"] == [list(PLANTED)] and anchors["measure"] == "mmd"
    similarity = json.loads((tmp_path / "run" / "similarity" / "similarity.json").read_text())
    assert list(similarity["measures"]) == ["mmd"]
    assert anchors["similarity_file"] == str((tmp_path / "run" / "similarity" / "similarity.json").resolve())


def test_cli_input_errors(planted_similarity, tmp_path):
    caches, similarity_json = planted_similarity
    run = cli("anchor", tmp_path / "nope.json", "-o", tmp_path / "a.json")
    assert run.exit_code == 1 and "nope.json: no such similarity file" in run.output
    run = cli("anchor", similarity_json, *caches, "-o", tmp_path / "a.json")
    assert run.exit_code == 1 and "give one similarity.json, or a SOURCE and a TARGET cache" in run.output
    run = cli("anchor", caches[0], "-o", tmp_path / "a.json")
    assert run.exit_code == 1 and "source.zarr is a cache: give a SOURCE and a TARGET cache" in run.output
    (tmp_path / "bad.json").write_text("{}")
    run = cli("anchor", tmp_path / "bad.json", "-o", tmp_path / "a.json")
    assert run.exit_code == 1 and "not a similarity.json" in run.output


def test_label_aware_anchors_say_which_target_labels_chose_them(tmp_path):
    result = table(coral=CORAL, cka=[1 - v for v in CORAL])
    result["target"] = {"split": "train", "label_split": "dev"}
    assert select_anchors(result, strategy="topk", measure="cka", k=2)["chosen_with_target_labels"] == "dev"
    assert select_anchors(result, strategy="topk", measure="coral", k=2)["chosen_with_target_labels"] is None



def _result(**columns):
    """A similarity result with the given per-layer columns (name -> values)."""
    from sers.analysis.measures import MEASURES

    layers = list(range(len(next(iter(columns.values())))))
    return {"layers": layers, "measures": {name.replace("_", "-"): {
        "direction": MEASURES[name.replace("_", "-")].direction, "values": values}
        for name, values in columns.items()}}


def test_a_saturated_measure_never_chooses_anchors():
    from sers.errors import SersError
    from sers.pipeline.anchor import select_anchors
    from sers.pipeline.similarity import format_table

    # a domain classifier that separates the languages perfectly at every layer
    result = _result(domain=[1.0] * 6, proxy_a_distance=[2.0] * 6, mmd=[5.0, 4.0, 1.0, 2.0, 3.0, 6.0])
    anchors = select_anchors(result, strategy="topk", k=2)
    assert anchors["measure"] == "mmd" and anchors["layers"] == [2, 3]
    with pytest.raises(SersError, match="'domain' cannot rank layers \\(saturated: 1 \\(its worst value\\)"):
        select_anchors(result, strategy="topk", measure="domain", k=2)
    only_saturated = _result(domain=[1.0] * 6)
    with pytest.raises(SersError, match="no measure in the similarity file can rank layers \\(domain: saturated"):
        select_anchors(only_saturated, strategy="topk", k=2)
    table = format_table(result)
    assert "domain cannot rank layers (saturated: 1 (its worst value) at every layer)" in table
    cells = [line.split() for line in table.splitlines()[2:8]]
    assert [row[1] for row in cells] == ["1"] * 6 and [row[2] for row in cells] == ["2"] * 6  # no star, no tie mark
    assert [row[3] for row in cells][2] == "1*"  # mmd still marks its best layer


def test_the_default_measure_passes_over_saturated_ones_and_says_so():
    from sers.pipeline.anchor import select_anchors

    result = _result(coral=[0.3] * 6, domain=[0.9, 0.7, 0.6, 0.8, 0.95, 1.0])
    anchors = select_anchors(result, strategy="topk", k=1)
    assert anchors["measure"] == "domain" and anchors["layers"] == [2]
    assert anchors["measures_passed_over"] == {"coral": "constant: 0.3 at every layer"}


def test_a_tie_at_the_cut_is_an_error_not_a_tie_break():
    from sers.errors import SersError
    from sers.pipeline.anchor import select_anchors
    from sers.pipeline.similarity import format_table

    result = _result(domain=[0.9, 0.6, 0.6, 0.8, 0.95, 1.0])
    assert select_anchors(result, strategy="topk", k=2)["layers"] == [1, 2]  # the tie is inside the top 2: fine
    with pytest.raises(SersError, match="layers 1, 2 tie at 0.6 by domain, so the top 1 are not determined"):
        select_anchors(result, strategy="topk", k=1)
    with pytest.raises(SersError, match="layer groups \\[1\\] and \\[2\\] tie"):
        select_anchors(result, strategy="group", group_size=1)
    rows = format_table(result).splitlines()
    assert rows[3].split()[1] == "0.6=" and rows[4].split()[1] == "0.6=" and "*" not in format_table(result)


def test_the_anchor_line_names_the_measures_passed_over():
    from sers.pipeline.anchor import describe, select_anchors

    line = describe(select_anchors(_result(coral=[0.3] * 6, domain=[0.9, 0.7, 0.6, 0.8, 0.95, 1.0]), strategy="topk", k=1),
                    measure_given=False)
    assert line.endswith("topk: 2; passed over coral (constant: 0.3 at every layer)")


def test_an_existing_anchors_file_is_refused_unless_overwrite(planted_similarity, tmp_path):
    _, similarity_json = planted_similarity
    out = tmp_path / "a.json"
    assert cli("anchor", similarity_json, "-o", out, "--k", "2").exit_code == 0
    run = cli("anchor", similarity_json, "-o", out, "--k", "3")
    assert run.exit_code == 1 and f"error: {out} exists: pass --overwrite to replace it" in run.output
    assert len(json.loads(out.read_text())["layers"]) == 2
    run = cli("anchor", similarity_json, "-o", out, "--k", "3", "--overwrite")
    assert run.exit_code == 0 and len(json.loads(out.read_text())["layers"]) == 3
    assert run.output.splitlines()[-1] == f"wrote {out}"


def test_anchor_from_two_caches_refuses_an_earlier_similarity(planted_similarity, tmp_path):
    caches, _ = planted_similarity
    (tmp_path / "similarity").mkdir()
    (tmp_path / "similarity" / "similarity.json").write_text("{}")
    run = cli("anchor", *caches, "-o", tmp_path / "a.json", "--measure", "mmd", "--quiet")
    assert run.exit_code == 1 and "similarity.json exists: pass --overwrite" in run.output
    assert not (tmp_path / "a.json").exists()
    run = cli("anchor", *caches, "-o", tmp_path / "a.json", "--measure", "mmd", "--quiet", "--overwrite")
    assert run.exit_code == 0, run.output


def test_an_unknown_measure_is_a_usage_error_listing_the_registry(planted_similarity, tmp_path):
    from sers.analysis.measures import MEASURES

    _, similarity_json = planted_similarity
    run = cli("anchor", similarity_json, "-o", tmp_path / "a.json", "--measure", "kl")
    assert run.exit_code == 2 and all(name in run.output for name in MEASURES)


def test_both_writes_lams_layers_and_lam_gls_group_settings():
    """The default: the top-k single layers for lam and, for lam-gl, the best non-overlapping
    contiguous groups of every size x count (CORAL: best pair 3-4, then 6-7 without overlap)."""
    anchors = select_anchors(table(coral=CORAL), k=3)
    assert anchors["strategy"] == "both" and anchors["layers"] == [3, 5, 7]
    settings = {(c["size"], c["count"]): c["groups"] for c in anchors["group_candidates"]}
    assert settings == {(2, 1): [[3, 4]], (2, 2): [[3, 4], [6, 7]], (3, 1): [[3, 4, 5]],
                        (3, 2): [[3, 4, 5], [0, 1, 2]]}  # the second group never overlaps the first
    assert anchors["groups"] == [[3, 4, 5]]  # --group-size 3 --groups 1, for an explicit single choice
    # a setting the layers cannot hold is passed over and named, the others stay
    narrow = select_anchors(table(coral=CORAL[:4]), k=2, group_sizes=(2, 3), group_counts=(1, 2))
    assert "3x2" in narrow["group_settings_passed_over"]
    assert {(c["size"], c["count"]) for c in narrow["group_candidates"]} == {(2, 1), (2, 2), (3, 1)}
    with pytest.raises(SersError, match="must be positive numbers"):
        select_anchors(table(coral=CORAL), group_sizes=(0,))


def test_train_reads_each_methods_own_kind_from_a_both_file(tmp_path):
    from sers.classifiers.anchors import anchors_for, load_anchors
    from sers.pipeline.candidates import candidates_for

    path = tmp_path / "anchors.json"
    path.write_text(json.dumps(select_anchors(table(coral=CORAL), k=3)))
    spec = load_anchors(path, num_layers=8)
    assert anchors_for("lam", spec) == [3, 5, 7]
    lam_gl = candidates_for("lam-gl", [0.0, 1.0], [spec])
    assert [c.tag for c in lam_gl][:2] == ["lambda=0,groups=2x1", "lambda=1,groups=2x1"] and len(lam_gl) == 8
    assert {str(anchors_for("lam-gl", c.anchors)) for c in lam_gl} == {
        str(c["groups"]) for c in json.loads(path.read_text())["group_candidates"]}
    # the ablation chooses among the same groups (at λ = 0 only); lam among none
    assert [c.tag for c in candidates_for("groups-only", [0.0, 1.0], [spec])] == [
        "lambda=0,groups=2x1", "lambda=0,groups=2x2", "lambda=0,groups=3x1", "lambda=0,groups=3x2"]
    assert [c.tag for c in candidates_for("lam", [0.0, 1.0], [spec])] == ["lambda=0", "lambda=1"]
    bad = json.loads(path.read_text())
    bad["group_candidates"][0]["size"] = 3
    path.write_text(json.dumps(bad))
    with pytest.raises(SersError, match="field 'group_candidates\\[0\\]' says 3x1 but holds groups"):
        load_anchors(path)
