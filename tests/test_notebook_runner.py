"""The notebook runner's parallel mode: every notebook runs, failures are named, not hidden."""

import subprocess

import pytest

from resonance import notebooks


def _fake_run(fail: set[str], seen: list):
    def run(command, env, capture_output, text):
        name = command[command.index("--only") + 1]
        seen.append((name, env["OMP_NUM_THREADS"], "--in-place" in command))
        return subprocess.CompletedProcess(command, 1 if name in fail else 0,
                                           stdout=f"log of {name}\n", stderr="")
    return run


def test_parallel_runs_every_notebook_single_threaded(monkeypatch, tmp_path, capsys):
    seen = []
    monkeypatch.setattr(notebooks.subprocess, "run", _fake_run(set(), seen))
    timings = notebooks.run_parallel("smoke", output=tmp_path, jobs=2, force=False)
    stems = [p.stem for p in notebooks.notebook_paths()]
    assert sorted(name for name, *_ in seen) == sorted(stems)
    assert {(threads, in_place) for _, threads, in_place in seen} == {("1", False)}
    assert [name for name, _ in timings] == [p.name for p in notebooks.notebook_paths()]
    assert f"log of {stems[-1]}" in capsys.readouterr().out


def test_parallel_names_the_failed_notebook_after_running_the_rest(monkeypatch, tmp_path):
    seen = []
    stems = [p.stem for p in notebooks.notebook_paths()]
    monkeypatch.setattr(notebooks.subprocess, "run", _fake_run({stems[0]}, seen))
    with pytest.raises(RuntimeError, match=rf"1 notebook\(s\) failed: {stems[0]}\.ipynb"):
        notebooks.run_parallel("smoke", output=tmp_path, jobs=2, force=False)
    assert len(seen) == len(stems)


def test_jobs_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        notebooks.run_parallel("smoke", output=tmp_path, jobs=0, force=False)


def test_parallel_in_place_runs_each_child_in_place(monkeypatch):
    """make reproduce: the committed notebooks, two at a time, each child writing in place."""
    seen = []
    monkeypatch.setattr(notebooks.subprocess, "run", _fake_run(set(), seen))
    notebooks.main(["--profile", "paper", "--in-place", "--jobs", "2"])
    assert len(seen) == len(notebooks.notebook_paths())
    assert {(threads, in_place) for _, threads, in_place in seen} == {("1", True)}


def test_exactly_one_destination(capsys):
    for argv in (["--jobs", "2"], ["--in-place", "--output", "x"]):
        with pytest.raises(SystemExit):
            notebooks.main(["--profile", "smoke", *argv])
        assert "exactly one of --output DIR or --in-place" in capsys.readouterr().err
