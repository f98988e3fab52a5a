"""`sers report`: a self-contained HTML page and its Markdown twin, from the other stages' outputs.

The caches, similarity and anchors come from the real functions (tiny planted data); the run
folders are written here in the format of `sers train` with metrics from the real metrics
code, with predictions planted so that each method's target UAR is known in advance.
"""
import base64
import html
import io
import json
import re
import shutil
import subprocess
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import sers.cache
from sers.analysis.metrics import classification_metrics
from sers.cli import main
from sers.errors import SersError
from sers.pipeline.anchor import select_anchors, write_anchors
from sers.pipeline.report import write_report
from sers.pipeline.similarity import compute_similarity
from sers.report.inputs import describe_anchors, metrics_at

CLASSES = ["A", "H", "N", "S"]
# Share of correct target predictions per class; seed s adds 3 points per seed.
SKILL = {"last": 0.30, "wsum": 0.40, "coral": 0.50, "lam": 0.60, "lam-gl": 0.70}
SEEDS = (0, 1, 2)
TARGET_SELECTED_SKILL = 0.90  # better than all, but selected on target labels: never the bold one
TABLE_ORDER = ["last", "wsum", "coral", "dann", "lam", "lam (target-selected)", "lam-gl"]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def planted_predictions(truth: np.ndarray, skill: float) -> np.ndarray:
    """In each class the first round(skill * n) are right, the others go to the next class."""
    predicted = truth.copy()
    for c, name in enumerate(CLASSES):
        rows = np.flatnonzero(truth == name)
        wrong = rows[int(round(skill * len(rows))):]
        predicted[wrong] = CLASSES[(c + 1) % len(CLASSES)]
    return predicted


def write_run(folder: Path, config: dict | None, metrics: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))


def make_caches(root: Path):
    rng = np.random.default_rng(0)

    def cache(path, language, splits):
        n = sum(splits.values())
        return sers.cache.from_arrays(path, rng.normal(size=(6, n, 8)), {
            "id": [f"{language}{i}" for i in range(n)], "label": [CLASSES[i % 4] for i in range(n)],
            "split": [s for s, k in splits.items() for _ in range(k)], "speaker": [f"spk{i % 3}" for i in range(n)],
            "language": [language] * n, "duration": [2.0] * n}, model_id="planted", sample_rate=16000, frame_rate=50)

    return cache(root / "en.zarr", "en", {"train": 40, "dev": 12}), cache(root / "zh.h5", "zh", {"train": 32, "dev": 12, "test": 40})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    source, target = make_caches(root)
    similarity = compute_similarity(source, target, root / "sim", target_labels="dev",
                                    measures_wanted=["coral", "mmd", "cka"])
    anchors = select_anchors(similarity, strategy="group", group_size=2, similarity_file=root / "sim" / "similarity.json")
    write_anchors(anchors, root / "anchors.json")

    truth = np.array([CLASSES[i % 4] for i in range(40)])  # the target test split
    dev_truth = np.array([CLASSES[i % 4] for i in range(12)])
    runs = root / "runs"
    command = ["sers", "train", "--source", str(source), "--target", str(target), "--method",
               "last,wsum,coral,lam,lam-gl", "--anchors", str(root / "anchors.json"), "--seeds", "0-2", "-o", str(runs)]
    expected = {}
    plan = [(m, s, seed, None) for m, s in SKILL.items() for seed in SEEDS] + [("lam", TARGET_SELECTED_SKILL, 0, "dev")]
    for method, skill, seed, target_dev in plan:
        skill += 0.03 * seed
        metrics = {"source_dev": classification_metrics(dev_truth, planted_predictions(dev_truth, 0.9), CLASSES),
                   "target_test": classification_metrics(truth, planted_predictions(truth, skill), CLASSES)}
        config = {"method": method, "seed": seed, "source": str(source), "target": str(target), "lambda": 1.0,
                  "anchors": anchors["groups"] if method == "lam-gl" else anchors["layers"], "target_dev": target_dev,
                  "command": command, "versions": {"torch": "2.13.0+cpu", "sers": "0.1.0"}}
        label = method + (" (target-selected)" if target_dev else "")
        write_run(runs / f"{method}{'_targetdev' if target_dev else ''}_seed{seed}", config, metrics)
        expected.setdefault(label, []).append(metrics)
    # An older layout: no config.json, metrics nested by side and split; method and seed from the folder name.
    dann = {"target": {"test": classification_metrics(truth, planted_predictions(truth, 0.45), CLASSES)},
            "source": {"dev": classification_metrics(dev_truth, dev_truth, CLASSES)}}
    write_run(runs / "dann-seed7", None, {"metrics": dann})
    expected["dann"] = [{"target_test": dann["target"]["test"], "source_dev": dann["source"]["dev"]}]
    # `sers evaluate` writes RUN/evaluations/NAME/metrics.json: an evaluation of a run, not a run
    write_run(runs / "lam_seed0" / "evaluations" / "zh-dev", None, {"metrics": dann["target"]["test"]})
    (runs / "wsum_seed9").mkdir()  # unfinished: a config but no metrics yet
    (runs / "wsum_seed9" / "config.json").write_text(json.dumps({"method": "wsum", "seed": 9}))

    html_path, md_path = write_report(runs, root / "out" / "report.html", similarity_dir=root / "sim",
                                      anchors=root / "anchors.json")
    return {"root": root, "html": html_path, "md": md_path, "expected": expected, "anchors": anchors,
            "text": html_path.read_text(), "markdown": md_path.read_text(), "command": command}


