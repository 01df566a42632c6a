"""Unit tests never touch the checkout's results/, figures/ or cache/, and never a model hub.

The locations are redirected through the environment before ``resonance.paths`` is imported,
to one temporary folder per test session (so a tokenizer or a tiny model trained by one test
is reused by the next).
"""

import os
import tempfile
from pathlib import Path

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="resonance-tests-"))
for _name in ("RESULTS", "FIGURES", "CACHE", "BUILD"):
    os.environ[f"RESONANCE_{_name}"] = str(_SESSION_DIR / _name.lower())
os.environ.pop("RESONANCE_FORCE", None)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
