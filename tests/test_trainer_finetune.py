"""Back-off fine-tuning after MetaXL (paper section 4.6): the stage, its record and its resume."""

from __future__ import annotations

import json

import pytest
import torch

from metaxl_tune.checkpoint import load_checkpoint
from metaxl_tune.config import RunConfig
from metaxl_tune.trainer import Run


def small(**changes) -> RunConfig:
    # A resume checkpoint every epoch, so that an interruption after any epoch can resume.
    values = dict(model="tiny", data="synthetic", task="ner", target="tk", source="related", method="metaxl",
                  epochs=1, finetune_epochs=2, lr=3e-3, meta_lr=1e-3, rtn_bottleneck=16, rtn_layers=["last"],
                  source_size=48, batch_size=16, max_length=48, checkpoint_every="1")
    return RunConfig(**{**values, **changes})


class Interrupt(Exception):
    pass


def test_finetune_epochs_follow_the_metaxl_epochs_with_phi_frozen(tmp_path, shared_cache):
    plain = Run(small(finetune_epochs=0), tmp_path / "plain", cache_dir=shared_cache, progress=False)
    first = plain.fit().history[0]
    run = Run(small(), tmp_path / "ft", cache_dir=shared_cache, progress=False)
    result = run.fit()

    assert [(e.epoch, e.stage) for e in result.history] == [(1, "train"), (2, "finetune"), (3, "finetune")]
    assert [e.meta_loss for e in result.history] == [result.history[0].meta_loss, None, None]
    # The first epoch is the plain MetaXL run's; phi is left exactly as that epoch left it.
    assert (result.history[0].dev_f1, result.history[0].train_loss) == (first.dev_f1, first.train_loss)
    for a, b in zip(plain.rtn.state_dict().values(), run.rtn.state_dict().values()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(plain.model.state_dict().values(), run.model.state_dict().values()))

    results = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert [entry["stage"] for entry in results["history"]] == ["train", "finetune", "finetune"]
    best = max(result.history, key=lambda e: (e.dev_f1, -e.epoch))
    assert results["best_epoch"] == best.epoch and results["best_stage"] == best.stage
    assert load_checkpoint(tmp_path / "ft" / "checkpoint")["finetune"] is not None


@pytest.mark.parametrize("stop_epoch", [1, 2], ids=["at-the-stage-boundary", "inside-the-finetune-stage"])
def test_resume_across_the_finetune_stage_is_bit_identical(tmp_path, shared_cache, stop_epoch):
    config = small()
    straight = Run(config, tmp_path / "straight", cache_dir=shared_cache, progress=False)
    expected = straight.fit()

    def stop(entry, _checkpoint):
        if entry.epoch == stop_epoch:
            raise Interrupt

    with pytest.raises(Interrupt):
        Run(config, tmp_path / "resumed", cache_dir=shared_cache, progress=False).fit(on_epoch=stop)
    resumed = Run(config, tmp_path / "resumed", cache_dir=shared_cache, progress=False)
    result = resumed.fit(resume_from=tmp_path / "resumed" / "checkpoint")

    assert [(e.stage, e.dev_f1, e.test_f1, e.train_loss) for e in result.history] == [
        (e.stage, e.dev_f1, e.test_f1, e.train_loss) for e in expected.history
    ]
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