class Tables(HTMLParser):
    """Each <table> as rows of (text, bold) cells; every <img> src; the <h1> text."""

    def __init__(self, text):
        super().__init__()
        self.tables, self.images, self.h1, self._cell, self._bold, self._in_h1 = [], [], "", None, False, False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._bold = "", False
        elif tag == "strong":
            self._bold = True
        elif tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag == "h1":
            self._in_h1 = True

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append((self._cell, self._bold))
            self._cell = None
        elif tag == "h1":
            self._in_h1 = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._in_h1:
            self.h1 += data

    def table(self, first_header: str, column: str | None = None) -> list[list]:
        for table in self.tables:
            header = [text for text, _ in table[0]]
            if header[0] == first_header and (column is None or column in header):
                return table
        raise AssertionError(f"no table starting with {first_header!r}")


def mean_std_text(evaluations, split="target_test", key="uar"):
    values = np.array([e[split][key] for e in evaluations])
    return f"{100 * values.mean():.2f} ± {100 * values.std(ddof=1):.2f}" if len(values) > 1 else f"{100 * values[0]:.2f}"


def test_results_table_has_every_method_with_the_numbers_of_its_run_files(inputs):
    table = Tables(inputs["text"]).table("Method", "Target UAR")
    header = [text for text, _ in table[0]]
    rows = {row[0][0]: [text for text, _ in row] for row in table[1:]}
    assert [row[0][0] for row in table[1:]] == TABLE_ORDER
    for label, evaluations in inputs["expected"].items():
        row = rows[label]
        assert row[header.index("Target UAR")] == mean_std_text(evaluations)
        assert row[header.index("Target macro-F1")] == mean_std_text(evaluations, key="macro_f1")
        assert row[header.index("Source-dev UAR")] == mean_std_text(evaluations, split="source_dev")
        assert row[header.index("Seeds")] == str(len(evaluations))
    assert rows["lam (target-selected)"][header.index("Selection")] == "target-selected"
    assert rows["lam"][header.index("Selection")] == "source dev"
    assert rows["lam-gl"][header.index("Anchors")] == describe_anchors(inputs["anchors"]["groups"])
    assert rows["last"][header.index("Anchors")] == "-"  # baselines read no anchors
    assert "lam-gl: 120 target test predictions over 3 seed(s)" in inputs["text"]  # confusions summed over seeds


def test_best_target_uar_is_bold_but_never_a_target_selected_one(inputs):
    table = Tables(inputs["text"]).table("Method", "Target UAR")
    bold = [(row[0][0], text) for row in table[1:] for text, is_bold in row if is_bold]
    assert bold == [("lam-gl", mean_std_text(inputs["expected"]["lam-gl"]))]
    lam_gl = next(line for line in inputs["markdown"].splitlines() if line.startswith("| lam-gl |"))
    assert f"**{mean_std_text(inputs['expected']['lam-gl'])}**" in lam_gl
    assert "target-selected: the model (epoch) was selected with labelled target dev data" in inputs["text"]


