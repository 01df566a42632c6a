import json
import os

import pandas as pd
import pytest

from resonance import paths, store
from resonance.profiles import check_profile, pick


def _compute(calls):
    def compute(config):
        calls.append(config)
        frame = pd.DataFrame({"x": [0.1, 1 / 3, 2.0], "label": ["a", "b", "c"]})
        return {"table": frame}, {"headline": "ok", "value": 1 / 3}
    return compute


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "RESULTS", tmp_path / "results")
    return tmp_path / "results"


def test_config_hash_is_stable_and_order_free():
    assert store.config_hash({"a": 1, "b": [1, 2]}) == store.config_hash({"b": [1, 2], "a": 1})
    assert store.config_hash({"a": 1}) != store.config_hash({"a": 2})
    with pytest.raises(ValueError, match="JSON"):
        store.config_hash({"a": object()})


def test_cached_computes_once_and_round_trips_exactly(results):
    calls = []
    first = store.cached("demo", "smoke", {"n": 3}, _compute(calls))
    second = store.cached("demo", "smoke", {"n": 3}, _compute(calls))
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first["table"], second["table"])
    assert second["table"]["x"].tolist() == [0.1, 1 / 3, 2.0]  # float round trip is exact
    assert second.meta == {"headline": "ok", "value": 1 / 3}


def test_provenance_records_what_made_the_result(results):
    bundle = store.cached("demo", "smoke", {"n": 3}, _compute([]))
    prov = json.loads((results / "demo" / "smoke" / "provenance.json").read_text())
    assert prov["config"] == {"n": 3}
    assert prov["config_hash"] == store.config_hash({"n": 3})
    for key in ("git_commit", "packages", "machine", "wall_time_s", "created"):
        assert key in prov
    assert prov["packages"]["pandas"] == pd.__version__
    assert bundle.config == {"n": 3}


def test_changed_config_recomputes_at_smoke_but_is_an_error_at_paper(results):
    calls = []
    store.cached("demo", "smoke", {"n": 3}, _compute(calls))
    store.cached("demo", "smoke", {"n": 4}, _compute(calls))
    assert len(calls) == 2
    with pytest.raises(store.StaleResultError, match="make reproduce"):
        store.cached("demo", "paper", {"n": 3}, _compute(calls))
    store.cached("demo", "paper", {"n": 3}, _compute(calls), force=True)
    with pytest.raises(store.StaleResultError, match="force=True"):
        store.cached("demo", "paper", {"n": 5}, _compute(calls))
    assert len(calls) == 3


def test_force_from_environment(results, monkeypatch):
    calls = []
    store.cached("demo", "smoke", {"n": 3}, _compute(calls))
    monkeypatch.setenv("RESONANCE_FORCE", "1")
    store.cached("demo", "smoke", {"n": 3}, _compute(calls))
    assert len(calls) == 2


def test_interrupted_compute_leaves_previous_result_intact(results):
    store.cached("demo", "smoke", {"n": 3}, _compute([]))

    def broken(config):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.cached("demo", "smoke", {"n": 4}, broken)
    assert store.load("demo", "smoke").config == {"n": 3}
    assert [p.name for p in (results / "demo").iterdir()] == ["smoke"]


def test_missing_provenance_and_corrupt_files_are_clear_errors(results):
    store.cached("demo", "smoke", {"n": 3}, _compute([]))
    folder = results / "demo" / "smoke"
    (folder / "table.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(store.CorruptResultError, match="table.csv"):
        store.load("demo", "smoke")
    (folder / "provenance.json").write_text("{not json")
    with pytest.raises(store.CorruptResultError, match="not valid JSON"):
        store.cached("demo", "smoke", {"n": 3}, _compute([]))
    (folder / "provenance.json").unlink()
    with pytest.raises(store.CorruptResultError, match="no provenance.json"):
        store.cached("demo", "smoke", {"n": 3}, _compute([]))


def test_missing_result_and_unknown_table(results):
    with pytest.raises(FileNotFoundError, match="make reproduce"):
        store.load("nothing", "paper")
    bundle = store.cached("demo", "smoke", {"n": 3}, _compute([]))
    with pytest.raises(KeyError, match="has no table 'nope'"):
        bundle["nope"]


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    with store.atomic_path(target) as tmp:
        tmp.write_text("one")
    with pytest.raises(RuntimeError, match="interrupted mid-write"):
        with store.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted mid-write")
    assert target.read_text() == "one"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]


def test_unknown_profile_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="smoke, paper, hub"):
        check_profile("fast")
    with pytest.raises(ValueError, match="unknown profile"):
        store.cached("demo", "fast", {}, _compute([]))
    assert pick("hub", {"smoke": 1, "paper": 2}) == 2


def test_meta_numpy_scalars_and_undefined_numbers(results):
    import numpy as np

    def compute(config):
        return {}, {"n": np.int64(3), "x": np.float32(0.5), "ci": float("nan"), "l": [np.inf]}

    bundle = store.cached("demo", "smoke", {}, compute)
    assert bundle.meta == {"n": 3, "x": 0.5, "ci": None, "l": [None]}


# -- Nothing lost (issue 11) -------------------------------------------------------------------


