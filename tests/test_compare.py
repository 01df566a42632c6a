"""`resonance compare` / `resonance rank`: tables, CSV, HTML, CLI exit codes, the paired test."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import resonance
from resonance import cli, comparison
from resonance.activations import Activations
from resonance.stimuli import Stimuli

ROOT = Path(__file__).resolve().parents[1]
N = 40
CHROMIUM = Path("/usr/bin/chromium")


def _acts(layers, name, stim):
    return Activations([np.asarray(x, np.float32) for x in layers], list(range(len(layers))),
                       name, "mean", stim.key, n_items=len(stim), labels=list(stim.labels))


@pytest.fixture(scope="module")
def toy():
    """Two toy 'models' sharing a 16-d signal on 40 labelled stimuli (2 labels x 20)."""
    rng = np.random.default_rng(0)
    stim = Stimuli.from_texts([f"item {i}" for i in range(N)], ["x"] * 20 + ["y"] * 20)
    base = rng.normal(size=(N, 16))
    a = _acts([base + rng.normal(size=(N, 16)) * s for s in (2.0, 1.0, 0.3)], "toy-a", stim)
    mix = rng.normal(size=(16, 24))
    b = _acts([base @ mix + rng.normal(size=(N, 24)) * s for s in (3.0, 1.0, 0.5, 0.2)],
              "toy-b", stim)
    return stim, a, b, base


@pytest.fixture(scope="module")
def report(toy):
    stim, a, b, _ = toy
    return resonance.compare(a, b, stim, n_boot=20)


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.images, self.cells, self.headings = 0, [], [], []
        self._in = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables += 1
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        self._in = tag

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in in ("td", "th"):
            self.cells.append(data.strip())
        elif self._in in ("h1", "h2", "h3"):
            self.headings.append(data.strip())


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


# --------------------------------------------------------------------------------------------
# compare: tables, CSV, HTML


def test_compare_tables_follow_the_registry(report):
    g = report.global_table.set_index("measure")
    assert list(g.index) == list(comparison.DEFAULT_MEASURES)
    assert report.info["n_null"] == 99  # the default: enough draws for a shown p-value
    assert (g["p_value"] >= 1 / 100).all() and (g["p_value"] <= 1).all()
    # the shared signal is found: every measure beats its null in its own direction
    assert g.loc["cka_linear_debiased", "value"] > g.loc["cka_linear_debiased", "null_high"]
    assert g.loc["mutual_knn", "value"] > g.loc["mutual_knn", "null_high"]
    assert bool(g.loc["rtd", "divergence"]) and g.loc["rtd", "value"] < g.loc["rtd", "null_low"]
    assert (g["p_value"] < 0.05).all()
    assert (g["ci_low"] <= g["value"]).all() and (g["value"] <= g["ci_high"]).all()
    assert set(g["layer_a"]) == {2} and set(g["layer_b"]) == {3}  # depth 1 = last layers
    assert len(report.layer_table) == 3 * 4
    assert list(report.layer_map["layer_a"]) == [0, 1, 2]
    assert report.layer_map["layer_b"].is_monotonic_increasing
    assert sorted(report.local_table["concept"]) == ["x", "y"]
    assert set(report.diagram_table["dim"]) == {0, 1}


def test_csv_columns_and_sections(report, tmp_path):
    path = report.to_csv(tmp_path / "r.csv")
    table = pd.read_csv(path)
    assert tuple(table.columns) == comparison.COLUMNS
    assert set(table["section"]) == {"global", "layers", "layer_map", "local", "persistence"}
    assert (table["model_a"] == "toy-a").all() and (table["model_b"] == "toy-b").all()
    glob = table[table["section"] == "global"]
    assert list(glob["measure"]) == list(comparison.DEFAULT_MEASURES)
    assert glob[["value", "ci_low", "ci_high", "null_mean", "p_value"]].notna().all().all()
    assert len(table[table["section"] == "layers"]) == 12
    assert set(table.loc[table["section"] == "local", "concept"]) == {"x", "y"}
    assert "1.0" not in path.read_text().split("\n")[1].split(",")[5]  # layer ids are integers


def test_html_report_holds_tables_and_embedded_images(report, tmp_path):
    html_path, csv_path = report.save(tmp_path / "report.html")
    assert csv_path == tmp_path / "report.csv" and csv_path.is_file()
    page = _parse(html_path)
    assert page.tables >= 4  # global, layer map, local, persistence
    assert "Global resonance" in page.headings and "Persistence diagrams" in page.headings
    assert {"cka_linear_debiased", "mutual_knn", "rtd"} <= set(page.cells)
    assert len(page.images) == 4  # global, layers, local, persistence
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http" not in html_path.read_text().replace("http-equiv", "")  # self-contained


def test_persistence_diagrams_share_their_axes(report):
    fig = report.figures["persistence"]
    left, right = fig.axes[:2]
    assert left.get_xlim() == right.get_xlim() and left.get_ylim() == right.get_ylim()


def test_unlabelled_stimuli_skip_local_resonance(toy):
    stim, a, b, _ = toy
    plain = Stimuli.from_texts(stim.texts)
    result = resonance.compare(a, b, plain, measures=["cka_linear_debiased"], n_boot=5,
                               n_null=19, figures=False)
    assert result.local_table is None and "no labels" in result.info["local_note"]


def test_no_progress_bar_when_stderr_is_not_a_terminal(toy, capsys):
    stim, a, b, _ = toy
    resonance.compare(a, b, stim, measures=["cka_linear_debiased"], n_boot=5, n_null=19,
                      figures=False)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------------------------
# bad input


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match="unknown model 'no-such-model'"):
        resonance.compare("no-such-model", "minilm", [f"text {i}" for i in range(20)])


def test_too_few_stimuli_for_k(toy):
    stim, a, b, _ = toy
    few = stim.subset(range(11))
    small_a, small_b = (_acts([x[:11] for x in m.layers], m.model, few) for m in (a, b))
    with pytest.raises(ValueError, match=r"11 stimuli, too few: mutual_knn with k=10.*at least 12"):
        resonance.compare(small_a, small_b, few, measures=["mutual_knn"])
    # a smaller k fixes it
    out = resonance.compare(small_a, small_b, few, measures=["mutual_knn"], k=5, n_boot=5,
                            n_null=19, local=False, figures=False)
    assert out.global_table["n"].iloc[0] == 11
    assert comparison.min_stimuli(["cka_linear_debiased"], {})[0] == comparison.MIN_STIMULI


def test_stimuli_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        comparison.read_stimuli_file(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match="is empty"):
        comparison.read_stimuli_file(empty)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="not UTF-8"):
        comparison.read_stimuli_file(binary)
    labelled = tmp_path / "labelled.txt"
    labelled.write_text("animal\ta dog runs\n\nfood\tbread is baked\n")
    stim = comparison.read_stimuli_file(labelled)
    assert stim.texts == ["a dog runs", "bread is baked"] and stim.labels == ["animal", "food"]
    plain = tmp_path / "plain.txt"
    plain.write_text("one line\nanother line\n")
    assert comparison.load_stimuli(str(plain)).labels == ["", ""]
    assert len(comparison.load_stimuli("concepts", n=40)) == 40


def test_bad_layers_and_depth(toy):
    stim, a, b, _ = toy
    with pytest.raises(ValueError, match=r"depths must lie in \[0, 1\]"):
        resonance.compare(a, b, stim, layers=[0.5, 2.0])
    with pytest.raises(ValueError, match="depth must lie in"):
        resonance.compare(a, b, stim, depth=1.5)
    with pytest.raises(ValueError, match="unknown measure 'cka'"):
        resonance.compare(a, b, stim, measures=["cka"])


# --------------------------------------------------------------------------------------------
# rank and its paired test


@pytest.fixture(scope="module")
def ranking_case(toy):
    stim, _, _, base = toy
    rng = np.random.default_rng(1)
    ref = _acts([base], "reference", stim)
    copy = _acts([base @ rng.normal(size=(16, 16)) + rng.normal(size=(N, 16)) * 0.5],
                 "noisy-copy", stim)
    unrelated = _acts([rng.normal(size=(N, 16))], "unrelated", stim)
    return stim, ref, copy, unrelated


def test_rank_finds_the_noisy_copy(ranking_case):
    stim, ref, copy, unrelated = ranking_case
    result = resonance.rank(ref, [unrelated, copy], stim)
    assert result.best == "noisy-copy"
    assert list(result.table["rank"]) == [1, 2]
    pair = result.pairs.iloc[0]
    assert (pair["better"], pair["worse"]) == ("noisy-copy", "unrelated")
    assert pair["advantage"] > 0 and pair["ci_low"] > 0
    assert pair["p_value"] < 0.05 and pair["p_holm"] < 0.05
    assert result.table.set_index("candidate").loc["noisy-copy", "p_value"] < 0.05


def test_rank_reads_the_direction_from_the_registry(ranking_case):
    stim, ref, copy, unrelated = ranking_case
    result = resonance.rank(ref, [unrelated, copy], stim, measure="procrustes", n_boot=50,
                            n_null=19, figures=False)
    table = result.table.set_index("candidate")
    assert result.best == "noisy-copy"  # the smaller distance ranks first
    assert table.loc["noisy-copy", "value"] < table.loc["unrelated", "value"]
    assert result.pairs["advantage"].iloc[0] > 0


def test_identical_candidates_do_not_differ(ranking_case):
    stim, ref, copy, _ = ranking_case
    twin = _acts(copy.layers, "twin", stim)
    result = resonance.rank(ref, [copy, twin], stim, n_boot=50, n_null=19, figures=False)
    pair = result.pairs.iloc[0]
    assert pair["advantage"] == 0 and pair["se"] == 0 and pair["p_value"] == 1.0


def test_equally_noisy_copies_are_not_told_apart(toy):
    stim, _, _, base = toy
    rng = np.random.default_rng(5)
    ref = _acts([base], "reference", stim)
    c1 = _acts([base + rng.normal(size=(N, 16))], "copy-1", stim)
    c2 = _acts([base + rng.normal(size=(N, 16))], "copy-2", stim)
    result = resonance.rank(ref, [c1, c2], stim, n_boot=100, n_null=19, figures=False)
    assert result.pairs["p_value"].iloc[0] > 0.05


def test_holm():
    np.testing.assert_allclose(comparison.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(comparison.holm([0.5, 0.9]), [1.0, 1.0])


def test_rank_needs_two_distinct_candidates(ranking_case):
    stim, ref, copy, _ = ranking_case
    with pytest.raises(ValueError, match="at least two candidates"):
        resonance.rank(ref, [copy], stim)
    with pytest.raises(ValueError, match="given twice"):
        resonance.rank(ref, [copy, copy], stim, figures=False)


def test_rank_report(ranking_case, tmp_path):
    stim, ref, copy, unrelated = ranking_case
    result = resonance.rank(ref, [unrelated, copy], stim, n_boot=20, n_null=19)
    html_path, csv_path = result.save(tmp_path / "rank.html")
    page = _parse(html_path)
    assert page.tables == 2 and len(page.images) == 2
    assert {"noisy-copy", "unrelated"} <= set(page.cells)
    assert set(pd.read_csv(csv_path)["section"]) == {"candidates", "pairs"}


# --------------------------------------------------------------------------------------------
# the command line


def test_cli_errors_exit_2(tmp_path, capsys):
    assert cli.main(["compare", "no-such-model", "minilm", "--out",
                     str(tmp_path / "r.html")]) == 2
    assert "resonance compare: error: unknown model 'no-such-model'" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert cli.main(["compare", "minilm", "minilm", "--stimuli", str(empty)]) == 2
    assert "is empty" in capsys.readouterr().err
    assert cli.main(["compare", "minilm", "minilm", "--stimuli", str(tmp_path / "nope.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["rank", "--reference", "minilm", "minilm"]) == 2
    assert "at least two candidates" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["compare", "minilm"])  # argparse: B is missing
    assert exit_.value.code == 2
    assert not (tmp_path / "r.html").exists()


def test_offline_by_default(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    comparison.offline_by_default()
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    comparison.offline_by_default()
    assert os.environ["HF_HUB_OFFLINE"] == "0"  # the user's choice stands


def test_console_script_declared():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["resonance"] == "resonance.cli:main"


def test_cli_compare_minilm_end_to_end(tmp_path):
    """`python -m resonance compare` on the packaged MiniLM (with itself) and a 40-line file."""
    from resonance import zoo
    if not zoo.available("minilm"):
        pytest.skip("MiniLM package not installed")
    lines = [f"{'animal' if i % 2 else 'food'}\t{w} number {i}"
             for i, w in enumerate(["a dog", "some bread"] * (N // 2))]
    (tmp_path / "stimuli.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out" / "report.html"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("HF_HUB_OFFLINE", None)  # the command sets it itself
    run = subprocess.run(
        [sys.executable, "-m", "resonance", "compare", "minilm", "minilm", "--stimuli",
         str(tmp_path / "stimuli.txt"), "--layers", "0", "0.5", "1", "--measures",
         "cka_linear_debiased", "mutual_knn", "--n-boot", "5", "--n-null", "19",
         "--out", str(out)], capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # no progress bar into a pipe, no warnings
    assert "report:" in run.stdout
    table = pd.read_csv(out.with_suffix(".csv"))
    glob = table[table["section"] == "global"].set_index("measure")
    assert glob.loc["cka_linear_debiased", "value"] == pytest.approx(1.0, abs=1e-6)
    assert glob.loc["mutual_knn", "value"] == pytest.approx(1.0)
    layers = table[table["section"] == "layers"]
    assert len(layers) == 9 and set(layers["layer_a"]) == {0, 3, 6}
    assert set(table.loc[table["section"] == "local", "concept"]) == {"animal", "food"}
    assert len(_parse(out).images) == 4


def test_cli_rank_accepts_a_local_folder(tmp_path, capsys):
    """`resonance rank` with a save_pretrained copy of MiniLM as one candidate: the copy holds
    the same weights, so its resonance with the reference equals MiniLM's own."""
    from resonance import zoo
    if not zoo.available("minilm"):
        pytest.skip("MiniLM package not installed")
    model = zoo.load("minilm")
    folder = tmp_path / "minilm-copy"
    model.module.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    (tmp_path / "stimuli.txt").write_text("\n".join(f"sentence number {i} about a topic"
                                                    for i in range(N)) + "\n")
    rc = cli.main(["rank", "--reference", "minilm", "minilm", str(folder), "--stimuli",
                   str(tmp_path / "stimuli.txt"), "--n-boot", "20", "--n-null", "19", "--quiet",
                   "--out", str(tmp_path / "rank.html")])
    assert rc == 0
    assert "paired differences" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "rank.csv")
    candidates = table[table["section"] == "candidates"]
    assert set(candidates["candidate"]) == {"minilm", "minilm-copy"}
    assert candidates["value"].to_numpy() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert abs(table.loc[table["section"] == "pairs", "advantage"].iloc[0]) < 1e-5


# --------------------------------------------------------------------------------------------
# the report in a real browser


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install "
                                                  "chromium)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    import matplotlib.image as mpimg
    html_path, _ = report.save(tmp_path / "report.html")
    shot = tmp_path / "report.png"
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", "--hide-scrollbars",
             "--window-size=1200,4200", f"--screenshot={shot}", html_path.as_uri()],
            capture_output=True, timeout=180, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert shot.is_file(), "chromium wrote no screenshot"
    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (4200, 1200)
    assert pixels[..., :3].std() > 0.05  # not a blank page
    keep = os.environ.get("RESONANCE_BUILD")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "compare_report_screenshot.png")


def test_report_numbers_read_uniformly():
    from resonance import report as R
    assert R._count(22713216) == "22,713,216" and R._count(None) == "?"
    html_text = R._table(pd.DataFrame({"null_mean": [-0.000227, 0.0061], "n": [20, 20]}))
    assert "<td>0.000</td>" in html_text and "<td>0.006</td>" in html_text
    assert "e-" not in html_text and "-0.000" not in html_text
