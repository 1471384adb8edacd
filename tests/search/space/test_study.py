"""Ablation study helpers: dry-run estimates (back-off fine-tuning, several source languages)."""

from __future__ import annotations

import pytest

from metaxl_tune.config import RunConfig
from metaxl_tune.search.space.study import estimated_seconds


def test_finetune_epochs_cost_single_level_steps_on_top_of_the_method():
    config = RunConfig(model="tiny", method="metaxl", epochs=2, source_size=160, batch_size=16)
    # 10 steps an epoch at 0.08 s per JT step: 2 MetaXL epochs (x1.7), 3 fine-tuning epochs (x1.0).
    assert estimated_seconds(config) == pytest.approx(10 * 0.08 * 2 * 1.7)
    assert estimated_seconds(config.replace(finetune_epochs=3)) == pytest.approx(10 * 0.08 * (2 * 1.7 + 3 * 1.0))


def test_estimate_counts_every_source_languages_sample():
    one = RunConfig(model="tiny", target="tk", source="en", source_size=160, batch_size=16, epochs=2)
    two = one.replace(source="en,related")
    assert estimated_seconds(one) == pytest.approx(2 * 10 * 0.08 * 1.7)
    assert estimated_seconds(two) == pytest.approx(2 * estimated_seconds(one))


def test_rerun_study_keeps_one_row_per_distinct_config(tmp_path):
    # best --rerun of a search whose sampler proposed one config twice: the copy is dropped, so
    # the generated study passes the identical-settings check and runs each config once.
    from metaxl_tune.search.driver.ablate import rerun_study
    from metaxl_tune.search.space.study import grid, load_study

    config = RunConfig(model="tiny", data="synthetic", target="tk", meta_lr=1e-4)
    configs = {"aaaa": config, "bbbb": config.replace(seed=7), "cccc": config.replace(meta_lr=3e-4)}
    path = rerun_study(configs, tmp_path / "rerun.study.yaml", origin="top 3")
    study = load_study(str(path), "ner")
    assert [setting for setting in study.settings] == ["aaaa", "cccc"]
    assert len(grid(study, config, targets=["tk"], seeds=2, flags={})) == 4
