"""What every benchmark writes beside its figures: the machine it ran on, and the JSON file."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def machine(load_before: tuple[float, float, float]) -> dict:
    """Platform, cores, torch and its threads, and the load average before and after."""
    import torch

    return {"platform": platform.platform(), "processor": platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "loadavg_before": load_before,
            "loadavg_after": os.getloadavg()}


def write(out: Path, result: dict) -> None:
    """``result`` as indented JSON at ``out`` (its folder created)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
