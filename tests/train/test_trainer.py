"""The epoch loop: bit-identical resume, checkpoint contents, and transfer on synthetic data."""

from __future__ import annotations

import json

import pytest
import torch

from metaxl_tune.train.checkpoint import load_checkpoint
from metaxl_tune.config import RunConfig
from metaxl_tune.model.rtn import RTN
from metaxl_tune.train.trainer import Run


def small(**changes) -> RunConfig:
    values = dict(model="tiny", data="synthetic", task="ner", target="tk", source="related", method="metaxl",
                  epochs=2, lr=3e-3, meta_lr=1e-3, rtn_bottleneck=16, rtn_layers=[0, "last"], source_size=32,
                  batch_size=16, max_length=32, checkpoint_every="1")
    return RunConfig(**{**values, **changes})


class Interrupt(Exception):
    pass


def stop_after_first_epoch(entry, _checkpoint):
    if entry.epoch == 1:
        raise Interrupt


def straight_and_resumed(config: RunConfig, tmp_path, cache_dir):
    """``config`` run twice: straight through, and stopped after its first epoch then resumed
    from its checkpoint. Returns (straight run, its result, resumed run, its result)."""
    straight = Run(config, tmp_path / "straight", cache_dir=cache_dir, progress=False)
    expected = straight.fit()
    with pytest.raises(Interrupt):
        Run(config, tmp_path / "resumed", cache_dir=cache_dir, progress=False).fit(on_epoch=stop_after_first_epoch)
    resumed = Run(config, tmp_path / "resumed", cache_dir=cache_dir, progress=False)
    return straight, expected, resumed, resumed.fit(resume_from=tmp_path / "resumed" / "checkpoint")


@pytest.mark.parametrize("theta_update", ["algorithm1", "recompute"])
def test_resume_continues_bit_identically(tmp_path, shared_cache, theta_update):
    straight, expected, resumed, result = straight_and_resumed(small(theta_update=theta_update), tmp_path, shared_cache)

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


def two_sources(tmp_path, **changes) -> RunConfig:
    from tests.helpers import write_panx

    for language, count in (("tk", 10), ("en", 14), ("tr", 12)):
        write_panx(tmp_path / "data", language, count)
    values = dict(data=str(tmp_path / "data"), source="en,related", source_size=12, target_size=8, batch_size=4,
                  rtn_layers=["last"], max_length=16)
    return small(**{**values, **changes})


