"""Cost of one training step per method, measured side by side: time and peak memory as ratios.

    python bench/step.py                                  # tiny model on CPU (batch 16, 32-64 tokens, RTN bottleneck d/2)
    python bench/step.py --model base --min-len 128 --max-len 128 --device cuda   # XLM-R base size, random init
    python bench/step.py --model base --precision bf16 --attention sdpa --device cuda   # the GPU settings

Every variant lives in this one process with its own copy of the same initial model and steps on
the same batches. The steps are interleaved round by round (the order rotates each round, so no
variant always runs right after another), a variant's time in a round is the fastest of
``--repeats`` back-to-back steps, each round's time is divided by JT's time in that round, and the median of those per-round ratios is reported: machine noise that lasts longer
than a round cancels out of the ratio.

Peak memory is the highest point reached during one step above what was allocated when the step
began, read from the allocator itself, so it repeats exactly from run to run: on a GPU CUDA's peak
allocation counter, on a CPU the allocations and frees that torch.profiler records with ``profile_memory``
(each op's own, summed in order; the running maximum, at op granularity). Process RSS is not used.

Variants (RunConfig's defaults otherwise: gated RTN on the detached hidden state after the last
layer): target-only, jt, jt-rtn, metaxl (the default step: the reference's step_metaxl, theta
recomputed after phi's update), algorithm1 (theta steps on the gradient at the old phi), metaxl-fd
(finite-difference hypergradient, theta recomputed), fd-algorithm1 (both options) and mixture2
(placements emb + last, rtn_combine mixture). The last line of output is one JSON object with the ratios.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
from transformers import AutoConfig, AutoModelForTokenClassification

from metaxl_tune.train.bilevel import Learner
from metaxl_tune.config import RunConfig
from metaxl_tune.model.backbone import encoder_modules
from metaxl_tune.model.model_config import hidden_size, load_model_config, model_depth
from metaxl_tune.model.rtn import RTNBank

LAST = "last"
# RunConfig's defaults unless a variant says otherwise: metaxl is the reference's step_metaxl
# (gated RTN on the detached hidden state, theta recomputed after phi's update).
VARIANTS = {
    "target-only": {"method": "target-only"},
    "jt": {"method": "jt"},
    "jt-rtn": {"method": "jt-rtn"},
    "metaxl": {"method": "metaxl"},
    "algorithm1": {"method": "metaxl", "theta_update": "algorithm1"},
    "metaxl-fd": {"method": "metaxl", "hypergradient": "finite-difference"},
    "fd-algorithm1": {"method": "metaxl", "hypergradient": "finite-difference", "theta_update": "algorithm1"},
    "mixture2": {"method": "metaxl", "rtn_layers": [0, LAST], "rtn_combine": "mixture"},
}


def model_config(name: str, max_length: int):
    if name == "tiny":
        return load_model_config("tiny", max_length=max_length, vocab_size=4000)
    if name in ("base", "base-random"):  # xlm-roberta-base's shape, built locally: no download needed
        return load_model_config("base-random", max_length=max_length)
    return AutoConfig.from_pretrained(name)


def batches(args, vocab_size: int, device: torch.device) -> list[tuple[dict, dict]]:
    generator = torch.Generator().manual_seed(0)

    def one() -> dict:
        length = int(torch.randint(args.min_len, args.max_len + 1, (1,), generator=generator))
        ids = torch.randint(5, vocab_size, (args.batch, length), generator=generator)
        labels = torch.randint(0, 7, (args.batch, length), generator=generator)
        return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": labels.to(device)}

    return [(one(), one()) for _ in range(args.distinct_batches)]


class Variant:
    """One method's model, RTN bank and learner, built from the shared initial weights."""

    def __init__(self, name: str, base_model, config, args, device: torch.device):
        self.name = name
        settings = dict(VARIANTS[name])
        depth = model_depth(config)
        layers = [depth if layer == LAST else layer for layer in settings.pop("rtn_layers", [LAST])]
        run_config = RunConfig(
            model="tiny", data="synthetic", rtn_bottleneck=args.bottleneck, batch_size=args.batch,
            rtn_layers=layers, precision=args.precision, attention=args.attention, **settings,
        )
        self.model = copy.deepcopy(base_model)
        torch.manual_seed(1)
        self.bank = RTNBank(
            layers, hidden_size(config), args.bottleneck, gate=run_config.rtn_gate,
            detach_input=run_config.rtn_detached, init=run_config.rtn_init, residual=run_config.rtn_residual,
        ).to(device)
        self.bank.attach(*encoder_modules(self.model))
        self.learner = Learner(self.model, self.bank, run_config, total_steps=100_000)
        self.times: list[float] = []

    def step(self, source, target) -> None:
        self.learner.step(source, target)


