"""Search runner helpers: ASHA's horizon counts the epochs of both stages."""

from __future__ import annotations

from metaxl_tune.config import RunConfig
from metaxl_tune.search.space.strategy import max_epochs
from metaxl_tune.search.space.schema import SearchSpace


def test_the_scheduler_horizon_includes_the_largest_finetune_stage():
    base = RunConfig(model="tiny", data="synthetic", epochs=20)
    space = SearchSpace.from_dict({"fixed": {"method": "metaxl", "epochs": 4},
                                   "parameters": {"finetune_epochs": {"type": "categorical", "values": [0, 3]}}})
    assert max_epochs(space, base) == 4 + 3
    assert max_epochs(SearchSpace.from_dict({"parameters": {"meta_lr": {"type": "categorical", "values": [1e-6]}}}),
                       base) == 20
