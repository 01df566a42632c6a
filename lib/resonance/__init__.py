"""resonance: how alike two neural networks organise their representations.

Modules (import what you need; heavy ones are not imported here):

- ``paths``, ``seeding``, ``profiles``, ``store``, ``plots`` -- plumbing;
- ``similarity``, ``topology``, ``metrics`` -- the measures; ``measures`` -- their registry;
- ``data``, ``zoo``, ``activations``, ``train`` -- corpora, models and features;
- ``experiments`` -- one module per notebook finding.
"""

import warnings

__version__ = "0.1.0"

# tqdm.auto (imported by transformers) warns in notebooks without ipywidgets; progress bars are
# off in notebooks anyway, and the warning would land in nbval-compared stderr.
warnings.filterwarnings("ignore", message="IProgress not found")
