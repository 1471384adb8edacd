"""Back-off fine-tuning after MetaXL (paper section 4.6): the stage, its record and its resume."""

from __future__ import annotations

import json

import pytest
import torch

from metaxl_tune.train.bilevel import BackoffFinetuner
from metaxl_tune.train.checkpoint import load_checkpoint
from metaxl_tune.config import RunConfig
from metaxl_tune.train.trainer import Run


def small(**changes) -> RunConfig:
    # A resume checkpoint every epoch, so that an interruption after any epoch can resume.
    values = dict(model="tiny", data="synthetic", task="ner", target="tk", source="related", method="metaxl",
                  epochs=1, finetune_epochs=2, lr=3e-3, meta_lr=1e-3, rtn_bottleneck=16, rtn_layers=["last"],
                  source_size=32, batch_size=16, max_length=32, checkpoint_every="1")
    return RunConfig(**{**values, **changes})


class Interrupt(Exception):
    pass


def script_dev_f1(monkeypatch, scores: list[float]) -> None:
    """Dev F1 of epoch k is scores[k - 1] (test F1 stays computed): fixes which epoch is best,
    here one that is not the training stage's last, whatever the tiny model learns."""
    train_epoch, evaluate = Run._train_epoch, Run.evaluate

    def scripted_train_epoch(self, epoch):
        self.scripted_epoch = epoch
        return train_epoch(self, epoch)

    def scripted_evaluate(self, batcher):
        value = evaluate(self, batcher)
        return scores[self.scripted_epoch - 1] if batcher is self.data.target_dev else value

    monkeypatch.setattr(Run, "_train_epoch", scripted_train_epoch)
    monkeypatch.setattr(Run, "evaluate", scripted_evaluate)


def clone(module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def test_finetuning_starts_from_the_best_dev_epochs_theta_and_phi(tmp_path, shared_cache, monkeypatch):
    # Training stage: epochs 1-2, best dev at epoch 1. Fine-tuning: epoch 3, the best overall.
    script_dev_f1(monkeypatch, [70.0, 50.0, 80.0])
    weights_after = {}
    started_from = []
    finetune_step = BackoffFinetuner.step

    def recording_step(self, *args, **kwargs):
        if not started_from:
            started_from.append((clone(self.learner.model), clone(self.learner.rtn)))
        return finetune_step(self, *args, **kwargs)

    monkeypatch.setattr(BackoffFinetuner, "step", recording_step)
    run = Run(small(epochs=2, finetune_epochs=1), tmp_path, cache_dir=shared_cache, progress=False)
    result = run.fit(on_epoch=lambda entry, _: weights_after.update({entry.epoch: (clone(run.model), clone(run.rtn))}))

    theta, phi = started_from[0]
    assert same(theta, weights_after[1][0]) and same(phi, weights_after[1][1])
    assert not same(theta, weights_after[2][0]) and not same(phi, weights_after[2][1])  # not the last epoch's
    assert [e.finetune_from_epoch for e in result.history] == [None, None, 1]
    assert result.history[2].metrics()["finetune_from_epoch"] == 1
    # The best epoch is still chosen over both stages.
    assert [e.best_epoch for e in result.history] == [1, 1, 3]
    results = json.loads((tmp_path / "results.json").read_text())
    assert (results["best_epoch"], results["best_stage"], results["finetune_from_epoch"]) == (3, "finetune", 1)
    assert results["test_f1"] == result.history[2].test_f1


def test_finetune_epochs_follow_the_metaxl_epochs_with_phi_frozen(tmp_path, shared_cache):
    plain = Run(small(finetune_epochs=0), tmp_path / "plain", cache_dir=shared_cache, progress=False)
    first = plain.fit().history[0]
    run = Run(small(), tmp_path / "ft", cache_dir=shared_cache, progress=False)
    after = {}  # theta and phi at the end of each epoch (the run ends holding the best-dev epoch's)
    result = run.fit(on_epoch=lambda entry, _: after.update({entry.epoch: (clone(run.model), clone(run.rtn))}))

    assert [(e.epoch, e.stage) for e in result.history] == [(1, "train"), (2, "finetune"), (3, "finetune")]
    assert [e.meta_loss for e in result.history] == [result.history[0].meta_loss, None, None]
    # The first epoch is the plain MetaXL run's; phi is left exactly as that epoch left it.
    assert (result.history[0].dev_f1, result.history[0].train_loss) == (first.dev_f1, first.train_loss)
    assert same(after[1][0], clone(plain.model)) and same(after[1][1], clone(plain.rtn))
    for epoch in (2, 3):
        assert same(after[epoch][1], clone(plain.rtn))  # phi frozen
        assert not same(after[epoch][0], after[epoch - 1][0])  # theta trained by each fine-tuning epoch
    for a, b in zip(plain.rtn.state_dict().values(), run.rtn.state_dict().values()):
        assert torch.equal(a, b)

    results = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert [entry["stage"] for entry in results["history"]] == ["train", "finetune", "finetune"]
    best = max(result.history, key=lambda e: (e.dev_f1, -e.epoch))
    assert results["best_epoch"] == best.epoch and results["best_stage"] == best.stage
    assert load_checkpoint(tmp_path / "ft" / "checkpoint")["finetune"] is not None


@pytest.mark.parametrize("stop_epoch", [2, 3], ids=["at-the-stage-boundary", "inside-the-finetune-stage"])
def test_resume_across_the_finetune_stage_is_bit_identical(tmp_path, shared_cache, monkeypatch, stop_epoch):
    # The best training epoch (1) is not the last (2): the resumed stage must start from it too.
    script_dev_f1(monkeypatch, [70.0, 50.0, 60.0, 40.0])
    config = small(epochs=2)
    straight = Run(config, tmp_path / "straight", cache_dir=shared_cache, progress=False)
    expected = straight.fit()

    def stop(entry, _checkpoint):
        if entry.epoch == stop_epoch:
            raise Interrupt

    with pytest.raises(Interrupt):
        Run(config, tmp_path / "resumed", cache_dir=shared_cache, progress=False).fit(on_epoch=stop)
    resumed = Run(config, tmp_path / "resumed", cache_dir=shared_cache, progress=False)
    result = resumed.fit(resume_from=tmp_path / "resumed" / "checkpoint")

    assert [(e.stage, e.dev_f1, e.test_f1, e.train_loss, e.finetune_from_epoch) for e in result.history] == [
        (e.stage, e.dev_f1, e.test_f1, e.train_loss, e.finetune_from_epoch) for e in expected.history
    ]
    assert [e.finetune_from_epoch for e in result.history] == [None, None, 1, 1]
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
