"""What the phase mechanism of a trained Resonance Transformer does (notebook 04).

For one training run, at init (step 0) and at the end: the spread of the resonance matrix
``R`` off the diagonal on validation windows, the blend σ(b), the attention-bias weights
``w_h`` per layer and head, and how tightly token groups (rhyme groups; the run's own init
groups) sit together in phase space.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from . import models
from .models import resonance_lm as rt
from .seeding import seed_everything


def rhyme_stats(tokenizer_name: str, vocab_size: int) -> dict[str, Any]:
    """How much of the vocabulary the rhyme init touches."""
    groups = rt.tokenizer_rhyme_groups(tokenizer_name, vocab_size)
    members = sum(len(g) for g in groups.values())
    return {"rhyme_groups": len(groups), "rhyme_tokens": members,
            "rhyme_share": members / vocab_size,
            "rhyme_multi_groups": sum(len(g) > 1 for g in groups.values())}


def init_groups(tc) -> dict[str, list[int]] | None:
    """The groups a run's phases were tied in at init, rebuilt with the run's own seed."""
    with torch.random.fork_rng(devices=[]):
        seed_everything(tc.seed)
        model = models.build(tc.family, tc.vocab_size, tc.d_model, tc.n_layers,
                             n_heads=tc.n_heads, context=tc.context, **tc.model_kwargs())
    return model.phase_groups


def validation_windows(tc, n: int = 64) -> torch.Tensor:
    """The first ``n`` validation windows of a run's corpus, ``(n, context)`` token ids."""
    from .train import _load_data, _val_windows

    _, _, val = _load_data(tc)
    return _val_windows(val, tc)[:n, :-1]


def mechanism_rows(tc, windows: torch.Tensor, groups: Mapping[str, Mapping | None]
                   ) -> tuple[list[dict], list[dict]]:
    """Rows of one run at ``stage`` init and end (R's spread, blend, w summaries and the
    within / between / cohesion of every named group set in ``groups``: ``None`` skips one),
    and the end's ``w_h`` per layer and head."""
    from .train import load_checkpoint

    rows, heads = [], []
    for stage, step in (("init", 0), ("end", tc.n_steps)):
        model = load_checkpoint(tc, step)
        row: dict[str, Any] = {"stage": stage, **rt.resonance_spread(model, windows)}
        state = rt.mechanism_state(model)
        row.update({k: v for k, v in state.items() if k != "w"})
        w = np.asarray(state["w"], float)
        row["w_mean"], row["w_abs_max"] = float(w.mean()), float(np.abs(w).max())
        row["bias_spread"] = float(np.abs(w).mean()) * row["r_std"]
        for prefix, g in groups.items():
            if g is None:
                continue
            c = rt.group_cohesion(model.phase.weight, g)
            row.update({f"{prefix}_within": c["within"], f"{prefix}_between": c["between"],
                        f"{prefix}_cohesion": c["cohesion"]})
        rows.append(row)
        if stage == "end":
            heads = [{"layer": layer, "head": head, "w": float(value)}
                     for layer, ws in enumerate(state["w"]) for head, value in enumerate(ws)]
    return rows, heads


def mechanism_tables(done, rhyme: Mapping | None, windows: torch.Tensor,
                     no_heads: tuple[str, ...] = ()):
    """:func:`mechanism_rows` of every run ``{arm, config, seed, train_config}`` of ``done``,
    with the rhyme groups and the run's own init groups, as two tables (per stage; ``w_h``
    per layer and head, except for configurations in ``no_heads``)."""
    import pandas as pd

    rows, head_rows = [], []
    for r in done:
        key = {"arm": r["arm"], "config": r["config"], "seed": r["seed"]}
        groups = {"rhyme": rhyme, "own": init_groups(r["train_config"])}
        stages, heads = mechanism_rows(r["train_config"], windows, groups)
        rows += [{**key, **row} for row in stages]
        if r["config"] not in no_heads:
            head_rows += [{**key, **h} for h in heads]
    return pd.DataFrame(rows), pd.DataFrame(head_rows)


__all__ = ["rhyme_stats", "init_groups", "validation_windows", "mechanism_rows", "mechanism_tables"]
