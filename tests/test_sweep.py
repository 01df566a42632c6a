"""resonance.sweep: cells keyed by config hash, in-process vs a two-worker LocalCluster,
failures reported without stopping the others, and a killed-then-rerun sweep that resumes."""

import json
import os
import signal
import sys
import time

import pytest

from resonance import cli, paths, store, sweep
from resonance.io import config_hash

RECIPE = dict(context=16, corpus="synthetic", vocab_size=64, batch_size=4, tokens=4 * 16 * 20,
              lr=3e-3, warmup=2, eval_every=10, eval_tokens=256)


def tiny_sweep(seeds=(0, 1), widths=(8, 16)):
    """Training runs of tiny GPT-2s and the measure grid of every pair of them."""
    runs = [sweep.train_cell("gpt2", d, 1, s, RECIPE) for d in widths for s in seeds]
    grids = [sweep.grid_cell(a, b) for i, a in enumerate(runs) for b in runs[i + 1:]]
    return runs + grids


def digests(cells):
    """Every cell's table and meta hashes, as recorded in its provenance."""
    return {c.key: json.loads((c.folder / "provenance.json").read_text())["file_sha256"]
            for c in cells}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    return tmp_path / "cache"


# -- cells and plans (no cluster) ----------------------------------------------------------------

def test_cells_are_keyed_by_config_hash_and_duplicates_collapse(cache):
    a, b = sweep.train_cell("gpt2", 8, 1, 0, RECIPE), sweep.train_cell("gpt2", 8, 1, 0, RECIPE)
    assert a.key == b.key == f"train-{config_hash(a.config)}"
    assert a.folder == cache / "sweep" / "train" / a.hash
    c = sweep.train_cell("gpt2", 8, 1, 1, RECIPE)
    grid = sweep.grid_cell(a, c)
    assert [x.key for x in sweep._order([grid, a, b, c])] == [a.key, c.key, grid.key]
    with pytest.raises(ValueError, match="not in the sweep"):
        sweep._order([grid])
    with pytest.raises(ValueError, match="bad training recipe"):
        sweep.train_cell("gpt2", 8, 1, 0, {"not_a_field": 1})


def test_parse_seeds():
    assert sweep.parse_seeds("0-9") == list(range(10))
    assert sweep.parse_seeds("0,2,5-7") == [0, 2, 5, 6, 7]
    for bad in ("a-b", "3,3", ""):
        with pytest.raises(ValueError, match="--seeds"):
            sweep.parse_seeds(bad)


def test_scale_cells_are_the_ladder_times_seeds_then_the_experiment(monkeypatch, tmp_path):
    from resonance.experiments import scale
    monkeypatch.setattr(paths, "RESULTS", tmp_path / "results")
    cells = sweep.experiment_cells("scale", "smoke", seeds=[0, 1, 2, 3])
    *runs, final = cells
    ladder = scale.SIZES["smoke"]["ladder"]
    assert len(runs) == len(ladder) * 4 and {c.kind for c in runs} == {"train"}
    assert final.kind == "experiment" and set(final.needs) == {c.key for c in runs}
    # the experiment cell's hash is the results store's key of what run() would store
    with store.planning(), pytest.raises(store.Planned) as planned:
        scale.run("smoke", seeds=[0, 1, 2, 3])
    assert final.config == planned.value.config and final.hash == config_hash(final.config)
    assert final.folder == tmp_path / "results" / scale.NAME / "smoke"
    assert runs[0].config["recipe"] == final.config["recipe"]
    # a paper result stored with another config is not replaced unless asked
    store.write(store.result_dir(scale.NAME, "paper"), {}, {}, {"config_hash": "elsewhere"})
    with pytest.raises(ValueError, match="--replace"):
        sweep.experiment_cells("01_scale", "paper", seeds=[0, 1, 2, 3, 4, 5])
    assert sweep.experiment_cells("01_scale", "paper", replace=True)[-1].kind == "experiment"
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        sweep.experiment_cells("nope")


def test_a_failed_cell_is_reported_and_the_others_still_run(cache):
    good = sweep.train_cell("gpt2", 8, 1, 0, RECIPE)
    bad = sweep.train_cell("nosuchfamily", 8, 1, 0, RECIPE)
    cells = [bad, good, sweep.grid_cell(bad, good)]
    summary = sweep.run_sweep(cells, progress=False)
    assert summary.computed == [good.key] and set(summary.failed) == {bad.key, cells[2].key}
    assert "Traceback" in summary.failed[bad.key]
    assert "unknown model family 'nosuchfamily'" in summary.failed[bad.key]
    assert "skipped: it needs" in summary.failed[cells[2].key]
    report = summary.report()
    assert "1 computed, 0 cached, 2 failed" in report and "FAILED train nosuchfamily" in report
    again = sweep.run_sweep([good], progress=False)
    assert again.cached == [good.key] and not again.computed


