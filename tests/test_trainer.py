"""The epoch loop: bit-identical resume, checkpoint contents, and transfer on synthetic data."""

from __future__ import annotations

import json

import pytest
import torch

from metaxl_tune.checkpoint import load_checkpoint
from metaxl_tune.config import RunConfig
from metaxl_tune.trainer import Run


def small(**changes) -> RunConfig:
    values = dict(model="tiny", data="synthetic", task="ner", target="tk", source="related", method="metaxl",
                  epochs=2, lr=3e-3, meta_lr=1e-3, rtn_bottleneck=16, rtn_layers=[0, "last"], source_size=96,
                  batch_size=16, max_length=48)
    return RunConfig(**{**values, **changes})


class Interrupt(Exception):
    pass


def stop_after_first_epoch(entry, _checkpoint):
    if entry.epoch == 1:
        raise Interrupt


@pytest.mark.parametrize("theta_update", ["algorithm1", "recompute"])
def test_resume_continues_bit_identically(tmp_path, shared_cache, theta_update):
    config = small(theta_update=theta_update)
    straight = Run(config, tmp_path / "straight", cache_dir=shared_cache, progress=False)
    expected = straight.fit()

    interrupted = Run(config, tmp_path / "resumed", cache_dir=shared_cache, progress=False)
    with pytest.raises(Interrupt):
        interrupted.fit(on_epoch=stop_after_first_epoch)
    resumed = Run(config, tmp_path / "resumed", cache_dir=shared_cache, progress=False)
    result = resumed.fit(resume_from=tmp_path / "resumed" / "checkpoint")

    assert [(e.dev_f1, e.test_f1, e.train_loss, e.meta_loss) for e in result.history] == [
        (e.dev_f1, e.test_f1, e.train_loss, e.meta_loss) for e in expected.history
    ]
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.rtn.state_dict().values(), resumed.rtn.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_holds_everything_a_resume_needs(tmp_path, shared_cache):
    run = Run(small(epochs=1), tmp_path, cache_dir=shared_cache, progress=False)
    run.fit()
    state = load_checkpoint(tmp_path / "checkpoint")
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert set(state["learner"]) == {"main_opt", "main_schedule", "meta_opt", "meta_schedule"}
    assert set(state["phi"]) == {"mix_logits"} | {
        f"rtns.{layer}.{p}" for layer in (0, 4) for p in ("down.weight", "down.bias", "up.weight", "up.bias")
    }
    assert "torch" in state["rng"] and state["theta"].keys() == run.model.state_dict().keys()


def test_run_writes_model_rtn_config_and_results(tmp_path, shared_cache):
    run = Run(small(epochs=1), tmp_path, cache_dir=shared_cache, progress=False)
    result = run.fit()
    # the learned mixture weights of the two placements, per epoch, as metrics
    weights = {key: value for key, value in result.history[0].metrics().items() if key.startswith("rtn_mix_")}
    assert set(weights) == {"rtn_mix_0", "rtn_mix_4"} and sum(weights.values()) == pytest.approx(1.0)
    assert weights["rtn_mix_0"] != 0.5  # stepped by the meta optimizer
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["best_epoch"] == 1 and results["config"]["method"] == "metaxl"
    assert (tmp_path / "model" / "config.json").is_file() and (tmp_path / "model" / "tokenizer.json").is_file()
    assert torch.load(tmp_path / "rtn.pt", weights_only=True)["placements"] == [0, 4]
    assert (tmp_path / "config.yaml").read_text() == run.config.to_yaml()


def test_rtn_layer_past_the_depth_fails_before_data_work(tmp_path):
    with pytest.raises(ValueError, match=r"rtn_layers: layer 12 is past the depth of model tiny \(4 layers\)"):
        Run(small(rtn_layers=[12]), tmp_path, cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()


def test_joint_training_beats_target_only_at_the_same_budget(tmp_path, shared_cache):
    # About 180 optimizer steps each: JT passes 3 times over 960 source sentences (60 steps an
    # epoch), target-only 26 times over the 100 target sentences (7 steps an epoch).
    base = dict(model="tiny", data="synthetic", task="ner", target="tk", lr=3e-3, max_length=64)
    jt = Run(RunConfig(**base, method="jt", source_size=960, epochs=3), tmp_path / "jt", cache_dir=shared_cache,
             progress=False, save_model=False)
    alone = Run(RunConfig(**base, method="target-only", epochs=26), tmp_path / "alone", cache_dir=shared_cache,
                progress=False, save_model=False)
    assert abs(jt.steps_per_epoch * 3 - alone.steps_per_epoch * 26) <= 5
    jt_f1 = jt.fit().best.best_dev_f1
    alone_f1 = alone.fit().best.best_dev_f1
    assert jt_f1 > alone_f1 + 5
