import json

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
    with pytest.raises(RuntimeError):
        with store.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError
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