def test_page_is_self_contained_with_decodable_embedded_pngs(inputs):
    page = Tables(inputs["text"])
    # 7 confusion matrices, UAR bars, similarity curves, one CKA heatmap
    assert len(page.images) == 10
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert image.format == "PNG" and image.width > 100 and image.height > 100
    for outside in ("<script", "<link", "http://", "https://", "src=\"file"):
        assert outside not in inputs["text"]
    assert date.today().isoformat() in page.h1 and "en.zarr → zh.h5" in page.h1


def test_markdown_twin_has_the_same_table_and_linked_figures(inputs):
    markdown, folder = inputs["markdown"], inputs["md"].parent
    html_rows = [[text for text, _ in row] for row in Tables(inputs["text"]).table("Method", "Target UAR")]
    md_rows = [[re.sub(r"\\(.)", r"\1", cell.strip().strip("*")) for cell in line.strip("|").split("|")]
               for line in markdown.splitlines() if line.startswith("| ")]
    start = md_rows.index(html_rows[0])
    assert md_rows[start:start + len(html_rows)][1:] == html_rows[1:]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == 10
    for link in links:
        assert (folder / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert inputs["md"] == inputs["html"].with_suffix(".md")


def test_similarity_curves_and_table_mark_the_anchors(inputs):
    anchors = inputs["anchors"]
    table = Tables(inputs["text"]).table("Layer")
    header = [text for text, _ in table[0]]
    marked = [int(row[0][0]) for row in table[1:] if row[-1][0] == "anchor"]
    assert marked == anchors["layers"]
    measure_column = header.index(f"{anchors['measure']} ({anchors['direction']})")
    assert [int(row[0][0]) for row in table[1:] if row[measure_column][1]] == anchors["layers"]
    assert (inputs["md"].parent / "report_files" / "similarity_anchors.png").is_file()
    groups = describe_anchors(anchors["groups"])
    assert f"{groups} (mean {anchors['group_scores'][0]:.4g})" in inputs["text"]


def test_cache_summaries_count_utterances_by_split_language_and_label(inputs):
    page = Tables(inputs["text"])
    count_tables = [t for t in page.tables if [text for text, _ in t[0]][:2] == ["Split", "Language"]]
    assert len(count_tables) == 2
    target = {row[0][0]: [text for text, _ in row] for row in count_tables[1][1:]}
    assert target["test"] == ["test", "zh", "10", "10", "10", "10", "40"]
    assert "6 hidden states (0 = embedding output) × 8" in inputs["text"]


def test_commands_runs_and_versions_are_shown(inputs):
    text = inputs["text"]
    assert html.escape(f"--anchors {inputs['root'] / 'anchors.json'} \\\n    --seeds 0-2") in text
    assert text.count("sers train \\") == 1  # one sweep command, shown once
    runs = Tables(text).table("Method", "Run folder")
    assert len(runs) - 1 == 3 * len(SKILL) + 2
    assert ["dann", "7", "40.00", "100.00", "dann-seed7"] in [[c for c, _ in row] for row in runs[1:]]
    versions = {row[0][0]: [c for c, _ in row] for row in Tables(text).table("Package")[1:]}
    assert versions["numpy"][1] == np.__version__
    assert versions["torch"][2] == "2.13.0+cpu"  # as the runs recorded it
    assert "1 run folder(s) have a config.json but no metrics.json" in text and "wsum_seed9" in text


def test_strings_from_files_are_escaped_and_optional_inputs_may_be_absent(tmp_path):
    evaluation = classification_metrics(["A", "H"], ["A", "A"], ["A", "H"])
    write_run(tmp_path / "runs" / "r0", {"method": "<img src=x onerror=alert(1)>", "seed": 0,
                                         "command": "sers train --note '<script>alert(1)</script>'"},
              {"target_test": evaluation})
    html_path, md_path = write_report(tmp_path / "runs", tmp_path / "r.html")
    text, markdown = html_path.read_text(), md_path.read_text()
    assert "<script" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "\\<img src=x onerror=alert(1)\\>" in markdown
    assert "No similarity given" in text and "No anchors.json given" in text
    assert "Neither the runs nor the similarity name a cache" in text


def test_no_runs_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SersError, match="no run folders with a metrics.json"):
        write_report(tmp_path / "empty", tmp_path / "r.html")
    result = CliRunner().invoke(main, ["report", str(tmp_path / "empty"), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 1 and result.output.startswith("error: ") and "Traceback" not in result.output
    assert not (tmp_path / "r_files").exists()
    (tmp_path / "empty" / "lam" / "seed0").mkdir(parents=True)
    (tmp_path / "empty" / "lam" / "seed0" / "metrics.json").write_text('{"target_test": ')
    with pytest.raises(SersError, match=r"lam/seed0/metrics.json: not valid JSON"):
        write_report(tmp_path / "empty", tmp_path / "r.html")


def test_cli_writes_html_and_markdown(inputs, tmp_path):
    root = inputs["root"]
    result = CliRunner().invoke(main, ["report", str(root / "runs"), "--similarity", str(root / "sim"),
                                       "--anchors", str(root / "anchors.json"), "-o", str(tmp_path / "lab.html")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lab.html").is_file() and (tmp_path / "lab.md").is_file()
    assert f"wrote {tmp_path / 'lab.html'} and {tmp_path / 'lab.md'}" in result.output


def test_run_readers_accept_other_layouts():
    evaluation = {"uar": 0.5, "macro_f1": 0.4}
    assert metrics_at({"target-test": evaluation}, [("target-test",)]) is evaluation
    assert metrics_at({"results": {"target": {"test": {"metrics": evaluation}}}}, [("target", "test")]) is evaluation
    assert metrics_at({"target_test": {"n": 0}}, [("target_test",)]) is None
    assert describe_anchors([3, 5, 7]) == "3, 5, 7"
    assert describe_anchors([[3, 4, 5], [8, 10]]) == "[3-5] [8,10]"
    assert describe_anchors({"layers": [3, 4], "groups": None}) == "3, 4"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(inputs, tmp_path):
    # The report has no script; a copy gets one that records each image's decoded width.
    probe = tmp_path / "probe.html"
    probe.write_text(inputs["text"].replace("</body>", '<script>window.addEventListener("load", () => {'
                     'for (const i of document.images) i.dataset.naturalWidth = i.naturalWidth;'
                     'document.body.dataset.loaded = "yes"; });</script></body>'))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,3000"]
    shot = tmp_path / "page.png"
    dom = subprocess.run(flags + ["--virtual-time-budget=5000", "--dump-dom", f"--screenshot={shot}", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert 'data-loaded="yes"' in dom
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    assert len(widths) == 10 and min(widths) > 100
    table = Tables(dom).table("Method", "Target UAR")
    assert [row[0][0] for row in table[1:]] == TABLE_ORDER

    page = np.asarray(Image.open(shot).convert("RGB")).astype(np.int32)
    assert page.shape[:2] == (3000, 1200)
    colours = np.unique((page[..., 0] << 16) | (page[..., 1] << 8) | page[..., 2])
    assert len(colours) > 200  # text, tables and figures, not a blank page


def test_report_reads_what_sers_train_writes(inputs, tmp_path):
    from sers.pipeline.train import train

    root, runs = inputs["root"], tmp_path / "runs"
    options = dict(anchors=root / "anchors.json", epochs=2, hidden=8, batch_size=16, progress=False)
    table = train(root / "en.zarr", root / "zh.h5", methods=["last", "lam-gl"], seeds=[0, 1], out_dir=runs,
                  command="sers train --method last,lam-gl --seeds 0,1", **options)
    train(root / "en.zarr", root / "zh.h5", methods=["lam"], seeds=[0], target_dev="dev",
          out_dir=runs / "target-selected", command="sers train --method lam --target-dev dev", **options)
    html_path, _ = write_report(runs, tmp_path / "r.html")  # anchors and similarity found through the configs
    page = Tables(html_path.read_text())
    results = page.table("Method", "Target UAR")
    header = [text for text, _ in results[0]]
    rows = {row[0][0]: [text for text, _ in row] for row in results[1:]}
    assert list(rows) == ["last", "anchors-only", "lam", "groups-only", "lam-gl"]  # the ablations beside lam, lam-gl
    for row in table:
        expected = f"{100 * row['target_uar_mean']:.2f} ± {100 * row['target_uar_std']:.2f}"
        assert rows[row["method"]][header.index("Target UAR")] == expected
        assert rows[row["method"]][header.index("Seeds")] == "2"
    assert rows["lam"][header.index("Selection")] == "target-selected"
    assert rows["lam-gl"][header.index("Anchors")] == describe_anchors(inputs["anchors"]["groups"])
    text = html_path.read_text()
    assert f"anchors</th><td>{html.escape(str(root / 'anchors.json'))}" in text
    assert "sers anchor " in text and "sers similarity " in text  # rebuilt from the files
    assert "sers train --method lam --target-dev dev" in text
    # what the alignment adds: the intervals and paired gains results.csv holds, on the page
    evidence = page.table("Method", "Alignment gain")
    by_method = {row[0][0]: [text for text, _ in row] for row in evidence[1:]}
    for row in table:
        low, high = row["target_uar_ci_low"], row["target_uar_ci_high"]
        assert by_method[row["method"]][1] == f"{row['target_uar_mean']:.3f} [{low:.3f}, {high:.3f}]"
    gl = next(row for row in table if row["method"] == "lam-gl")
    assert by_method["lam-gl"][3].startswith(f"vs groups-only: {gl['alignment_gain']:+.3f} [")
    assert by_method["last"][2] == by_method["last"][3] == ""
    every_run = page.table("Method", "Best epoch")
    assert [c for c, _ in every_run[1]][-1] == "last/seed0"
    assert len(re.findall(r"<figcaption>[^<]*/curves.png\)</figcaption>", text)) == len(rows)  # one seed-0 curve per method
    counts = [t for t in page.tables if [c for c, _ in t[0]][:2] == ["Split", "Language"]]
    assert len(counts) == 2  # both caches, found through the runs' configs


def test_anchor_layers_are_drawn_on_the_similarity_curves(tmp_path):
    from sers.display.figures import anchored_curves

    values = {"coral": [0.3, 0.1, 0.2, 0.4], "cka": [0.5, 0.9, 0.8, 0.2]}
    plain = anchored_curves(range(4), values, tmp_path / "plain.png")
    marked = anchored_curves(range(4), values, tmp_path / "marked.png", anchor_layers=[1, 2],
                             anchor_groups=[[1, 2]], anchor_measure="coral")

    def reddish(path):
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
        return int(np.sum((rgb[..., 0] > 150) & (rgb[..., 0] - rgb[..., 2] > 60) & (rgb[..., 1] < 200)))

    assert reddish(plain) == 0 and reddish(marked) > 500


def test_anchor_scores_stand_in_for_a_missing_similarity_folder(inputs, tmp_path):
    anchors = dict(inputs["anchors"], similarity_file=None)
    (tmp_path / "anchors.json").write_text(json.dumps(anchors))
    html_path, _ = write_report(inputs["root"] / "runs", tmp_path / "r.html", anchors=tmp_path / "anchors.json")
    text = html_path.read_text()
    assert "the curve shows the anchor file&#x27;s scores" in text
    assert (tmp_path / "r_files" / "similarity_anchors.png").is_file()
    assert "Similarity per layer (bold" not in text  # no similarity table without similarity.json


def test_an_existing_report_is_refused_unless_overwrite(tmp_path):
    write_run(tmp_path / "runs" / "r0", {"method": "last", "seed": 0},
              {"target_test": classification_metrics(["A", "H"], ["A", "A"], ["A", "H"])})
    files = write_report(tmp_path / "runs", tmp_path / "r.html")
    assert files.summary() == f"wrote {tmp_path / 'r.html'} and {tmp_path / 'r.md'}"
    with pytest.raises(SersError, match=r"r\.html exists: pass --overwrite to replace it"):
        write_report(tmp_path / "runs", tmp_path / "r.html")
    (tmp_path / "r.html").unlink()  # the twin alone is an earlier report too
    with pytest.raises(SersError, match=r"r\.md exists: pass --overwrite"):
        write_report(tmp_path / "runs", tmp_path / "r.html")
    run = CliRunner().invoke(main, ["report", str(tmp_path / "runs"), "-o", str(tmp_path / "r.html")])
    assert run.exit_code == 1 and "exists: pass --overwrite to replace it" in run.output
    run = CliRunner().invoke(main, ["report", str(tmp_path / "runs"), "-o", str(tmp_path / "r.html"), "--overwrite"])
    assert run.exit_code == 0 and (tmp_path / "r.html").exists()
