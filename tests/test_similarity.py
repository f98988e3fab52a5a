"""`sers similarity` on planted caches: the right layers come out on top, no label leaks."""
import csv
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib import image as plt_image
from scipy.stats import kendalltau

import sers.cache
import sers.errors
from sers.display import plots
from sers.cli import main
from sers.pipeline.similarity import compute_similarity, format_table

NUM_LAYERS, DIM = 8, 16
PLANTED = (3, 4, 5)  # layers where the target shares the source's emotion structure
CLASSES = np.array(list("NHAS"))


def planted_features(num_layers=NUM_LAYERS, dim=DIM, planted=PLANTED, sizes=(240, 200, 160), seed=0):
    """Source (train) and target (train, dev) features with labels.

    Every layer has its own class means and noise covariance for the source. At
    planted layers the target is drawn from the same class-conditional
    distribution; at the others its class means are different ones, its noise
    covariance differs and everything is shifted.
    """
    rng = np.random.default_rng(seed)
    n_s, n_t_train, n_t_dev = sizes
    labels = [CLASSES[rng.integers(0, 4, n)] for n in sizes]
    codes = [np.searchsorted(np.sort(CLASSES), y) for y in labels]
    source = np.empty((num_layers, n_s, dim))
    target = np.empty((num_layers, n_t_train + n_t_dev, dim))
    target_codes = np.concatenate(codes[1:])
    for layer in range(num_layers):
        means = rng.normal(size=(4, dim)) * 1.5
        mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
        source[layer] = means[codes[0]] + rng.normal(size=(n_s, dim)) @ mixing
        if layer not in planted:
            means = rng.normal(size=(4, dim)) * 1.5 + rng.normal(size=dim) * 2
            mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim) * rng.uniform(0.5, 2, dim)
        target[layer] = means[target_codes] + rng.normal(size=(len(target_codes), dim)) @ mixing
    return source, labels[0], target, np.concatenate(labels[1:]), (n_t_train, n_t_dev)


