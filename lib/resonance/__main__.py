"""``python -m resonance compare A B`` / ``python -m resonance rank --reference X C1 C2``."""

import sys

from .cli import main

sys.exit(main())
