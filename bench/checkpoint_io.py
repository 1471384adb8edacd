"""Checkpoint traffic of one 20-epoch trial at XLM-R base size, counted in bytes (not timed).

    python bench/checkpoint_io.py                       # 60 s epochs (a 20-minute trial)
    python bench/checkpoint_io.py --epoch-seconds 150   # what if epochs take longer

An xlm-roberta-base-shaped model (hidden 768, 12 layers, vocab 250002; random init, no
download) with an RTN after the last layer and both Adam optimizers populated is checkpointed
through the real code: the policy (``CheckpointPolicy``) decides each epoch on a simulated
clock, and each write streams the real resume state (``checkpoint.write_state``) or best-dev
weights (``checkpoint.serialize_best``) into a byte counter instead of a disk.

- ``every_epoch`` is the behaviour before the policy existed: the full resume state reported
  to trial storage after every epoch, and the final kept checkpoint (resume state) uploaded to
  MLflow.
- ``default`` is ``--checkpoint-every 10m``: resume state plus a copy of the best-dev weights
  at the policy's epochs (always the last), and the best-dev weights once to MLflow. The
  best-dev weights written on each dev improvement go to the trial's local folder; they are
  counted separately (``bytes_local_best``, worst case: dev improves every epoch).

The last line is JSON: bytes_default, bytes_every_epoch, bytes_ratio (target <= 0.25).
"""

from __future__ import annotations

import argparse
import json

import torch
from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification

from metaxl_tune.train.bilevel import Learner
from metaxl_tune.train.checkpoint import serialize_best, training_state, write_state
from metaxl_tune.train.checkpoint_policy import DEFAULT_CHECKPOINT_EVERY, CheckpointPolicy
from metaxl_tune.config import RunConfig
from metaxl_tune.model.rtn import RTNBank

EPOCHS = 20
GiB = 1024**3


def base_model() -> XLMRobertaForTokenClassification:
    config = XLMRobertaConfig(
        vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2, num_labels=7,
    )
    return XLMRobertaForTokenClassification(config)


def populated_learner(model: torch.nn.Module, rtn: RTNBank, config: RunConfig) -> Learner:
    """Both Adam optimizers with their moment buffers, as after any training step."""
    learner = Learner(model, rtn, config, total_steps=EPOCHS * 313)
    for optimizer in (learner.main_opt, learner.meta_opt):
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        for parameter in parameters:
            parameter.grad = torch.zeros_like(parameter)
        optimizer.step()
        for parameter in parameters:
            parameter.grad = None
    return learner


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def trial_bytes(every: str, *, model, rtn, learner, config: RunConfig, epoch_seconds: float, legacy: bool) -> dict:
    """Bytes one 20-epoch trial writes to trial storage, to MLflow and locally under a policy."""
    clock = Clock()
    policy = CheckpointPolicy(every, EPOCHS, clock=clock)
    best_size = len(serialize_best(model.state_dict(), rtn.state_dict(), {"epoch": 1}))
    storage = local = 0
    checkpoint_epochs, history = [], []
    state_size = 0
    for epoch in range(1, EPOCHS + 1):
        clock.now += epoch_seconds
        history.append({"epoch": epoch})
        if not legacy:
            local += best_size  # worst case: dev improves every epoch
        if policy.due(epoch):
            state_size = write_state(training_state(epoch, config, model, rtn, learner, history), None)
            storage += state_size + (0 if legacy else best_size)
            checkpoint_epochs.append(epoch)
            policy.taken()
    mlflow = state_size if legacy else best_size
    return {"storage": storage, "mlflow": mlflow, "local": local, "epochs": checkpoint_epochs,
            "state": state_size, "best": best_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epoch-seconds", type=float, default=60.0, help="Simulated duration of one epoch.")
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = base_model()
    config = RunConfig(model="xlm-roberta-base", method="metaxl", epochs=EPOCHS)
    rtn = RTNBank([12], 768, config.rtn_bottleneck, gate=config.rtn_gate, detach_input=config.rtn_detached,
                  init=config.rtn_init)
    learner = populated_learner(model, rtn, config)

    common = dict(model=model, rtn=rtn, learner=learner, config=config, epoch_seconds=args.epoch_seconds)
    default = trial_bytes(DEFAULT_CHECKPOINT_EVERY, legacy=False, **common)
    every_epoch = trial_bytes("1", legacy=True, **common)
    total = lambda result: result["storage"] + result["mlflow"]  # noqa: E731
    for name, result in (("default (10m)", default), ("every epoch", every_epoch)):
        print(f"{name:14s} resume checkpoints at epochs {result['epochs']}: storage {result['storage'] / GiB:.2f} GiB, "
              f"MLflow {result['mlflow'] / GiB:.2f} GiB, local best weights {result['local'] / GiB:.2f} GiB")
    print(f"resume state {default['state'] / GiB:.2f} GiB, best-dev weights {default['best'] / GiB:.2f} GiB, "
          f"epochs of {args.epoch_seconds:g} s")
    print(json.dumps({
        "bytes_default": total(default),
        "bytes_every_epoch": total(every_epoch),
        "bytes_ratio": round(total(default) / total(every_epoch), 4),
        "bytes_storage_default": default["storage"],
        "bytes_storage_every_epoch": every_epoch["storage"],
        "bytes_mlflow_default": default["mlflow"],
        "bytes_mlflow_every_epoch": every_epoch["mlflow"],
        "bytes_local_best": default["local"],
        "checkpoint_epochs_default": default["epochs"],
        "epoch_seconds": args.epoch_seconds,
    }))


if __name__ == "__main__":
    main()
