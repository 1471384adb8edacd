"""What a GPU user needs before a search: step time, peak memory and trials per GPU, per method
and precision, at the paper's shapes (batch 16, lengths 128 and 200).

    python bench/gpu.py --model base-random --device cuda      # xlm-roberta-base shape, random init
    python bench/gpu.py --model tiny --device cpu --smoke       # seconds: keeps the script from rotting

Variants: jt, metaxl (RunConfig's defaults: the reference's step_metaxl, theta recomputed after
phi), metaxl-algorithm1 (the paper's theta update) and metaxl-fd (the finite-difference
hypergradient, where RunConfig has the ``hypergradient`` field), each in fp32 and bf16; the RTN
is the run config's (gate, detach, init, residual). Per length, every variant is built in ONE process from the same
initial weights and the variants' steps are interleaved round by round on the same batches;
a variant's ratio is the median over rounds of (its step time / the fastest jt's step time
in that round), where the fastest jt is the jt variant with the lowest median step time.

Peak memory per variant is the variant's own persistent bytes (theta, phi, their gradients,
both Adam states) plus its step's transient peak, so variants sharing the process do not count
each other: on CUDA the transient is max_memory_allocated during the step minus what was
allocated before it; on CPU, which has no allocator statistics, it is the peak of the bytes
autograd holds for backward during the step (activations, the create_graph gradient's graph),
counted per storage from when it is saved until the graph releases it: a lower bound of the
transient peak (temporaries that are never saved are not counted) that repeats to about 1 %
(a storage freed inside a reference cycle can hide a new one at the same address). ``max_trials_per_80gb`` is
floor(81920 MiB / (peak + 500 MiB CUDA context per trial process)), at the longest length.

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import time
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metaxl_tune.train.bilevel import Learner  # noqa: E402
from metaxl_tune.config import RunConfig  # noqa: E402
from metaxl_tune.model.backbone import encoder_modules, load_backbone  # noqa: E402
from metaxl_tune.model.model_config import hidden_size, load_model_config, model_depth  # noqa: E402
from metaxl_tune.model.rtn import RTNBank  # noqa: E402

MIB = 2**20
GPU_MIB = 81_920  # an "80 GB" A100/H100 reports 80 GiB
CONTEXT_MIB = 500  # CUDA context and kernels of each trial process, not in max_memory_allocated
NUM_LABELS = 7
METHODS: dict[str, dict[str, Any]] = {
    "jt": {"method": "jt"},
    "metaxl": {"method": "metaxl"},  # RunConfig's defaults: the reference's step_metaxl (theta recomputed)
    "metaxl-algorithm1": {"method": "metaxl", "theta_update": "algorithm1"},
    "metaxl-fd": {"method": "metaxl", "hypergradient": "finite-difference"},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="base-random", help="base-random (xlm-roberta-base shape), tiny, or a HF name/path")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lengths", default="128,200", help="comma-separated sequence lengths")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--attention", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--bottleneck", type=int, default=384, help="RTN bottleneck (paper NER: 384)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed rounds, one step of every variant each (default: 20 on CUDA, 5 on CPU)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--smoke", action="store_true", help="smallest settings: lengths 16, batch 4, 2 rounds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.lengths, args.batch, args.rounds, args.warmup, args.bottleneck = "16", 4, 2, 1, 8
    for method in args.methods.split(","):
        if method not in METHODS:
            parser.error(f"--methods: unknown method {method!r}; use {', '.join(METHODS)}")
    return args


def resolve(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def variant_configs(args: argparse.Namespace) -> tuple[dict[str, RunConfig], list[str]]:
    """name -> RunConfig for every (method, precision); the notes say what was skipped and why."""
    configs, notes = {}, []
    for method in args.methods.split(","):
        overrides = METHODS[method]
        missing = [field for field in overrides if field not in RunConfig.model_fields]
        if missing:
            notes.append(f"{method}: skipped, RunConfig has no field {', '.join(missing)} in this version")
            continue
        for precision in args.precisions.split(","):
            configs[f"{method}/{precision}"] = RunConfig(
                model="tiny", data="synthetic", batch_size=args.batch, rtn_bottleneck=args.bottleneck,
                precision=precision, attention=args.attention, device=str(args.device), **overrides,
            )
    return configs, notes


def make_batches(count: int, batch: int, length: int, vocab: int, device: torch.device, seed: int) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        ids = torch.randint(5, vocab, (batch, length), generator=generator)
        labels = torch.randint(0, NUM_LABELS, (batch, length), generator=generator)
        out.append({"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
                    "labels": labels.to(device)})
    return out


def persistent_storages(learner: Learner) -> dict[int, int]:
    """theta, phi, their gradients and both optimizers' state: storage address -> bytes."""
    tensors = list(learner.model.parameters())
    if learner.rtn is not None:
        tensors += list(learner.rtn.parameters())
    tensors += [p.grad for p in list(tensors) if p.grad is not None]
    for optimizer in (learner.main_opt, learner.meta_opt):
        if optimizer is not None:
            tensors += [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    return {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}


@contextmanager
def saved_bytes(exclude: set[int]) -> Iterator[list[int]]:
    """Peak bytes of the tensors autograd holds for backward inside the block (CPU's transient
    measure): a storage counts from the first time it is saved until the last saved tensor on
    it is released by the graph. Storages in ``exclude`` (parameters) are persistent already."""
    live: dict[int, list[int]] = {}  # storage address -> [saved tensors alive, bytes]
    state = [0, 0]  # live bytes, peak bytes

    def release(key: int) -> None:
        entry = live[key]
        entry[0] -= 1
        if entry[0] == 0:
            state[0] -= entry[1]
            del live[key]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        key = tensor.untyped_storage().data_ptr()
        if key in exclude:
            return tensor
        if key not in live:
            live[key] = [0, tensor.untyped_storage().nbytes()]
            state[0] += live[key][1]
            state[1] = max(state[1], state[0])
        live[key][0] += 1
        weakref.finalize(tensor, release, key)
        return tensor

    peak = [0]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield peak
    gc.collect()
    peak[0] = state[1]


def peak_mib(learner: Learner, source: dict, target: dict, device: torch.device) -> float:
    """Persistent bytes plus one step's transient peak (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        own = sum(persistent_storages(learner).values())
        torch.cuda.reset_peak_memory_stats(device)
        learner.step(source, target)
        torch.cuda.synchronize(device)
        return (own + torch.cuda.max_memory_allocated(device) - before) / MIB
    own = persistent_storages(learner)
    with saved_bytes(set(own)) as total:
        learner.step(source, target)
    return (sum(own.values()) + total[0]) / MIB


def measure_length(args: argparse.Namespace, length: int, device: torch.device,
                   configs: dict[str, RunConfig]) -> dict[str, dict[str, float]]:
    model_config = load_model_config(args.model, max_length=length, vocab_size=4000)
    vocab = model_config.vocab_size
    torch.manual_seed(0)
    template = load_backbone(args.model, model_config, task="ner", num_labels=NUM_LABELS,
                             attention=args.attention).to(device)
    depth, width = model_depth(model_config), hidden_size(model_config)
    learners: dict[str, Learner] = {}
    for name, config in configs.items():
        model = copy.deepcopy(template)
        torch.manual_seed(1)
        bank = RTNBank([depth], width, args.bottleneck, gate=config.rtn_gate, detach_input=config.rtn_detached,
                       residual=config.rtn_residual, init=config.rtn_init).to(device)
        bank.attach(*encoder_modules(model))
        learners[name] = Learner(model, bank if config.uses_rtn else None, config, total_steps=100_000)
    del template
    data = list(zip(make_batches(4, args.batch, length, vocab, device, 0),
                    make_batches(4, args.batch, length, vocab, device, 1)))
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    peaks = {}
    for name, learner in learners.items():
        for step in range(args.warmup):
            learner.step(*data[step % len(data)])
        peaks[name] = peak_mib(learner, *data[0], device)

    times: dict[str, list[float]] = {name: [] for name in learners}
    for round_ in range(args.rounds):
        source, target = data[round_ % len(data)]
        for name, learner in learners.items():  # interleaved: every variant sees the same noise
            sync()
            started = time.perf_counter()
            learner.step(source, target)
            sync()
            times[name].append(time.perf_counter() - started)

    jts = [name for name in learners if name.startswith("jt/")]
    fastest = min(jts, key=lambda name: statistics.median(times[name])) if jts else None
    rows = {}
    for name in learners:
        row = {"step_ms": statistics.median(times[name]) * 1000, "peak_mib": peaks[name],
               "max_trials_per_80gb": int(GPU_MIB // (peaks[name] + CONTEXT_MIB))}
        if fastest is not None:
            row["ratio_over_fastest_jt"] = statistics.median(
                mine / base for mine, base in zip(times[name], times[fastest])
            )
        rows[name] = row
    del learners, data
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = resolve(args.device)
    args.device = str(device)
    if args.rounds is None:  # CPU runs are the rot check (under two minutes with --model tiny)
        args.rounds = 20 if device.type == "cuda" else 5
    configs, notes = variant_configs(args)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    lengths = [int(value) for value in args.lengths.split(",")]
    results = {}
    for length in lengths:
        results[str(length)] = rows = measure_length(args, length, device, configs)
        for name, row in rows.items():
            ratio = row.get("ratio_over_fastest_jt", float("nan"))
            print(f"length {length:>4}  {name:<22} {row['step_ms']:9.1f} ms  {ratio:5.2f}x fastest jt  "
                  f"peak {row['peak_mib']:9.1f} MiB  {row['max_trials_per_80gb']:>4} trials / 80 GB")
    longest = results[str(max(lengths))]
    summary = {
        "model": args.model,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "attention": args.attention,
        "batch": args.batch,
        "lengths": lengths,
        "rounds": args.rounds,
        "memory_measure": "cuda max_memory_allocated" if device.type == "cuda" else "persistent + autograd-saved bytes",
        "ratio_over_fastest_jt": {length: {name: row.get("ratio_over_fastest_jt") for name, row in rows.items()}
                                  for length, rows in results.items()},
        "peak_mib": {length: {name: row["peak_mib"] for name, row in rows.items()} for length, rows in results.items()},
        "max_trials_per_80gb": {name: row["max_trials_per_80gb"] for name, row in longest.items()},
        "results": results,
        "skipped": notes,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
