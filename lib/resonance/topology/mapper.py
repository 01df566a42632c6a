"""Mapper graphs of a cloud ``X: (n, d)`` with kmapper: build, export, draw, summarise, compare.

A graph is kmapper's dict: ``graph["nodes"]`` maps a node id to the sorted row indices it
holds (a stimulus may sit in several nodes, or in none when the clusterer calls it noise),
``graph["links"]`` maps a node id to its neighbours; ``graph["meta_data"]`` also records
``n_points``, the lens and the clusterer used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kmapper as km
import numpy as np
from scipy import sparse
from sklearn.cluster import DBSCAN, AgglomerativeClustering
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

from .._checks import as_matrix, not_constant

LENSES = ("pca", "pca2", "l2norm")
MIN_SAMPLES = 3


def _lens(X: np.ndarray, lens: Any, seed: int) -> tuple[np.ndarray, str]:
    if isinstance(lens, str):
        if lens == "pca":
            return PCA(1, svd_solver="full", random_state=seed).fit_transform(X), lens
        if lens == "pca2":
            k = min(2, X.shape[1])
            return PCA(k, svd_solver="full", random_state=seed).fit_transform(X), lens
        if lens == "l2norm":
            return np.linalg.norm(X, axis=1)[:, None], lens
        raise ValueError(f"lens must be one of {LENSES} or an array, got {lens!r}")
    L = np.asarray(lens, dtype=np.float64)
    L = L[:, None] if L.ndim == 1 else L
    L = as_matrix(L, "lens", min_rows=1)
    if L.shape[0] != X.shape[0]:
        raise ValueError(f"lens has {L.shape[0]} rows and X has {X.shape[0]}: one lens value "
                         "per stimulus is needed")
    return L, "custom"


def default_eps(X: np.ndarray, quantile: float = 0.9) -> float:
    """Clustering radius from the data: the ``quantile`` of each row's distance to its
    ``k``-th nearest neighbour (itself excluded), ``k = max(3, n / 50)``.

    So ~90% of rows have ~2% of the cloud within ``eps`` (a cube of a 10-interval cover with
    30% overlap holds ~13%): dense parts stay connected inside a cube, well-separated groups
    do not merge.  (The k-NN distance with k = min_samples alone fragments sparse curves.)
    """
    k = min(max(MIN_SAMPLES, int(round(X.shape[0] / 50))), X.shape[0] - 1)
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
    eps = float(np.quantile(dist[:, k], quantile))
    return eps if eps > 0 else float(np.max(dist[:, k])) or 1.0


def _clusterer(X: np.ndarray, clusterer: Any):
    if clusterer is None or clusterer == "dbscan":
        eps = default_eps(X)
        return DBSCAN(eps=eps, min_samples=MIN_SAMPLES), f"DBSCAN(eps={eps:.6g}, min_samples={MIN_SAMPLES})"
    if clusterer == "agglomerative":
        eps = default_eps(X)
        return (AgglomerativeClustering(n_clusters=None, distance_threshold=eps, linkage="single"),
                f"AgglomerativeClustering(single, distance_threshold={eps:.6g})")
    if isinstance(clusterer, str):
        raise ValueError(f"clusterer must be None, 'dbscan', 'agglomerative' or a sklearn "
                         f"clusterer, got {clusterer!r}")
    return clusterer, str(clusterer)


def mapper_graph(X: Any, lens: Any = "pca", n_cubes: int = 10, perc_overlap: float = 0.3,
                 clusterer: Any = None, seed: int = 0) -> dict:
    """Mapper graph of ``X: (n, d)`` (kmapper dict, see the module docstring).

    ``lens``: ``"pca"`` (first principal component, the default), ``"pca2"`` (first two),
    ``"l2norm"`` (row norm) or an array ``(n,)``/``(n, k)``.  The lens range is covered by
    ``n_cubes`` intervals per lens dimension overlapping by ``perc_overlap``; the rows in
    each interval are clustered in the full space ``X``.  ``clusterer=None``/``"dbscan"``:
    DBSCAN with ``min_samples=3`` and ``eps`` from :func:`default_eps` (a 0.9 quantile of
    k-nearest-neighbour distances; rows DBSCAN calls noise join no node);
    ``"agglomerative"``: single linkage cut at the same ``eps`` (every row joins a node);
    or any sklearn clusterer.  Deterministic given ``seed``.
    """
    X = not_constant(as_matrix(X, "X", min_rows=2), "X")
    if not isinstance(n_cubes, (int, np.integer)) or n_cubes < 1:
        raise ValueError(f"n_cubes must be a positive integer, got {n_cubes!r}")
    if not 0 <= perc_overlap < 1:
        raise ValueError(f"perc_overlap must lie in [0, 1), got {perc_overlap}")
    L, lens_name = _lens(X, lens, seed)
    model, model_name = _clusterer(X, clusterer)
    mapper = km.KeplerMapper(verbose=0)
    g = mapper.map(L, X, clusterer=model, cover=km.Cover(n_cubes=int(n_cubes),
                                                         perc_overlap=float(perc_overlap)))
    nodes = {k: sorted(int(i) for i in v) for k, v in g["nodes"].items()}
    links = {k: list(v) for k, v in g["links"].items()}
    meta = dict(g["meta_data"], n_points=int(X.shape[0]), lens=lens_name, clusterer=model_name,
                seed=int(seed))
    return {"nodes": nodes, "links": links, "simplices": [list(s) for s in g["simplices"]],
            "meta_data": meta, "meta_nodes": dict(g["meta_nodes"])}


def _nx(graph: dict):
    from kmapper.adapter import to_networkx  # imports networkx (a dependency of torch)
    return to_networkx(graph)


def mapper_stats(graph: dict) -> dict[str, float]:
    """``nodes``, ``edges``, ``components``, ``betti1`` (independent cycles of the graph,
    ``edges - nodes + components``), ``mean_node_size``, ``covered`` (distinct rows in some
    node) and ``coverage`` (``covered / n_points``, NaN when ``n_points`` is unknown)."""
    import networkx as nx

    g = _nx(graph)
    V, E = g.number_of_nodes(), g.number_of_edges()
    C = nx.number_connected_components(g) if V else 0
    members = [set(v) for v in graph["nodes"].values()]
    covered = len(set().union(*members)) if members else 0
    n = graph.get("meta_data", {}).get("n_points")
    return {"nodes": float(V), "edges": float(E), "components": float(C),
            "betti1": float(E - V + C),
            "mean_node_size": float(np.mean([len(m) for m in members])) if members else 0.0,
            "covered": float(covered), "coverage": covered / n if n else float("nan")}


def _codes(labels: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).ravel()
    if labels.shape[0] != n:
        raise ValueError(f"labels has {labels.shape[0]} entries but X has {n} rows")
    names, codes = np.unique(labels, return_inverse=True)
    return names, codes


def mapper_html(graph: dict, X: Any, path: str | Path, labels: Any = None,
                title: str = "resonance: Mapper graph") -> Path:
    """Write kmapper's interactive HTML view of ``graph`` (built on ``X: (n, d)``) to ``path``.

    ``labels (n,)``: nodes are coloured by the mean label (numeric labels as they are,
    others by their sorted category code) and each row's label is its tooltip.
    """
    X = as_matrix(X, "X", min_rows=2)
    if not graph.get("nodes"):
        raise ValueError("the Mapper graph has no nodes; lower eps/n_cubes or change the lens")
    n_graph = graph.get("meta_data", {}).get("n_points")
    if n_graph is not None and n_graph != X.shape[0]:
        raise ValueError(f"graph was built on {n_graph} rows but X has {X.shape[0]}")
    kwargs: dict[str, Any] = {}
    if labels is not None:
        lab = np.asarray(labels).ravel()
        names, codes = _codes(lab, X.shape[0])
        numeric = np.issubdtype(lab.dtype, np.number)
        kwargs = {"color_values": lab.astype(float) if numeric else codes.astype(float),
                  "color_function_name": "label" if numeric else "label code",
                  "custom_tooltips": lab.astype(str)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    km.KeplerMapper(verbose=0).visualize(graph, path_html=str(path), title=title, X=X, **kwargs)
    return path


def draw_mapper(graph: dict, ax=None, labels: Any = None, seed: int = 0, cmap: str = "tab10"):
    """Static matplotlib drawing of ``graph`` on ``ax`` (spring layout with ``seed``).

    Node area grows with its size; with ``labels (n,)`` each node takes the colour of its
    majority label (ties to the smallest) and a legend is added.  Returns ``ax``.
    """
    import matplotlib.pyplot as plt
    import networkx as nx

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    g = _nx(graph)
    ids = list(g.nodes)
    pos = nx.spring_layout(g, seed=seed)
    sizes = np.array([len(graph["nodes"][k]) for k in ids], dtype=float)
    area = 20 + 280 * np.sqrt(sizes / sizes.max()) if len(sizes) else []
    colours: Any = "C0"
    if labels is not None:
        n = graph.get("meta_data", {}).get("n_points", len(np.asarray(labels).ravel()))
        names, codes = _codes(labels, n)
        majority = [np.bincount(codes[graph["nodes"][k]], minlength=len(names)).argmax()
                    for k in ids]
        palette = plt.get_cmap(cmap)
        colours = [palette(c % palette.N) for c in majority]
        for c, name in enumerate(names):
            ax.scatter([], [], color=palette(c % palette.N), label=str(name))
        ax.legend(loc="best", fontsize="small", frameon=False)
    nx.draw_networkx_edges(g, pos, ax=ax, alpha=0.5)
    nx.draw_networkx_nodes(g, pos, nodelist=ids, node_size=area, node_color=colours, ax=ax,
                           edgecolors="k", linewidths=0.5)
    ax.set_axis_off()
    return ax


def _membership(graph: dict, n: int) -> sparse.csr_matrix:
    rows, cols = [], []
    for j, members in enumerate(graph["nodes"].values()):
        if members and max(members) >= n:
            raise ValueError(f"graph holds row {max(members)} but n is {n}")
        rows.extend(members)
        cols.extend([j] * len(members))
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, len(graph["nodes"])))


def _comembership(graph: dict, n: int) -> sparse.csr_matrix:
    M = _membership(graph, n)
    C = (M @ M.T).tocsr()
    C.setdiag(0)
    C.eliminate_zeros()
    return sparse.triu(C, k=1).astype(bool).tocsr()


def _components(graph: dict, n: int) -> np.ndarray:
    """Component id per row; rows in no node get their own singleton label."""
    import networkx as nx

    labels = np.arange(n) + n  # uncovered rows: distinct labels
    for c, comp in enumerate(nx.connected_components(_nx(graph))):
        for node in comp:
            labels[graph["nodes"][node]] = c
    return labels


def compare_mapper(graph_a: dict, graph_b: dict, n: int | None = None) -> dict[str, float]:
    """Agreement of two Mapper graphs built on the same ``n`` stimuli (e.g. two models).

    - ``comembership_jaccard``: Jaccard index of the sets of stimulus pairs that share a
      node (1 = the same pairs; 1 when both sets are empty);
    - ``component_ari``: adjusted Rand index of the partitions of stimuli into connected
      components (rows in no node count as singletons);
    - for each :func:`mapper_stats` entry ``s``: ``s_a``, ``s_b`` and ``delta_s = s_b - s_a``.
    """
    if n is None:
        na = graph_a.get("meta_data", {}).get("n_points")
        nb = graph_b.get("meta_data", {}).get("n_points")
        if na is None or nb is None:
            raise ValueError("pass n: the graphs do not record how many stimuli they hold")
        if na != nb:
            raise ValueError(f"graph_a holds {na} stimuli and graph_b {nb}: they must be built on "
                             "the same stimuli")
        n = na
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    Ca, Cb = _comembership(graph_a, n), _comembership(graph_b, n)
    inter = Ca.multiply(Cb).nnz
    union = Ca.nnz + Cb.nnz - inter
    out = {"comembership_jaccard": inter / union if union else 1.0,
           "component_ari": float(adjusted_rand_score(_components(graph_a, n),
                                                      _components(graph_b, n)))}
    sa, sb = mapper_stats(graph_a), mapper_stats(graph_b)
    for k in sa:
        out[f"{k}_a"], out[f"{k}_b"], out[f"delta_{k}"] = sa[k], sb[k], sb[k] - sa[k]
    return out


def graphs_to_tables(graphs: dict[str, dict]):
    """Mapper graphs ``{model: graph}`` as two tidy tables: membership (model, node, item) and
    links (model, source, target); :func:`graph_from_tables` reads them back."""
    import pandas as pd

    membership = pd.DataFrame([{"model": model, "node": node, "item": int(i)}
                               for model, graph in graphs.items()
                               for node, items in graph["nodes"].items() for i in items])
    links = pd.DataFrame([{"model": model, "source": s, "target": t}
                          for model, graph in graphs.items()
                          for s, targets in graph["links"].items() for t in targets],
                         columns=["model", "source", "target"])
    return membership, links


def graph_from_tables(membership, links, model: str | None = None) -> dict:
    """Rebuild one Mapper graph (``nodes`` and ``links`` of kmapper's dict form) from the tables
    of :func:`graphs_to_tables`; ``model`` picks one when the tables hold several."""
    if model is not None and "model" in membership:
        membership = membership[membership["model"] == model]
        links = links[links["model"] == model]
    if membership.empty:
        raise ValueError(f"no Mapper nodes for model {model!r} in the membership table")
    nodes = {node: group["item"].tolist() for node, group in membership.groupby("node", sort=True)}
    out: dict[str, list[str]] = {}
    for source, target in links[["source", "target"]].itertuples(index=False):
        out.setdefault(source, []).append(target)
    return {"nodes": nodes, "links": out}