def peak_memory(variant: Variant, source, target, device: torch.device) -> int:
    """Bytes allocated at the step's highest point above what was allocated when it began."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        variant.step(source, target)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - start
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        variant.step(source, target)
    # Each op's own allocations net of its own frees, plus the frees outside any op ("[memory]"
    # events), in the order they happened: the level of allocated memory op by op.
    level = peak = 0
    for event in sorted(prof.events(), key=lambda event: event.time_range.start):
        level += event.self_cpu_memory_usage
        peak = max(peak, level)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, base (xlm-roberta-base shape, random init) or a HF name/path")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--min-len", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--bottleneck", type=int, default=None,
                        help="RTN bottleneck r (default: half the hidden size, the paper's NER ratio r/d = 384/768; "
                             "384 for --model base, 32 for tiny)")
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (--repeats steps of every variant each)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--repeats", type=int, default=3, help="steps per variant per round; the fastest counts")
    parser.add_argument("--distinct-batches", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier timings on a shared machine)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma list; jt is always included")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                        help="autocast precision of every forward (RunConfig.precision)")
    parser.add_argument("--attention", default="sdpa", choices=["sdpa", "eager"],
                        help="attention kernels (RunConfig.attention): sdpa = fused except in the twice-differentiated pass")
    args = parser.parse_args()

    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    config = model_config(args.model, args.max_len)
    config.num_labels = 7
    if args.bottleneck is None:
        # An RTN is a bottleneck (r < d, DESIGN.md section 1): at the paper's ratio its cost
        # relative to the encoder is the paper's, whatever the model's width.
        args.bottleneck = hidden_size(config) // 2
    torch.manual_seed(0)
    base_model = AutoModelForTokenClassification.from_config(config, attn_implementation=args.attention).to(device)
    names = ["jt", *(name for name in args.variants.split(",") if name != "jt")]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    variants = [Variant(name, base_model, config, args, device) for name in names]
    data = batches(args, config.vocab_size, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    for round_index in range(args.warmup + args.rounds):
        source, target = data[round_index % len(data)]
        shift = round_index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            # A variant's time in a round is its fastest of --repeats back-to-back steps: on a
            # shared machine a step that another process preempts only ever gets slower.
            fastest = float("inf")
            for _ in range(args.repeats):
                sync()
                started = time.perf_counter()
                variant.step(source, target)
                sync()
                fastest = min(fastest, time.perf_counter() - started)
            if round_index >= args.warmup:
                variant.times.append(fastest)

    source, target = data[0]
    memory = {variant.name: peak_memory(variant, source, target, device) for variant in variants}
    by_name = {variant.name: variant for variant in variants}

    def time_ratio(name: str, over: str = "jt") -> float | None:
        if name not in by_name or over not in by_name:
            return None
        return statistics.median(a / b for a, b in zip(by_name[name].times, by_name[over].times))

    def memory_ratio(name: str, over: str = "jt") -> float | None:
        return memory[name] / memory[over] if name in memory and over in memory else None

    for variant in variants:
        print(f"{variant.name:>17}  median step {statistics.median(variant.times) * 1000:8.1f} ms   "
              f"over jt {time_ratio(variant.name):5.2f}x   peak memory {memory[variant.name] / 2**20:8.2f} MiB")
    summary = {
        "model": args.model,
        "device": str(device),
        "batch": args.batch,
        "length": [args.min_len, args.max_len],
        "rounds": args.rounds,
        "repeats": args.repeats,
        "precision": args.precision,
        "attention": args.attention,
        "bottleneck": args.bottleneck,
        "metaxl_over_jt": time_ratio("metaxl"),
        "algorithm1_over_jt": time_ratio("algorithm1"),
        "fd_over_jt": time_ratio("metaxl-fd"),
        "fd_algorithm1_over_jt": time_ratio("fd-algorithm1"),
        "mixture2_over_metaxl": time_ratio("mixture2", "metaxl"),
        "peak_memory_metaxl_over_jt": memory_ratio("metaxl"),
        "peak_memory_algorithm1_over_jt": memory_ratio("algorithm1"),
        "peak_memory_fd_over_jt": memory_ratio("metaxl-fd"),
        "peak_memory_fd_algorithm1_over_jt": memory_ratio("fd-algorithm1"),
        "peak_memory_mixture2_over_metaxl": memory_ratio("mixture2", "metaxl"),
        "step_ms": {variant.name: statistics.median(variant.times) * 1000 for variant in variants},
        "peak_memory_mib": {name: value / 2**20 for name, value in memory.items()},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