def test_sequential_plan_runs_each_source_language_in_turn(tmp_path):
    run = Run(two_sources(tmp_path, source_strategy="sequential", rtn_per_source=True), tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    plan = list(run.batches.plan(1))
    assert [language for language, _, _ in plan] == [0, 0, 0, 1, 1, 1]
    assert sorted(i for language, source, _ in plan if language == 0 for i in source) == list(range(12))
    assert all(len(target) == 4 for _, _, target in plan)
    # One RTN per source language (one placement each).
    assert sum(isinstance(module, RTN) for module in run.rtn.modules()) == 2


def test_mixed_plan_mixes_languages_and_uses_each_example_once_an_epoch(tmp_path):
    # en 14 + tr 12 examples merged (mtrain.py: merge_data), batches of 4: 7 steps, the last of 2.
    config = two_sources(tmp_path, source_size=14)
    run = Run(config, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    plan = list(run.batches.plan(1))
    assert [len(source) for _, source, _ in plan] == [4, 4, 4, 4, 4, 4, 2]
    assert {stream for stream, _, _ in plan} == {0} and run.steps_per_epoch == 7
    assert sorted(i for _, source, _ in plan for i in source) == list(range(26))
    languages = run.batches.stream_languages[0]
    assert languages == [0] * 14 + [1] * 12
    assert any(len({languages[i] for i in source}) == 2 for _, source, _ in plan)
    again = Run(config, tmp_path / "again", cache_dir=tmp_path / "cache", progress=False)
    assert list(again.batches.plan(1)) == plan
    assert [source for _, source, _ in run.batches.plan(2)] != [source for _, source, _ in plan]


def test_mixed_schedule_spans_the_references_fractional_step_count(tmp_path):
    # mtrain.py: num_train_optimization_steps = len(merged source set) * epochs / batch size.
    run = Run(two_sources(tmp_path, source_size=14, epochs=2), tmp_path / "run", cache_dir=tmp_path / "cache",
              progress=False)
    assert run.batches.schedule_steps == 26 * 2 / 4 and run.steps_per_epoch * 2 == 14
    sequential = Run(two_sources(tmp_path, source_size=14, epochs=2, source_strategy="sequential"),
                     tmp_path / "sequential", cache_dir=tmp_path / "cache", progress=False)
    assert sequential.batches.schedule_steps == 2 * (4 + 3)


def test_mixed_run_reports_examples_per_language_and_resumes_bit_identically(tmp_path):
    config = two_sources(tmp_path, source_size=14, epochs=2)
    straight, expected, resumed, result = straight_and_resumed(config, tmp_path, tmp_path / "cache")
    assert expected.history[0].sources == {"source_examples/en": 14.0, "source_examples/tr": 12.0}
    results = json.loads((tmp_path / "straight" / "results.json").read_text())
    assert results["source_examples"] == {"en": 28, "tr": 24} and results["source_steps"] == {}

    assert [(e.train_loss, e.meta_loss, e.dev_f1) for e in result.history] == [
        (e.train_loss, e.meta_loss, e.dev_f1) for e in expected.history
    ]
    for a, b in zip(straight.rtn.state_dict().values(), resumed.rtn.state_dict().values()):
        assert torch.equal(a, b)


def test_per_source_steps_and_sizes_reach_results(tmp_path):
    run = Run(two_sources(tmp_path, source_strategy="round-robin", epochs=1), tmp_path / "run",
              cache_dir=tmp_path / "cache", progress=False)
    result = run.fit()
    assert result.history[0].metrics()["source_steps/en"] == 3.0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["source_steps"] == {"en": 3, "tr": 3} and results["source_weights"] == {}
    assert results["source_examples"] == {"en": 12, "tr": 12}
    assert results["data_sizes"] == {"source": {"en": 12, "tr": 12}, "target_train": 8, "target_dev": 10, "target_test": 10}


def test_bandit_with_rtn_per_source_resumes_bit_identically(tmp_path):
    config = two_sources(tmp_path, source_strategy="bandit", rtn_per_source=True, epochs=2)
    straight, expected, resumed, result = straight_and_resumed(config, tmp_path, tmp_path / "cache")

    assert [(e.train_loss, e.meta_loss, e.sources) for e in result.history] == [
        (e.train_loss, e.meta_loss, e.sources) for e in expected.history
    ]
    weights = expected.history[-1].sources
    assert weights["source_weight/en"] + weights["source_weight/tr"] == pytest.approx(1.0)
    assert resumed.batches.sources.log_weights == straight.batches.sources.log_weights
    for a, b in zip(straight.rtn.state_dict().values(), resumed.rtn.state_dict().values()):
        assert torch.equal(a, b)


class KilledAtEpoch3(Exception):
    pass


def test_checkpointed_every_two_epochs_and_killed_at_epoch_3_resumes_from_epoch_2(tmp_path, shared_cache):
    config = small(epochs=4, checkpoint_every="2", rtn_layers=["last"])
    written = []

    def kill_at_3(entry, checkpoint):
        written.append((entry.epoch, checkpoint is not None))
        if entry.epoch == 3:
            raise KilledAtEpoch3

    run = Run(config, tmp_path / "run", cache_dir=shared_cache, progress=False, save_model=False)
    with pytest.raises(KilledAtEpoch3):
        run.fit(on_epoch=kill_at_3)
    assert written == [(1, False), (2, True), (3, False)]
    assert load_checkpoint(tmp_path / "run" / "checkpoint")["epoch"] == 2

    resumed = Run(config, tmp_path / "run", cache_dir=shared_cache, progress=False, save_model=False)
    epochs = []
    result = resumed.fit(on_epoch=lambda entry, checkpoint: epochs.append((entry.epoch, checkpoint is not None)),
                         resume_from=tmp_path / "run" / "checkpoint")
    assert epochs == [(3, False), (4, True)]  # epoch 4: the final epoch always checkpoints
    assert [entry.epoch for entry in result.history] == [1, 2, 3, 4]


def test_a_resume_checkpoint_of_another_config_is_refused_before_anything_is_written(tmp_path, shared_cache):
    config = small(epochs=1, rtn_layers=["last"])
    Run(config, tmp_path, cache_dir=shared_cache, progress=False, save_model=False).fit()
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    other = Run(config.replace(meta_lr=1e-4), tmp_path, cache_dir=shared_cache, progress=False, save_model=False)
    with pytest.raises(ValueError, match=r"was written by another config: meta_lr \(0.001 here, 0.0001 asked\)"):
        other.fit(resume_from=tmp_path / "checkpoint")
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before
