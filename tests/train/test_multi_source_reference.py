"""Several source languages as the reference trains them: one merged, shuffled set, RTN set 0.

``mtrain.py`` with ``--method metaxl --source_languages a,b``: ``merge_data`` concatenates the
languages' samples into one dataset, one shuffled DataLoader draws batches from it (so a batch
mixes languages), and every batch goes through ``mlt.py: step_metaxl`` with RTN set index 0;
``--meta_per_lang`` builds one RTN set per language, but set 1 never receives a batch. The
reference is restated here in float64 with the model's own submodules and plain-tensor RTNs;
nothing of metaxl_tune's forward or step code produces the expected values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import get_linear_schedule_with_warmup

from helpers import attach_bank, make_batch, tiny_model
from reference_net import ce, classifier, hidden_states
from metaxl_tune.train.bilevel import Learner
from metaxl_tune.config import RunConfig

LAST = 4  # the tiny model's depth: the RTN sits after its last layer
BATCH = 4
LR = META_LR = 1e-2


def merged_source() -> dict[str, torch.Tensor]:
    """merge_data: language a's rows then language b's, padded to one length (read_data pads every
    example to max_seq_length; here 9, language b's rows are 7 long)."""
    a, b = make_batch(4, seed=1, length=9), make_batch(4, seed=2, length=7)
    padded = {
        "input_ids": F.pad(b["input_ids"], (0, 2), value=1),
        "attention_mask": F.pad(b["attention_mask"], (0, 2), value=0),
        "labels": F.pad(b["labels"], (0, 2), value=-100),
    }
    return {key: torch.cat([a[key], padded[key]]) for key in a}


def trimmed(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """utils.py trim_input: columns up to the batch's longest attended row."""
    length = int(batch["attention_mask"].sum(1).max())
    return {key: value[:, :length] for key, value in batch.items()}


def plain_logits(model, batch):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def source_logits(model, rtn, batch):
    """The encoder with set ``rtn``'s perceptron after the last layer: h + W2(relu(W1 h.detach()))."""
    hidden = hidden_states(model, batch)[-1]
    w1, b1, w2, b2 = rtn
    hidden = hidden + F.linear(torch.relu(F.linear(hidden.detach(), w1, b1)), w2, b2)
    return classifier(model, hidden)


def reference_step_metaxl(model, sets, opts, source, target):
    """step_metaxl with RTN set 0 (whatever the batch's languages), recomputed theta step, clip 10."""
    main_opt, main_schedule, meta_opt, meta_schedule = opts
    half = len(target["input_ids"]) // 2
    data_g = {key: value[:half] for key, value in target.items()}
    data_t = {key: value[half:] for key, value in target.items()}
    params = list(model.parameters())

    def loss_train():
        return ce(source_logits(model, sets[0], source), source["labels"]) + ce(plain_logits(model, data_g), data_g["labels"])

    eta = main_schedule.get_last_lr()[0]
    grads = torch.autograd.grad(loss_train(), params, create_graph=True)
    saved = [p.data.clone() for p in params]
    for p, g in zip(params, grads):
        p.data.sub_(eta * g)
    grads_prime = torch.autograd.grad(ce(plain_logits(model, data_t), data_t["labels"]), params)
    for p, s in zip(params, saved):
        p.data.copy_(s)
    meta_opt.zero_grad()
    (-eta * sum((g * gp).sum() for g, gp in zip(grads, grads_prime))).backward()
    meta_opt.step()
    main_opt.zero_grad()
    loss_train().backward()
    torch.nn.utils.clip_grad_norm_(params, 10)
    main_opt.step()
    main_schedule.step()
    meta_schedule.step()


def test_a_mixed_batch_step_equals_the_references_merged_loader_step_with_rtn_set_0():
    config = RunConfig(model="tiny", data="synthetic", method="metaxl", target="tk", source="en,related",
                       batch_size=BATCH, max_length=16, rtn_layers=[LAST], rtn_bottleneck=8, rtn_gate=False,
                       rtn_detach_input=True, theta_update="recompute", lookahead_lr=None, max_grad_norm=10.0,
                       lr=LR, meta_lr=META_LR, warmup_ratio=0.0)
    assert config.source_strategy == "mixed" and not config.rtn_per_source

    merged = merged_source()
    # mtrain.py counts the schedule as len(merged set) * epochs / batch size.
    total_steps = len(merged["input_ids"]) * 1 / BATCH
    ours_model, ref_model = tiny_model(), tiny_model()
    bank = attach_bank(ours_model, [LAST], detach_input=True)
    ours = Learner(ours_model, bank, config, total_steps=total_steps)

    # --meta_per_lang: one RTN set per language; set 0 starts where our shared RTN does.
    rtn = bank.rtns[str(LAST)]
    generator = torch.Generator().manual_seed(7)
    set_1 = [torch.randn(p.shape, generator=generator, dtype=torch.float64) * 0.1 for p in
             (rtn.down.weight, rtn.down.bias, rtn.up.weight, rtn.up.bias)]
    sets = [[p.detach().clone().requires_grad_() for p in (rtn.down.weight, rtn.down.bias, rtn.up.weight, rtn.up.bias)],
            [p.clone().requires_grad_() for p in set_1]]
    initial_down = rtn.down.weight.detach().clone()
    main = torch.optim.Adam(ref_model.parameters(), lr=LR, eps=1e-8, weight_decay=5e-4)
    meta = torch.optim.Adam([p for rtn_set in sets for p in rtn_set], lr=META_LR, eps=1e-8, weight_decay=5e-4)
    opts = (main, get_linear_schedule_with_warmup(main, 0, total_steps),
            meta, get_linear_schedule_with_warmup(meta, 0, total_steps))

    # One epoch of the merged loader: a shuffled pass, batches mixing both languages.
    order = torch.randperm(len(merged["input_ids"]), generator=torch.Generator().manual_seed(3))
    languages = [[int(i) // 4 for i in order[start:start + BATCH]] for start in range(0, len(order), BATCH)]
    assert all(set(batch) == {0, 1} for batch in languages)
    for step, start in enumerate(range(0, len(order), BATCH)):
        source = trimmed({key: value[order[start:start + BATCH]] for key, value in merged.items()})
        target = make_batch(BATCH, seed=20 + step)
        ours.step(source, target, source_index=0)  # trainer.Run: a mixed batch uses the shared set
        reference_step_metaxl(ref_model, sets, opts, source, target)

    for a, b in zip(ours_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    for a, b in zip((rtn.down.weight, rtn.down.bias, rtn.up.weight, rtn.up.bias), sets[0]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert not torch.equal(sets[0][0], initial_down)  # phi was stepped, so the comparison says something
    assert ours.main_schedule.get_last_lr()[0] == 0.0  # the schedule ends with the epoch's 2 steps
    for untouched, start in zip(sets[1], set_1):  # the reference's set 1 never trains
        assert torch.equal(untouched, start)
