"""Every experiment has the common shape and a hub profile of its own (no silent fallback)."""

import pytest

from resonance.experiments import (architecture, cross_modal, finetuning_topology,
                                   resonance_transformer,
                                   scale, tour)
from resonance.experiments.common import profile_config

MODULES = [tour, scale, architecture, resonance_transformer, finetuning_topology, cross_modal]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.NAME)
def test_experiment_has_the_common_shape_and_a_real_hub_profile(module):
    for name in ("SIZES", "run", "compute", "summarise", "verdict"):
        assert hasattr(module, name), f"{module.NAME} lacks {name}"
    assert set(module.SIZES) == {"smoke", "paper", "hub"}
    assert module.SIZES["hub"] is not module.SIZES["paper"]
    assert module.SIZES["hub"] != module.SIZES["paper"]
    config = profile_config(module.SIZES, "hub", 0, {}, module.VERSION)
    if hasattr(module, "validate_config"):
        module.validate_config(config)