def write_planted(tmp_path, shuffle_target_labels=False, target_model="planted", target_layers=NUM_LAYERS,
                  suffix=".zarr"):
    source, ys, target, yt, (n_train, n_dev) = planted_features(num_layers=max(NUM_LAYERS, target_layers))
    if shuffle_target_labels:
        yt = np.random.default_rng(99).permutation(yt)
    src = tmp_path / f"source{suffix}"
    tgt = tmp_path / f"target{suffix}"
    sers.cache.from_arrays(src, source[:NUM_LAYERS], {
        "id": [f"s{i}" for i in range(len(ys))], "label": ys.tolist(), "split": ["train"] * len(ys),
        "language": ["en"] * len(ys)}, model_id="planted")
    sers.cache.from_arrays(tgt, target[:target_layers], {
        "id": [f"t{i}" for i in range(len(yt))], "label": yt.tolist(),
        "split": ["train"] * n_train + ["dev"] * n_dev, "language": ["zh"] * len(yt)}, model_id=target_model)
    return src, tgt


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_planted(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def full_result(planted, tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    return compute_similarity(*planted, out, target_labels="dev"), out


def top_layers(column, count):
    values = np.array(column["values"], float)
    order = np.argsort(values if column["direction"] == "lower" else -values, kind="stable")
    return sorted(order[:count].tolist())


def test_every_measure_ranks_the_planted_layers_on_top(full_result):
    result, _ = full_result
    assert list(result["measures"]) == ["coral", "mmd", "domain", "proxy-a-distance", "centroid-cos", "cka", "probe"]
    for name, column in result["measures"].items():
        assert len(column["values"]) == NUM_LAYERS
        assert top_layers(column, len(PLANTED)) == list(PLANTED), name
    planted, other = list(PLANTED), [l for l in range(NUM_LAYERS) if l not in PLANTED]
    values = {n: np.array(c["values"]) for n, c in result["measures"].items()}
    assert values["domain"][planted].max() < 0.65 < 0.9 < values["domain"][other].min()
    assert values["cka"][planted].min() > 0.9 and values["probe"][planted].min() > 0.8
    assert values["probe"][other].max() < 0.5


def test_matrix_forms_and_record_of_what_was_used(full_result):
    result, out = full_result
    for name in ("centroid-cos", "cka"):
        matrix = np.array(result["matrices"][name]["values"])
        assert matrix.shape == (NUM_LAYERS, NUM_LAYERS)
        np.testing.assert_allclose(np.diag(matrix), result["measures"][name]["values"], rtol=1e-12)
    assert result["classes"] == result["centroid_groups"] == ["A", "H", "N", "S"]
    assert result["labels_used"] == {"source": "train", "target": "dev"}
    assert result["source"]["n"] == 240 and result["target"]["n"] == 200
    assert result["target"]["n_labelled"] == 160 and sum(result["target"]["class_counts"].values()) == 160
    assert result["source"]["model_id"] == "planted" and result["source"]["cache"].endswith("source.zarr")
    assert result["skipped"] == {} and result["sers_version"]
    on_disk = json.loads((out / "similarity.json").read_text())
    assert on_disk["measures"]["cka"]["values"] == pytest.approx(result["measures"]["cka"]["values"])
    rows = list(csv.reader((out / "similarity.csv").open()))
    assert rows[0] == ["layer", *result["measures"]]
    assert [int(r[0]) for r in rows[1:]] == list(range(NUM_LAYERS))
    assert float(rows[4][1]) == result["measures"]["coral"]["values"][3]
    for png in ("similarity.png", "similarity_centroid-cos.png", "similarity_cka.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = format_table(result).splitlines()
    layer_rows = [line for line in table if line.split()[0].isdigit()]
    assert len(layer_rows) == NUM_LAYERS and "coral" in table[0] and "1=" in table[2 + PLANTED[0]]
    # the planted probe reaches UAR 1.0 at several layers: shown as a tie, explained under the table
    probe = result["measures"]["probe"]["values"]
    if probe.count(max(probe)) > 1:
        assert "= layers tied for best: the measure cannot choose between them" in table


def test_without_target_labels_label_aware_measures_are_skipped(planted, tmp_path):
    result = compute_similarity(*planted, tmp_path, measures_wanted=["coral", "cka", "probe"])
    assert list(result["measures"]) == ["coral"]
    assert set(result["skipped"]) == {"cka", "probe"} and "--target-labels" in result["skipped"]["cka"]
    assert result["labels_used"]["target"] is None and "class_counts" not in result["target"]
    assert result["matrices"] == {} and not (tmp_path / "similarity_cka.png").exists()


def test_shuffled_target_labels_change_no_output_byte(tmp_path):
    def run(shuffle):
        caches = write_planted(tmp_path / "caches", shuffle_target_labels=shuffle)  # same paths each time
        out = tmp_path / f"out-{shuffle}"
        compute_similarity(*caches, out)
        with_labels = compute_similarity(*caches, measures_wanted=["cka", "probe"], target_labels="dev")
        return {p.name: p.read_bytes() for p in sorted(out.iterdir())}, with_labels["measures"]

    (plain, plain_labelled), (shuffled, shuffled_labelled) = run(False), run(True)
    assert sorted(plain) == ["similarity.csv", "similarity.json", "similarity.png"]
    assert plain == shuffled
    # the same check can fail: with a labelled target split the label-aware values move
    assert plain_labelled["cka"]["values"] != shuffled_labelled["cka"]["values"]
    assert plain_labelled["probe"]["values"] != shuffled_labelled["probe"]["values"]


def test_max_utterances_is_a_seeded_sample(planted, tmp_path):
    a = compute_similarity(*planted, measures_wanted=["coral", "mmd"], max_utterances=50, seed=1)
    b = compute_similarity(*planted, measures_wanted=["coral", "mmd"], max_utterances=50, seed=1)
    c = compute_similarity(*planted, measures_wanted=["coral", "mmd"], max_utterances=50, seed=2)
    assert a["source"]["n"] == a["target"]["n"] == 50 and a["max_utterances"] == 50
    assert a["measures"] == b["measures"] and a["measures"] != c["measures"]


def test_hdf5_caches_and_layer_subset(tmp_path):
    caches = write_planted(tmp_path, suffix=".h5")
    result = compute_similarity(*caches, measures_wanted=["mmd"], layers=[5, 1])
    assert result["layers"] == [1, 5]
    assert result["measures"]["mmd"]["values"][1] < result["measures"]["mmd"]["values"][0]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_writes_outputs_and_prints_the_table(planted, tmp_path):
    # (these caches name no speakers: with the default --speaker-norm auto a note says so; tests/test_speakers.py)
    run = cli("similarity", *planted, "-o", tmp_path / "sim", "--measures", "coral,domain", "--speaker-norm", "off")
    assert run.exit_code == 0, run.output
    assert "proxy-a-distance" in run.output and "note: " not in run.output
    assert (tmp_path / "sim" / "similarity.json").exists()
    run = cli("similarity", *planted, "-o", tmp_path / "sim2", "--measures", "coral,cka")
    assert run.exit_code == 0 and "note: skipped cka: needs --target-labels" in run.output


@pytest.mark.parametrize("kind", ["model", "layers"])
def test_cli_refuses_caches_of_different_models(tmp_path, kind):
    options = {"target_model": "other-model"} if kind == "model" else {"target_layers": NUM_LAYERS + 2}
    caches = write_planted(tmp_path, **options)
    run = cli("similarity", *caches, "-o", tmp_path / "sim")
    assert run.exit_code == 1
    expected = "model_id is 'planted'" if kind == "model" else f"num_layers is {NUM_LAYERS}"
    assert run.output.startswith("error: caches come from different models") and expected in run.output
    assert "Traceback" not in run.output and not (tmp_path / "sim").exists()


def test_cli_error_messages(planted, tmp_path):
    cases = [
        (["--level", "segment"], "this cache has no vowel segments; extract with --alignments"),
        (["--source-split", "nope"], "no utterances in split 'nope' (splits: train)"),
        (["--target-labels", "analysis", "--measures", "cka"], "no utterances in split 'analysis' (splits: dev, train)"),
        (["--target-labels", "test", "--measures", "cka"], "--target-labels test: the test split must never guide"),
        (["--measures", "coral,kl"], "unknown measure(s) kl; choose from coral, mmd, domain"),
        (["--layers", "2,40"], "layers [40] are not stored in both caches (stored: 0-7)"),
    ]
    for options, message in cases:
        run = cli("similarity", *planted, "-o", tmp_path / "sim", *options)
        assert run.exit_code == 1 and message in run.output, (options, run.output)
    run = cli("similarity", planted[0], tmp_path / "missing.zarr", "-o", tmp_path / "sim")
    assert run.exit_code == 1 and "missing.zarr: no such cache" in run.output


def test_unfinished_cache_is_refused(planted, tmp_path):
    copy = tmp_path / "target.zarr"
    shutil.copytree(planted[1], copy)
    with sers.cache.CacheWriter.resume(copy) as writer:
        writer.set_attrs(complete=False)
    run = cli("similarity", planted[0], copy, "-o", tmp_path / "sim")
    assert run.exit_code == 1 and "extraction is not finished" in run.output


def test_label_aware_measures_use_the_shared_classes_only(tmp_path):
    rng = np.random.default_rng(3)

    def cache(name, labels, split):
        n = len(labels)
        return sers.cache.from_arrays(tmp_path / name, rng.normal(size=(2, n, 4)), {
            "id": [f"{name}{i}" for i in range(n)], "label": labels, "split": [split] * n}, model_id="m")

    src = cache("s.zarr", list("NHAS") * 10, "train")
    tgt = cache("t.zarr", list("NHX") * 10, "train")
    result = compute_similarity(src, tgt, measures_wanted=["centroid-cos", "probe"], target_labels="train")
    assert result["classes"] == ["H", "N"] and result["target"]["class_counts"] == {"H": 10, "N": 10}
    assert "source classes ['A', 'S'] are not in the other corpus" in " ".join(result["notes"])
    assert "target classes ['X'] are not in the other corpus" in " ".join(result["notes"])
    assert len(result["measures"]["probe"]["values"]) == 2
    tgt = cache("t1.zarr", list("NX") * 10, "train")
    result = compute_similarity(src, tgt, measures_wanted=["cka"], target_labels="train")
    assert result["measures"] == {} and "share fewer than 2 classes" in result["skipped"]["cka"]


def write_segment_cache(path, columns, pooled, segments, segment_layers):
    """A cache with aligned vowel segments: ``segments[row]`` is (the row's vowel classes,
    their features (len(segment_layers), s, D))."""
    writer = sers.cache.CacheWriter.create(path, columns, num_layers=pooled.shape[0], hidden_size=pooled.shape[2],
                                           segment_layers=segment_layers, model_id="planted", overwrite=True)
    with writer:
        for row, (vowels, features) in enumerate(segments):
            edges = np.arange(len(vowels) + 1)
            segment_columns = {"start_frame": 5 * edges[:-1], "end_frame": 5 * edges[1:], "start": 0.1 * edges[:-1],
                               "end": 0.1 * edges[1:], "phone": [f"{v.upper()}1" for v in vowels], "vowel": vowels}
            writer.add(row, {"mean": pooled[:, row].astype(np.float32)},
                       segments=(segment_columns, features.astype(np.float32)))
        writer.finish()
    return path


def write_with_segments(path, pooled, columns, segment_layers, vowel_offsets, seed):
    """A cache whose utterances each hold an 'a' and an 'i' segment: the utterance's
    features plus a per-layer vowel offset (shared by both languages) plus noise."""
    rng = np.random.default_rng(seed)
    segments = []
    for row in range(pooled.shape[1]):
        features = pooled[segment_layers, row][:, None, :] + vowel_offsets[segment_layers]
        segments.append((["a", "i"], features + rng.normal(scale=0.1, size=features.shape)))
    return write_segment_cache(path, columns, pooled, segments, segment_layers)


def test_segment_level_compares_emotion_by_vowel_centroids(tmp_path):
    source, ys, target, yt, (n_train, n_dev) = planted_features()
    offsets = np.random.default_rng(5).normal(size=(NUM_LAYERS, 2, DIM))
    stored = [2, 3, 4, 5, 6]
    src = write_with_segments(tmp_path / "s.zarr", source, {"id": [f"s{i}" for i in range(len(ys))], "label": ys,
                              "split": ["train"] * len(ys)}, stored, offsets, seed=1)
    tgt = write_with_segments(tmp_path / "t.h5", target, {"id": [f"t{i}" for i in range(len(yt))], "label": yt,
                              "split": ["train"] * n_train + ["dev"] * n_dev}, stored, offsets, seed=2)
    result = compute_similarity(src, tgt, level="segment", target_labels="dev")
    assert result["level"] == "segment" and result["layers"] == stored
    assert result["centroid_groups"] == [f"{e}/{v}" for e in "AHNS" for v in "ai"]
    assert result["source"]["n"] == 2 * len(ys) and result["target"]["n_labelled"] == 2 * n_dev
    for name, column in result["measures"].items():
        ranked = top_layers(column, len(PLANTED))
        assert [stored[i] for i in ranked] == list(PLANTED), name
    with pytest.raises(sers.errors.SersError, match=r"layers \[0\] are not stored in both caches \(stored: 2-6\)"):
        compute_similarity(src, tgt, level="segment", layers=[0, 3])


# -- per vowel class -------------------------------------------------------------------------

SEGMENT_LAYERS = 6
VOWEL_PLANTED = {"a": [2, 3], "i": [4, 5], "u": [0, 1]}  # where each vowel's target matches its source


def write_vowel_planted(tmp_path, shuffle_target_labels=False, sizes=(150, 120, 100), seed=0):
    """Source (train) and target (train, dev) caches; every utterance holds one a, i and u segment.

    Per vowel and layer, the source's segments come from emotion means plus mixed noise of
    their own. At the vowel's planted layers the target's segments come from the same
    distribution; at the others from other means and noise, shifted. The first 4 source
    utterances also hold an 'o' the target never has (too few to compare)."""
    rng = np.random.default_rng(seed)
    labels = [CLASSES[rng.integers(0, 4, n)] for n in sizes]
    codes = [np.searchsorted(np.sort(CLASSES), y) for y in labels]
    source_codes, target_codes = codes[0], np.concatenate(codes[1:])
    features = {"source": {}, "target": {}}  # side -> vowel -> (layers, n, D)
    for vowel, planted in VOWEL_PLANTED.items():
        source, target = np.empty((2, SEGMENT_LAYERS), object)
        for layer in range(SEGMENT_LAYERS):
            means = rng.normal(size=(4, DIM)) * 1.5
            mixing = rng.normal(size=(DIM, DIM)) / np.sqrt(DIM)
            source[layer] = means[source_codes] + rng.normal(size=(len(source_codes), DIM)) @ mixing
            if layer not in planted:
                means = rng.normal(size=(4, DIM)) * 1.5 + rng.normal(size=DIM) * 2
                mixing = rng.normal(size=(DIM, DIM)) / np.sqrt(DIM) * rng.uniform(0.5, 2, DIM)
            target[layer] = means[target_codes] + rng.normal(size=(len(target_codes), DIM)) @ mixing
        features["source"][vowel], features["target"][vowel] = np.stack(source), np.stack(target)
    rare = rng.normal(size=(SEGMENT_LAYERS, 4, DIM))

    def segments(side, n):
        rows = []
        for row in range(n):
            vowels = list(VOWEL_PLANTED) + (["o"] if side == "source" and row < 4 else [])
            stacked = [features[side][v][:, row] for v in VOWEL_PLANTED] + ([rare[:, row]] if len(vowels) > 3 else [])
            rows.append((vowels, np.stack(stacked, axis=1)))
        return rows

    ys, yt = labels[0], np.concatenate(labels[1:])
    if shuffle_target_labels:
        yt = np.random.default_rng(99).permutation(yt)
    pooled = [np.zeros((SEGMENT_LAYERS, len(y), DIM)) for y in (ys, yt)]  # not read at segment level
    src = write_segment_cache(tmp_path / "source.zarr", {"id": [f"s{i}" for i in range(len(ys))], "label": ys,
                              "split": ["train"] * len(ys)}, pooled[0], segments("source", len(ys)),
                              list(range(SEGMENT_LAYERS)))
    tgt = write_segment_cache(tmp_path / "target.h5", {"id": [f"t{i}" for i in range(len(yt))], "label": yt,
                              "split": ["train"] * sizes[1] + ["dev"] * sizes[2]}, pooled[1],
                              segments("target", len(yt)), list(range(SEGMENT_LAYERS)))
    return src, tgt


@pytest.fixture(scope="module")
def vowel_planted(tmp_path_factory):
    return write_vowel_planted(tmp_path_factory.mktemp("vowels"))


def test_per_vowel_measures_rank_each_vowels_planted_layers(vowel_planted, tmp_path):
    result = compute_similarity(*vowel_planted, tmp_path, level="segment", target_labels="dev")
    assert list(result["per_vowel"]) == ["a", "i", "u"]
    for vowel, columns in result["per_vowel"].items():
        assert list(columns) == list(result["measures"])  # every measure, label-aware ones included
        for name, values in columns.items():
            assert len(values) == SEGMENT_LAYERS
            column = {"values": values, "direction": result["measures"][name]["direction"]}
            assert top_layers(column, 2) == VOWEL_PLANTED[vowel], (vowel, name)
    assert result["vowel_counts"] == {
        **{v: {"source": 150, "target": 120, "target_labelled": 100} for v in "aiu"},
        "o": {"source": 4, "target": 0, "target_labelled": 0}}
    assert ("per-vowel measures skip vowel 'o': 4 source and 0 target segments (need at least 10 on each side)"
            in result["notes"])
    # the top level still pools every vowel, centroids per emotion x vowel ('o' has no target side)
    assert result["centroid_groups"] == [f"{e}/{v}" for e in "AHNS" for v in "aiu"]
    assert len(result["measures"]["coral"]["values"]) == SEGMENT_LAYERS

    on_disk = json.loads((tmp_path / "similarity.json").read_text())
    assert {v: {m: len(vals) for m, vals in c.items()} for v, c in on_disk["per_vowel"].items()} == \
        {v: {m: SEGMENT_LAYERS for m in result["measures"]} for v in "aiu"}
    image = plt_image.imread(tmp_path / "similarity_per_vowel.png")
    assert image.ndim == 3 and image.shape[1] > image.shape[0] > 400 and image.std() > 0.05
    lines = format_table(result).splitlines()
    assert_best_per_vowel(lines[lines.index("best layer per vowel class:") + 1:], list(result["measures"]))


def assert_best_per_vowel(lines, names):
    """Lines like '  coral            a 3   i 5=6   u 0': each vowel's best layer (all of them, when
    several tie) is one of its planted ones."""
    assert [line.split()[0] for line in lines] == names
    for line in lines:
        pairs = line.split()[1:]
        best = {vowel: [int(layer) for layer in tied.split("=")] for vowel, tied in zip(pairs[::2], pairs[1::2])}
        assert list(best) == list(VOWEL_PLANTED) and all(set(best[v]) <= set(VOWEL_PLANTED[v]) for v in best), line


def test_vowel_curves_are_deterministic_and_skip_missing_measures(tmp_path):
    per_vowel = {"a": {"coral": [3.0, 1.0, None], "cka": [0.1, 0.9, 0.5]}, "i": {"coral": [0.5, 2.0, 1.0]}}
    paths = [plots.vowel_curves([0, 1, 2], per_vowel, tmp_path / f"{i}.png", directions={"coral": "lower",
             "cka": "higher"}, title="x") for i in range(2)]
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert plt_image.imread(paths[0]).shape[2] == 4


def test_segment_level_outputs_read_no_target_label(tmp_path):
    def run(shuffle):
        caches = write_vowel_planted(tmp_path / "caches", shuffle_target_labels=shuffle)  # same paths each time
        out = tmp_path / f"out-{shuffle}"
        compute_similarity(*caches, out, level="segment", measures_wanted=["coral", "mmd", "centroid-cos"])
        labelled = compute_similarity(*caches, level="segment", measures_wanted=["centroid-cos"],
                                      target_labels="dev")
        return {p.name: p.read_bytes() for p in sorted(out.iterdir())}, labelled["per_vowel"]

    (plain, plain_labelled), (shuffled, shuffled_labelled) = run(False), run(True)
    assert sorted(plain) == ["similarity.csv", "similarity.json", "similarity.png", "similarity_per_vowel.png"]
    assert plain == shuffled
    # the check can fail: with a labelled target split the per-vowel centroid cosines move
    for vowel in "aiu":
        assert plain_labelled[vowel]["centroid-cos"] != shuffled_labelled[vowel]["centroid-cos"]


def test_cli_prints_the_best_layer_per_vowel(vowel_planted, tmp_path):
    run = cli("similarity", *vowel_planted, "-o", tmp_path, "--level", "segment", "--measures", "coral")
    assert run.exit_code == 0, run.output
    lines = run.output.splitlines()
    start = lines.index("best layer per vowel class:") + 1
    assert_best_per_vowel(lines[start:start + 1], ["coral"])
    assert "note: per-vowel measures skip vowel 'o'" in run.output and "similarity_per_vowel.png" in run.output


def test_per_vowel_label_aware_measures_need_enough_labelled_segments(tmp_path):
    caches = write_vowel_planted(tmp_path, sizes=(150, 120, 8))
    result = compute_similarity(*caches, level="segment", measures_wanted=["coral", "centroid-cos"],
                                target_labels="dev")
    assert list(result["measures"]) == ["coral", "centroid-cos"]  # pooled over vowels: 24 labelled segments
    assert {vowel: list(columns) for vowel, columns in result["per_vowel"].items()} == \
        {vowel: ["coral"] for vowel in "aiu"}
    assert result["vowel_counts"]["a"] == {"source": 150, "target": 120, "target_labelled": 8}
    assert any(note.startswith("per-vowel centroid-cos skip vowel 'a': 8 labelled target segments of")
               and note.endswith("(need at least 10 segments of 2 classes)") for note in result["notes"])


def test_an_earlier_similarity_is_refused_unless_overwrite(planted, tmp_path):
    assert cli("similarity", *planted, "-o", tmp_path / "sim", "--measures", "mmd", "--quiet").exit_code == 0
    before = (tmp_path / "sim" / "similarity.json").read_bytes()
    run = cli("similarity", *planted, "-o", tmp_path / "sim", "--measures", "coral")
    assert run.exit_code == 1
    assert f"error: {tmp_path / 'sim' / 'similarity.json'} exists: pass --overwrite to replace it" in run.output
    assert (tmp_path / "sim" / "similarity.json").read_bytes() == before
    run = cli("similarity", *planted, "-o", tmp_path / "sim", "--measures", "coral", "--overwrite")
    assert run.exit_code == 0, run.output
    assert list(json.loads((tmp_path / "sim" / "similarity.json").read_text())["measures"]) == ["coral"]
    with pytest.raises(sers.errors.SersError, match="similarity.json exists: pass --overwrite"):
        compute_similarity(*planted, tmp_path / "sim", measures_wanted=["mmd"])
    (tmp_path / "empty").mkdir()  # an empty folder holds no result: nothing to refuse
    assert compute_similarity(*planted, tmp_path / "empty", measures_wanted=["mmd"])["files"]


def test_the_result_summary_is_what_the_command_prints(planted, tmp_path):
    result = compute_similarity(*planted, tmp_path / "sim", measures_wanted=["coral", "cka"], speaker_norm="off")
    lines = result.summary().splitlines()
    assert "\n".join(lines[:len(lines) - 2]) == format_table(result)
    assert lines[-2].startswith("note: skipped cka") and lines[-1] == f"wrote {', '.join(result['files'])}"


def test_a_new_measure_is_one_entry(planted, tmp_path, monkeypatch):
    """The recipe of docs/architecture.md: a Measure and its function, nothing else (the name
    lists below are derived from MEASURES when the module loads; patched here as editing it would)."""
    from sers.analysis import measures

    def mean_gap(source, target, centre, scale) -> float:
        return float(np.abs((source.mean - target.mean) / scale).mean())

    entry = measures.Measure("mean-gap", "lower", True, "mean absolute gap of the standardised means", "stats", mean_gap)
    monkeypatch.setitem(measures.MEASURES, "mean-gap", entry)
    monkeypatch.setattr(measures, "MEASURE_NAMES", measures.MEASURE_NAMES + ("mean-gap",))
    monkeypatch.setattr(measures, "LABEL_FREE", measures.LABEL_FREE + ("mean-gap",))
    result = compute_similarity(*planted, tmp_path, measures_wanted=["coral", "mean-gap"])
    column = result["measures"]["mean-gap"]
    assert column["direction"] == "lower" and column["label_free"] is True
    coral = np.array(result["measures"]["coral"]["values"])  # one value per layer, as a built-in column
    assert len(column["values"]) == len(coral) and all(v > 0 for v in column["values"])
    with open(tmp_path / "similarity.csv") as handle:
        assert "mean-gap" in next(csv.reader(handle))


# -- label-free measures after per-speaker standardisation (issue 23) -----------------------------

def correlated_rows(rng, n, dim, strength):
    """Mean 0, unit variance per dimension; dimensions 2j and 2j-1 correlated by ``strength``."""
    z = rng.normal(size=(n, dim))
    mixed = np.sqrt(1 - strength ** 2) * z + strength * np.roll(z, 1, axis=1)
    mixed[:, 1::2] = z[:, 1::2]
    return mixed


def write_speaker_caches(tmp_path, gap_per_layer, num_layers=6, speakers=(5, 5), per_speaker=60, dim=8, seed=0):
    """Source and target caches whose utterances name their speaker (so `--speaker-norm auto`
    standardises them); each speaker has a voice offset of its own; the target's correlation
    gap from the source is ``gap_per_layer`` x the layer. Means and per-dimension variances are
    then equal by construction after standardisation: only the correlations differ."""
    rng = np.random.default_rng(seed)
    paths = []
    for side, count, gap in (("source", speakers[0], 0.0), ("target", speakers[1], gap_per_layer)):
        who = np.repeat(np.arange(count), per_speaker)
        features = np.stack([correlated_rows(rng, len(who), dim, gap * layer) + rng.normal(size=(count, dim))[who]
                             for layer in range(num_layers)])
        paths.append(sers.cache.from_arrays(tmp_path / f"{side}.zarr", features, {
            "id": [f"{side}{i}" for i in range(len(who))], "label": CLASSES[rng.integers(0, 4, len(who))].tolist(),
            "split": ["train"] * len(who), "speaker": [f"{side}-v{w}" for w in who]}, model_id="planted"))
    return paths


def chance_margin(n_s, n_t):
    return 3 * 0.25 * np.sqrt(1 / n_s + 1 / n_t)  # 3 standard errors of a balanced accuracy at chance


def test_one_distribution_standardised_per_speaker_scores_chance_not_below(tmp_path):
    result = compute_similarity(*write_speaker_caches(tmp_path, 0.0), tmp_path / "sim")
    assert result["speaker_standardised"] is True
    assert result["domain_folds"] == {"n_folds": 5, "grouped_by": "speaker",
                                      "scored_rows": {"most_per_side": 5000, "source": 300, "target": 300}}
    values = {name: np.array(column["values"]) for name, column in result["measures"].items()}
    margin = chance_margin(300, 300)
    assert np.all(np.abs(values["domain"] - 0.5) < margin), values["domain"]  # the old folds gave ~0.3
    assert np.all((values["proxy-a-distance"] >= 0) & (values["proxy-a-distance"] <= 4 * margin))
    assert np.all(np.abs(values["mmd"]) < 1e-3), values["mmd"]  # unbiased: around 0, not -1/(rows per speaker)
    assert not any(problem.startswith("outside") for problem in result["cannot_rank"].values())


def test_planted_layer_order_is_recovered_after_standardisation_and_the_measures_agree(tmp_path):
    result = compute_similarity(*write_speaker_caches(tmp_path, 0.15), tmp_path / "sim")
    assert result["speaker_standardised"] is True and result["cannot_rank"] == {}
    layers = np.array(result["layers"])
    for name in ("coral", "mmd", "domain", "proxy-a-distance"):
        values = np.array(result["measures"][name]["values"])  # all "lower is more alike": rising with the gap
        assert kendalltau(layers, values).statistic > 0.85, (name, values)
    pairs = {tuple(pair["measures"]): pair for pair in result["agreement"]}
    assert set(pairs) == {("coral", "mmd"), ("coral", "domain"), ("mmd", "domain")}
    assert all(pair["tau"] > 0.7 and pair["layers"] == len(layers) for pair in pairs.values())
    on_disk = json.loads((tmp_path / "sim" / "similarity.json").read_text())
    assert on_disk["agreement"] == result["agreement"] and on_disk["cannot_rank"] == {}
    assert on_disk["mmd_rows"] == {"most_per_side": 1000, "source": 300, "target": 300}
    line = next(line for line in result.summary().splitlines() if line.startswith("layer orders agree"))
    assert "coral/mmd +" in line and "mmd/domain +" in line


def test_fewer_speakers_than_folds_and_a_single_speaker(tmp_path):
    result = compute_similarity(*write_speaker_caches(tmp_path / "a", 0.1, speakers=(3, 4)), measures_wanted=["domain"])
    assert result["domain_folds"]["n_folds"] == 3 and result["domain_folds"]["grouped_by"] == "speaker"
    assert "domain: 3 folds of whole speakers (a side has 3 speakers), not 5" in result["notes"]
    caches = write_speaker_caches(tmp_path / "b", 0.1, speakers=(1, 4), per_speaker=100)
    result = compute_similarity(*caches, measures_wanted=["coral", "domain"])
    assert list(result["measures"]) == ["coral"] and "fewer than 2 speakers" in result["skipped"]["domain"]
    # not standardised, the rows themselves can make the folds
    result = compute_similarity(*caches, measures_wanted=["domain"], speaker_norm="off")
    assert result["domain_folds"]["n_folds"] == 5 and result["domain_folds"]["grouped_by"] == "row"


def test_a_measure_that_cannot_rank_is_named_and_not_plotted(planted, tmp_path, monkeypatch):
    from sers.analysis import measures
    from sers.pipeline import similarity_outputs

    def constant(source, target, centre, scale) -> float:
        return 1e-15  # as a difference of means after per-speaker standardisation

    entry = measures.Measure("flat", "lower", True, "constant by construction", "stats", constant, bounds=(0.0, None))
    monkeypatch.setitem(measures.MEASURES, "flat", entry)
    monkeypatch.setattr(measures, "MEASURE_NAMES", measures.MEASURE_NAMES + ("flat",))
    monkeypatch.setattr(measures, "LABEL_FREE", measures.LABEL_FREE + ("flat",))
    drawn = []
    real_curves = similarity_outputs.plots.layer_curves
    monkeypatch.setattr(similarity_outputs.plots, "layer_curves",
                        lambda layers, values, *a, **k: drawn.append(list(values)) or real_curves(layers, values, *a, **k))
    result = compute_similarity(*planted, tmp_path, measures_wanted=["coral", "flat"])
    assert result["cannot_rank"] == {"flat": "constant: 1e-15 at every layer"}
    assert drawn == [["coral"]]
    assert "flat cannot rank layers (constant: 1e-15 at every layer): it chooses no anchors and is not plotted" \
        in format_table(result)
    assert all(pair["measures"] != ["coral", "flat"] for pair in result["agreement"])
    # an old table whose proxy A-distance went negative: outside its range, so named too
    old = dict(result, measures={"proxy-a-distance": {"direction": "lower", "values": [-1.4, -1.5]}}, layers=[0, 1],
               agreement=[])
    assert "proxy-a-distance cannot rank layers (outside its range [0, 2]: -1.4 and 1 more)" in format_table(old)


def test_a_negative_mmd_is_shown_and_explained(planted):
    result = compute_similarity(*planted, measures_wanted=["mmd"])
    values = result["measures"]["mmd"]["values"]
    negative = [layer for layer, value in zip(result["layers"], values) if value < 0]
    assert negative and set(negative) <= set(PLANTED)  # where the target is drawn as the source is
    assert min(values) > -0.01 and result["cannot_rank"] == {}
    table = format_table(result)
    assert f"{min(values):.4g}" in table  # shown as computed
    assert (f"mmd < 0 at layers {', '.join(map(str, negative))}: an unbiased estimate of 0 (no difference) falls "
            "below it about half the time; read as 0") in table


def test_the_report_draws_no_measure_that_cannot_rank(tmp_path, monkeypatch):
    from sers.report import context

    drawn = {}
    monkeypatch.setattr(context.report_figures, "anchored_curves",
                        lambda layers, values, path, **options: drawn.update(values) or path)
    monkeypatch.setattr(context.plots, "layer_heatmap", lambda matrix, path, **options: drawn.update(heat=path) or path)
    similarity = {"layers": [0, 1, 2], "source": {}, "target": {}, "matrices": {}, "measures": {
        "coral": {"direction": "lower", "values": [0.3, 0.1, 0.2]},
        "mmd": {"direction": "lower", "values": [1.8e-15, 2.0e-15, 1.7e-15]},
        "proxy-a-distance": {"direction": "lower", "values": [-1.38, -1.47, -1.53]}}}
    section = context.similarity_section(similarity, None, None, tmp_path)
    assert list(drawn) == ["coral"]
    text = " ".join(getattr(block, "text", "") for block in section.blocks)
    assert "Not plotted, as they cannot rank layers: mmd (constant" in text and "proxy-a-distance (outside" in text


def test_below_chance_with_few_speakers_of_two_kinds_is_explained(tmp_path):
    """Voices of two kinds alternating (as the benchmark corpus's female and male voices): folds of
    whole speakers still score one population below chance, and a note says why."""
    rng = np.random.default_rng(1)
    dim, per_speaker = 32, 60
    kinds = [np.eye(dim) + 0.5 * rng.normal(size=(dim, dim)) / np.sqrt(dim) for _ in range(2)]
    paths = []
    for side in ("source", "target"):
        features = np.stack([np.concatenate([rng.normal(size=(per_speaker, dim)) @ kinds[i % 2] for i in range(6)])
                             for _ in range(3)])
        paths.append(sers.cache.from_arrays(tmp_path / f"{side}.zarr", features, {
            "id": [f"{side}{i}" for i in range(6 * per_speaker)], "label": ["N"] * (6 * per_speaker),
            "split": ["train"] * (6 * per_speaker), "speaker": [f"v{i}" for i in range(6) for _ in range(per_speaker)]},
            model_id="planted"))
    result = compute_similarity(*paths, measures_wanted=["domain"])
    assert max(result["measures"]["domain"]["values"]) < 0.44
    assert any(note.startswith("domain is below chance (under 0.444, 3 standard errors) at layers 0, 1, 2: a side "
                               "has only 6 speakers") for note in result["notes"]), result["notes"]
