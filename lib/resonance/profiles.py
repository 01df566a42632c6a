"""Run profiles: one code path, different sizes.

- ``smoke``: the whole notebook in a few minutes on 2 CPU cores (CI, via papermill);
- ``paper``: what is committed (outputs, figures, the paper's numbers);
- ``hub``: hub models and datasets for users with internet and a GPU.
"""

from __future__ import annotations

from typing import Mapping, TypeVar

PROFILES = ("smoke", "paper", "hub")

T = TypeVar("T")


def check_profile(profile: str) -> str:
    """Return ``profile`` unchanged, or raise a ``ValueError`` listing the known ones."""
    if profile not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)} "
            "(e.g. papermill -p profile smoke)"
        )
    return profile


def pick(profile: str, options: Mapping[str, T]) -> T:
    """The value of ``options`` for ``profile`` (``hub`` falls back to ``paper``)."""
    check_profile(profile)
    if profile in options:
        return options[profile]
    if profile == "hub" and "paper" in options:
        return options["paper"]
    raise ValueError(f"no setting for profile {profile!r}; known: {sorted(options)}")