def test_truncated_table_is_an_error_not_other_numbers(results):
    store.cached("demo", "smoke", {"n": 3}, _compute([]))
    folder = results / "demo" / "smoke"
    prov = json.loads((folder / "provenance.json").read_text())
    assert set(prov["file_sha256"]) == {"table.csv", "meta.json"}
    assert store.load("demo", "smoke").verified
    text = (folder / "table.csv").read_text()
    (folder / "table.csv").write_text(text[: text.rindex("\n", 0, len(text) - 1) + 1])  # drop a row
    assert len(pd.read_csv(folder / "table.csv")) == 2  # pandas alone would load it
    with pytest.raises(store.CorruptResultError, match="table.csv does not match the SHA-256"):
        store.load("demo", "smoke")
    with pytest.raises(store.CorruptResultError, match="force=True"):
        store.cached("demo", "smoke", {"n": 3}, _compute([]))
    (folder / "stray.csv").write_text("a\n1\n")
    (folder / "table.csv").write_text(text)
    with pytest.raises(store.CorruptResultError, match="stray.csv"):
        store.load("demo", "smoke")


def test_results_without_hashes_load_unverified(results):
    """Results committed before the hashes existed still load (nbval re-runs them)."""
    store.cached("demo", "smoke", {"n": 3}, _compute([]))
    path = results / "demo" / "smoke" / "provenance.json"
    prov = json.loads(path.read_text())
    del prov["file_sha256"]
    path.write_text(json.dumps(prov))
    bundle = store.load("demo", "smoke")
    assert not bundle.verified
    assert bundle["table"]["x"].tolist() == [0.1, 1 / 3, 2.0]


def test_force_recovers_a_corrupt_folder(results):
    store.cached("demo", "smoke", {"n": 3}, _compute([]))
    folder = results / "demo" / "smoke"
    (folder / "provenance.json").write_text("{not json")
    with pytest.raises(store.CorruptResultError, match=r"provenance.json is not valid JSON"):
        store.cached("demo", "smoke", {"n": 3}, _compute([]))
    calls = []
    bundle = store.cached("demo", "smoke", {"n": 3}, _compute(calls), force=True)
    assert len(calls) == 1 and bundle.verified and bundle.meta["headline"] == "ok"
    (folder / "provenance.json").unlink()
    assert store.cached("demo", "smoke", {"n": 3}, _compute(calls), force=True).verified


def test_unwritable_folder_fails_before_computing(results, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the results folder should be")
    monkeypatch.setattr(paths, "RESULTS", blocker)
    calls = []
    with pytest.raises(PermissionError, match="cannot write results.*RESONANCE_RESULTS"):
        store.cached("demo", "smoke", {"n": 3}, _compute(calls))
    assert calls == []


def test_replacing_a_result_is_an_atomic_exchange(results):
    store.cached("demo", "smoke", {"n": 3}, _compute([]))
    folder = results / "demo" / "smoke"
    a, b = results / "a", results / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    if not store._exchange(a, b):
        pytest.skip("this file system cannot exchange directories atomically")
    assert (b / "x").read_text() == "a" and not (a / "x").exists()
    store.cached("demo", "smoke", {"n": 4}, _compute([]))
    assert store.load("demo", "smoke").config == {"n": 4}
    assert sorted(p.name for p in folder.parent.iterdir()) == ["smoke"]


def test_kill_between_two_renames_keeps_the_previous_result(results, monkeypatch):
    """Without an atomic exchange, a kill after the first rename leaves `.smoke.old-PID`
    and no folder: the next load puts the previous result back."""
    store.cached("demo", "smoke", {"n": 3}, _compute([]))
    monkeypatch.setattr(store, "_exchange", lambda a, b: False)
    real_rename = type(results).rename
    calls = []

    def rename(self, target):
        calls.append(target)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed between the renames")
        return real_rename(self, target)

    monkeypatch.setattr(type(results), "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        store.cached("demo", "smoke", {"n": 4}, _compute([]))
    monkeypatch.setattr(type(results), "rename", real_rename)
    folder = results / "demo" / "smoke"
    assert not folder.exists()  # the window the exchange closes
    assert store.load("demo", "smoke").config == {"n": 3}
    assert sorted(p.name for p in folder.parent.iterdir()) == ["smoke"]


def test_orphan_temporaries_of_dead_processes_are_removed(results):
    import subprocess
    import sys

    store.cached("demo", "smoke", {"n": 3}, _compute([]))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    parent = results / "demo"
    (parent / f".smoke.tmp-{dead}-abc").mkdir()
    (parent / f".smoke.old-{dead}").mkdir()
    alive = parent / f".smoke.tmp-{os.getpid()}-xyz"  # a live writer's folder stays
    alive.mkdir()
    store.cached("demo", "smoke", {"n": 4}, _compute([]))
    assert sorted(p.name for p in parent.iterdir()) == sorted(["smoke", alive.name])


def test_result_folders_are_group_readable(results):
    store.cached("demo", "smoke", {"n": 3}, _compute([]))
    folder = results / "demo" / "smoke"
    assert folder.stat().st_mode & 0o050 == 0o050
    assert (folder / "table.csv").stat().st_mode & 0o040


def test_provenance_records_threads_and_blas(results):
    import torch  # noqa: F401  (torch loaded: its threads matter)

    store.cached("demo", "smoke", {"n": 3}, _compute([]))
    prov = json.loads((results / "demo" / "smoke" / "provenance.json").read_text())
    numerics = prov["numerics"]
    assert numerics["torch_threads"] == torch.get_num_threads()
    assert numerics["torch"] == torch.__version__ and numerics["numpy_blas"]


def test_pinned_commit_is_recorded(results, monkeypatch):
    head = store._git_commit().split("+")[0]
    if head == "unknown":
        pytest.skip("not a git checkout")
    monkeypatch.setenv("RESONANCE_GIT_COMMIT", head)
    assert store._git_commit().split("+")[0] == head
    monkeypatch.setenv("RESONANCE_GIT_COMMIT", "0" * 40)
    assert store._git_commit().startswith("0" * 40 + "+moved-to-")
