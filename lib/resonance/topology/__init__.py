"""Topological comparison of representations (persistent homology, RTD, Mapper).

Shapes: a point cloud ``X`` is ``(n, d)`` -- ``n`` stimuli, ``d`` features; a persistence
diagram is ``(k, 2)`` -- one ``(birth, death)`` row per bar.  Two clouds compared with each
other (``X: (n, d1)``, ``Y: (n, d2)``) hold the same ``n`` stimuli in the same order.

Modules:

- :mod:`.persistence` -- ``subsample``, ``persistence`` (ripser), ``betti_curve``;
- :mod:`.summary` -- ``total_persistence``, ``persistent_entropy``, the 41-feature
  ``persistence_summary``;
- :mod:`.distances` -- ``diagram_distance`` (persim), ``topological_resonance``,
  ``topological_null``;
- :mod:`.rtd` -- Representation Topology Divergence (Barannikov et al. 2022);
- :mod:`.mapper` -- Mapper graphs (kmapper): build, export, draw, summarise, compare, tables;
- :mod:`.features` -- scale normalisation, scale-only and topological features, Gaussian nulls.
"""

from .distances import ResonanceResult, diagram_distance, topological_null, topological_resonance
from .mapper import (compare_mapper, draw_mapper, graph_from_tables, graphs_to_tables,
                     mapper_graph, mapper_html, mapper_stats)
from .persistence import betti_curve, persistence, subsample
from .rtd import rtd, rtd_barcode
from .summary import SUMMARY_FEATURES, persistence_summary, persistent_entropy, total_persistence
from .features import (MAPPER_FEATURES, SCALE_FEATURES, gaussian_h1_diagrams, h1_diagram,
                       normalise_scale, scale_features, topo_features)

__all__ = [
    "subsample", "persistence", "betti_curve",
    "total_persistence", "persistent_entropy", "persistence_summary", "SUMMARY_FEATURES",
    "diagram_distance", "topological_resonance", "topological_null", "ResonanceResult",
    "rtd", "rtd_barcode",
    "mapper_graph", "mapper_html", "mapper_stats", "draw_mapper", "compare_mapper",
    "graphs_to_tables", "graph_from_tables",
    "normalise_scale", "scale_features", "topo_features", "h1_diagram",
    "gaussian_h1_diagrams", "MAPPER_FEATURES", "SCALE_FEATURES",
]
