"""The rendered paper and README table are exactly what the results say."""

import pytest

from resonance import paper, paths, store


def test_committed_paper_matches_a_fresh_rendering(monkeypatch):
    monkeypatch.setattr(paths, "RESULTS", paths.ROOT / "results")
    fresh, cite = paper.render_paper()
    committed = (paths.PAPERS / "paper.md").read_text()
    assert committed == fresh, "papers/paper.md is stale or was edited by hand: run `make paper`"
    for result, key, text in cite.cited:
        assert text in committed


def test_committed_readme_table_matches_results(monkeypatch):
    monkeypatch.setattr(paths, "RESULTS", paths.ROOT / "results")
    readme = (paths.ROOT / "README.md").read_text()
    assert paper.readme_with_findings(readme, paper.render_findings_table()) == readme, \
        "README's findings table is stale: run `make paper`"
    assert paper.readme_with_times(readme, paper.render_times_table()) == readme, \
        "README's per-notebook times are stale: run `make paper`"


def test_a_changed_number_changes_the_rendering(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RESULTS", tmp_path)
    store.write(tmp_path / "x" / "paper", {}, {"v": 0.125}, {"config_hash": "0"})
    cite = paper.Citations()
    assert cite("x", "v", ".2f") == "0.12"
    store.write(tmp_path / "x" / "paper", {}, {"v": 0.5}, {"config_hash": "0"})
    assert cite("x", "v", ".2f") == "0.50"
    with pytest.raises(KeyError, match="has no 'w'"):
        cite("x", "w")
    with pytest.raises(KeyError, match="does not exist"):
        cite("y", "v")


def test_times_table_reads_wall_and_cpu_from_provenance(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RESULTS", tmp_path)
    store.write(tmp_path / "00_tour" / "paper", {}, {"headline": "x"},
                {"config_hash": "0", "wall_time_s": 120.0, "cpu_time_s": 90.0,
                 "numerics": {"torch_threads": 1}, "created": "2026-12-02T00:00:00+0000"})
    table = paper.render_times_table()
    assert "| `00_tour` | 2.0 | 1.5 | 1 | 2026-12-02 |" in table
    assert "| `01_scale` | *not computed yet* |" in table
    with pytest.raises(ValueError, match="TIMES:BEGIN"):
        paper.readme_with_times("no markers", table)