def test_workers_with_other_versions_are_refused():
    client = sweep.worker_environment_of_client()
    other = {**client, "packages": {**client["packages"], "torch": "1.0"},
             "numerics": {**client["numerics"], "torch_threads": 4}}
    sweep.check_environments({"w1": client}, client)
    with pytest.raises(sweep.EnvironmentMismatchError,
                       match=r"w2: packages \{'torch': '1.0'\}.*w2: torch runs 4 threads"):
        sweep.check_environments({"w1": client, "w2": other}, client)


def test_a_cluster_without_distributed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"\.\[sweep\]"):
        with sweep.connect(workers=2):
            pass
    with sweep.connect() as client:  # in-process needs no Dask
        assert client is None


def test_cli_sweep_rejects_bad_input(capsys):
    assert cli.main(["sweep", "nope"]) == cli.EXIT_BAD_INPUT
    assert "unknown experiment 'nope'" in capsys.readouterr().err
    assert cli.main(["sweep", "scale", "--seeds", "x"]) == cli.EXIT_BAD_INPUT
    assert "--seeds takes" in capsys.readouterr().err


# -- a two-worker LocalCluster on loopback -------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two single-threaded worker processes whose RESONANCE_CACHE is a temporary folder."""
    distributed = pytest.importorskip("distributed")
    shared = tmp_path_factory.mktemp("shared-cache")
    old = os.environ.get("RESONANCE_CACHE")
    os.environ["RESONANCE_CACHE"] = str(shared)  # what the spawned workers read
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address=":0",
                                      silence_logs=50) as lc, \
                distributed.Client(lc, set_as_default=False) as client:
            yield client, shared
    finally:
        os.environ["RESONANCE_CACHE"] = old


class Interrupted(Exception):
    pass


def test_a_two_worker_sweep_killed_midway_resumes_bit_identical_to_in_process(
        cluster, tmp_path, monkeypatch):
    """The client and a busy worker die after the first result; the rerun computes only the
    cells that had not finished, and every table matches the in-process sweep bit for bit."""
    client, shared = cluster
    cells = tiny_sweep(seeds=(0, 1, 2), widths=(8,))
    monkeypatch.setattr(paths, "CACHE", tmp_path / "in-process")
    local = sweep.run_sweep(cells, progress=False)
    assert local.ok and len(local.computed) == len(cells) and not local.workers
    expected = digests(cells)
    monkeypatch.setattr(paths, "CACHE", shared)
    killed = []

    def kill_a_busy_worker_then_stop(cell, result):
        busy = ([w for w, keys in client.processing().items() if keys]
                or list(client.scheduler_info()["workers"]))
        os.kill(client.run(os.getpid, workers=busy[:1])[busy[0]], signal.SIGKILL)
        killed.append(busy[0])
        raise Interrupted  # the client stops too, mid-sweep

    with pytest.raises(Interrupted):
        sweep.run_sweep(cells, client=client, progress=False,
                        on_result=kill_a_busy_worker_then_stop)
    finished = [c for c in cells if c.done()]
    assert 1 <= len(finished) < len(cells)
    stamps = {p: p.stat().st_mtime_ns for p in shared.glob("runs/*/complete.json")}
    stamps.update({c.folder / "provenance.json": (c.folder / "provenance.json").stat().st_mtime_ns
                   for c in finished})
    deadline = time.monotonic() + 120  # the nanny restarts the killed worker
    while killed[0] in (workers := client.scheduler_info()["workers"]) or len(workers) < 2:
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        time.sleep(0.2)

    resumed = sweep.run_sweep(cells + cells[:2], client=client, progress=False)  # dupes collapse
    assert resumed.ok, resumed.report()
    assert sorted(resumed.cached) == sorted(c.key for c in finished)
    assert sorted(resumed.computed) == sorted(c.key for c in cells if c not in finished)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing finished was redone
    assert digests(cells) == expected  # every table and meta, bit for bit
    assert len(resumed.workers) == 2
    assert {e["numerics"]["torch_threads"] for e in resumed.workers.values()} == {1}
    prov = json.loads((cells[-1].folder / "provenance.json").read_text())
    assert prov["numerics"]["torch_threads"] == 1 and prov["sweep"]["pid"] != os.getpid()
    run = json.loads((cells[0].folder / "meta.json").read_text())["run"]
    assert (shared / "runs" / run / "complete.json").is_file()  # checkpoints: the shared cache
    again = sweep.run_sweep(cells, client=client, progress=False)
    assert not again.computed and len(again.cached) == len(cells)
