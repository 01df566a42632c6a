"""00_tour's headline logic (summarise / verdict) and its template control, on synthetic tables."""

import numpy as np
import pandas as pd
import pytest

from resonance import stimuli
from resonance.experiments import tour

CONFIG = {"model_a": "model-a", "model_b": "model-b", "layer_a": -1, "layer_b": -1,
          "n_topo_null": 99, "n_null": 199}


def _global(cka=(0.65, 0.62, 0.68, 0.02), knn=(0.5, 0.45, 0.55, 0.06), pd_=(4.0, 2.9, 0.9)):
    def row(measure, value, low, high, null_high, p, null="shuffle", null_mean=0.0):
        return {"measure": measure, "value": value, "ci_low": low, "ci_high": high,
                "null_mean": null_mean, "null_low": -null_high, "null_high": null_high,
                "p_value": p, "null": null, "n": 200}
    return pd.DataFrame([
        row("cka_linear_debiased", *cka, p=0.005),
        row("mutual_knn", *knn, p=0.005),
        row("persistence_distance", pd_[0], pd_[0] - 1, pd_[0] + 1, pd_[1] + 0.3, pd_[2],
            null="gaussian", null_mean=pd_[1])]).assign(
        null_low=lambda t: np.where(t["measure"] == "persistence_distance", t["null_mean"] - 0.3,
                                    t["null_low"]))


def _local(values, halfwidth=0.15, null_high=0.15):
    concepts = [f"c{i}" for i in range(len(values))]
    return pd.DataFrame({"concept": concepts, "measure": "cka_linear_debiased", "value": values,
                         "ci_low": np.subtract(values, halfwidth),
                         "ci_high": np.add(values, halfwidth), "null_high": null_high})


def _positions(values, null_high=0.05):
    rows = []
    for stage, vals in (("embeddings", [0.3] * len(values)), ("chosen layers", values)):
        for p, v in enumerate(vals):
            rows.append({"position": p, "n": 100, "value": v, "null_high": null_high,
                         "p_value": 0.01 if v > null_high else 0.4, "stage": stage,
                         "aligned_texts": 120})
    return pd.DataFrame(rows)


def _tables(**changes):
    grid = np.full((3, 4), 0.5)
    grid[1, 2] = 0.8
    layers = pd.DataFrame([{"layer_a": i, "layer_b": j, "value": grid[i, j]}
                           for i in range(3) for j in range(4)])
    tables = {
        "global": _global(), "local": _local([0.6, 0.7, 0.8]), "layers": layers,
        "layer_map": pd.DataFrame({"layer_a": [0, 1, 2], "layer_b": [0, 2, 3]}),
        "best_layer": pd.DataFrame([{"layer_a": 1, "layer_b": 2, "value": 0.8,
                                     "null_high": 0.04, "p_value": 0.01}]),
        "positions": _positions([0.6, 0.5, 0.4]),
        "topology": pd.DataFrame({"variant": list(tour.TOPOLOGY_VARIANTS),
                                  "value": [3.0, 5.0, 3.5], "null_mean": [10.0, 35.0, 5.0],
                                  "null_low": [9.0, 34.0, 4.5], "p_value": [0.01, 0.01, 0.01]}),
        "template_control": pd.DataFrame([
            {"form": "word", "models": 0.65, "a_concept": 0.38, "b_concept": 0.46,
             "a_template": np.nan, "b_template": np.nan},
            {"form": "sentence", "models": 0.92, "a_concept": 0.16, "b_concept": 0.19,
             "a_template": 0.82, "b_template": 0.81}]),
    }
    tables.update(changes)
    return tables


def test_summarise_reads_every_metric_from_its_table():
    meta = tour.summarise(_tables(), CONFIG)
    assert meta["n_stimuli"] == 200 and meta["n_concepts"] == 3
    assert meta["knn_chance"] == pytest.approx(10 / 199)
    assert meta["global_beyond_null"] is True
    assert (meta["best_local"], meta["worst_local"]) == ("c2", "c0")
    assert meta["local_beyond_null"] == 3 and meta["local_ranking_resolved"] is False
    assert (meta["best_layer_a"], meta["best_layer_b"]) == (1, 2)
    assert meta["chosen_layer_value"] == pytest.approx(0.5)  # layer -1 of each = (2, 3)
    assert meta["pos_chosen_n_positions"] == 3 and meta["pos_chosen_beyond_null"] == 3
    assert meta["pos_chosen_max"] == pytest.approx(0.6)
    assert meta["pos_lexical_above_contextual"] is False  # embeddings 0.3 < 0.6
    assert meta["topo_informative"] is False and meta["pd_p"] == pytest.approx(0.9)
    assert meta["topo_others_beyond_null"] == meta["topo_others"] == 3
    assert meta["template_dominates"] is True
    assert "0.65 [0.62, 0.68]" in meta["headline"] and "(p = 0.90)" in meta["headline"]
    assert meta["verdict"] == tour.verdict(meta)


def test_verdict_says_resonance_only_when_both_intervals_clear_their_nulls():
    yes = tour.verdict(tour.summarise(_tables(), CONFIG))
    assert yes.startswith("Global: model-a and model-b resonate")
    overlapping = _global(cka=(0.03, -0.01, 0.07, 0.02))
    meta = tour.summarise(_tables(**{"global": overlapping}), CONFIG)
    assert meta["global_beyond_null"] is False
    assert tour.verdict(meta).startswith("Global: no resonance beyond shuffled pairs")


