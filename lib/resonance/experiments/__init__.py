"""One module per notebook finding: ``run(profile, force=False, **overrides) -> Bundle``.

Each module holds its per-profile sizes (``SIZES``), builds a config of literals, and hands a
``compute(config) -> (tables, meta)`` to :func:`resonance.store.cached`, so a notebook re-run
reads committed results instead of recomputing them.
"""
