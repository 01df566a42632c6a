"""``python -m resonance compare A B`` / ``rank --reference X C1 C2`` / ``sweep EXPERIMENT``."""

import sys

from .cli import main

if __name__ == "__main__":  # a sweep's worker processes re-import this module (spawn)
    sys.exit(main())