def test_verdict_words_topology_by_its_p_value():
    uninformative = tour.verdict(tour.summarise(_tables(), CONFIG))
    assert "is not informative here" in uninformative and "3 of 3 other settings" in uninformative
    informative = tour.summarise(_tables(**{"global": _global(pd_=(1.0, 3.0, 0.01))}), CONFIG)
    assert informative["topo_informative"] is True
    assert "is below its Gaussian null" in tour.verdict(informative)


def test_verdict_resolves_a_local_ranking_only_when_the_intervals_are_apart():
    apart = tour.summarise(_tables(local=_local([0.1, 0.5, 0.9], halfwidth=0.05)), CONFIG)
    assert apart["local_ranking_resolved"] is True and apart["local_beyond_null"] == 2
    assert "and the ranking is resolved" in tour.verdict(apart)
    assert "not resolved" in tour.verdict(tour.summarise(_tables(), CONFIG))


def test_positions_inside_their_null_are_not_counted():
    meta = tour.summarise(_tables(positions=_positions([0.6, 0.02, 0.01])), CONFIG)
    assert meta["pos_chosen_beyond_null"] == 1
    assert "1 of 3 positions" in tour.verdict(meta)
    low = _positions([0.2, 0.1, 0.25])  # the embeddings (0.3) above every contextual value
    meta = tour.summarise(_tables(positions=low), CONFIG)
    assert meta["pos_lexical_above_contextual"] is True
    assert "more at every position" in tour.verdict(meta)


def test_control_row_separates_template_from_concept_geometry():
    rng = np.random.default_rng(0)
    concepts = np.repeat(["animal", "food", "tool"], 24)
    templates = np.tile(["t0", "t1", "t2", "t3"], 18)
    centres_t, centres_c = rng.standard_normal((4, 16)) * 3, rng.standard_normal((3, 16)) * 0.5
    t_idx, c_idx = np.unique(templates, return_inverse=True)[1], np.unique(concepts, return_inverse=True)[1]
    X = centres_t[t_idx] + centres_c[c_idx] + 0.3 * rng.standard_normal((72, 16))
    Y = X @ np.linalg.qr(rng.standard_normal((16, 16)))[0]
    row = tour.control_row(X, Y, concepts, templates)
    assert row["models"] == pytest.approx(1.0)
    assert row["a_template"] > 0.8 > 0.2 > row["a_concept"]
    assert row["b_template"] == pytest.approx(row["a_template"])
    bare = tour.control_row(X, Y, concepts)
    assert np.isnan(bare["a_template"]) and np.isnan(bare["b_template"])


def test_template_control_labels_each_sentence_with_its_template(monkeypatch):
    """template_control's wiring, on fake activations: vectors that only encode the template."""
    codes = {t: i for i, t in enumerate(stimuli.TEMPLATES)}

    def fake_extract(model, stims):
        rng = np.random.default_rng(len(stims))
        basis = np.linalg.qr(rng.standard_normal((8, 8)))[0][: len(codes) + 1]  # orthonormal
        rows = [basis[next((codes[t] for t in codes if t.format(w=w) == text), len(codes))]
                for text, w in zip(stims.texts, stims.words)]
        X = np.asarray(rows) + 0.01 * rng.standard_normal((len(rows), 8))
        return [X]

    monkeypatch.setattr(tour.activations, "extract", fake_extract)
    table = tour.template_control("a", "b", {"n_per_concept": 2, "seed": 0, "layer_a": -1,
                                             "layer_b": -1})
    assert table["form"].tolist() == ["word", "sentence"]
    sentence = table.set_index("form").loc["sentence"]
    assert sentence["a_template"] > 0.9 and sentence["a_template"] > sentence["a_concept"]
    assert np.isnan(table.set_index("form").loc["word", "a_template"])


def test_a_sentence_outside_the_templates_is_an_error():
    with pytest.raises(ValueError, match="matches no template"):
        tour._template_of("A dog.", "dog")


def test_template_control_flips_when_concepts_carry_the_sentence_geometry():
    concept_led = pd.DataFrame([
        {"form": "word", "models": 0.65, "a_concept": 0.38, "b_concept": 0.46,
         "a_template": np.nan, "b_template": np.nan},
        {"form": "sentence", "models": 0.7, "a_concept": 0.55, "b_concept": 0.5,
         "a_template": 0.10, "b_template": 0.12}])
    meta = tour.summarise(_tables(template_control=concept_led), CONFIG)
    assert meta["template_dominates"] is False
    assert meta["sentence_concept_cka_a"] == pytest.approx(0.55)


def test_mapper_graphs_round_trip_through_their_tables():
    from resonance import topology

    graphs = {"A": {"nodes": {"n0": [0, 1], "n1": [1, 2]}, "links": {"n0": ["n1"]}},
              "B": {"nodes": {"m0": [2]}, "links": {}}}
    membership, links = topology.graphs_to_tables(graphs)
    assert topology.graph_from_tables(membership, links, "A") == graphs["A"]
    assert topology.graph_from_tables(membership, links, "B") == graphs["B"]
    with pytest.raises(ValueError, match="no Mapper nodes"):
        topology.graph_from_tables(membership, links, "C")


def test_trajectory_summary_counts_only_positions_above_their_null():
    from resonance import positions

    table = pd.DataFrame({"value": [0.6, 0.02, 0.3], "null_high": [0.05, 0.05, 0.4]})
    s = positions.trajectory_summary(table)
    assert s["beyond_null"] == 1 and s["n_positions"] == 3
    assert (s["min"], s["max"], s["null_high"]) == (0.02, 0.6, 0.4)
