"""Cost of one training step per method on the same batches: time and peak memory, as ratios.

    python bench/step.py                                  # tiny model on CPU (batch 16, 32-64 tokens)
    python bench/step.py --model base --min-len 128 --max-len 128 --device cuda   # XLM-R base size, random init

Each method runs in its own subprocess so peak memory is its own (CUDA peak allocation on a
GPU; growth of the peak resident set over the model's footprint on a CPU). The last line of
output is one JSON object with the ratios (metaxl_over_jt, recompute_over_jt,
peak_memory_metaxl_over_jt, ...).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from transformers import AutoConfig, AutoModelForTokenClassification, XLMRobertaConfig

from metaxl_tune.bilevel import Learner
from metaxl_tune.config import RunConfig
from metaxl_tune.model.backbone import encoder_modules, hidden_size, load_model_config, model_depth
from metaxl_tune.model.rtn import RTNBank

METHODS = {
    "target-only": {"method": "target-only"},
    "jt": {"method": "jt"},
    "jt-rtn": {"method": "jt-rtn"},
    "metaxl": {"method": "metaxl", "theta_update": "algorithm1"},
    "metaxl-recompute": {"method": "metaxl", "theta_update": "recompute"},
}


def model_config(name: str, max_length: int):
    if name == "tiny":
        return load_model_config("tiny", max_length=max_length, vocab_size=4000)
    if name == "base":  # xlm-roberta-base's shape, built locally: no download needed
        return XLMRobertaConfig(vocab_size=250_002, max_position_embeddings=514, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    return AutoConfig.from_pretrained(name)


def batches(args, vocab_size: int, device: torch.device) -> list[tuple[dict, dict]]:
    generator = torch.Generator().manual_seed(0)

    def one() -> dict:
        length = int(torch.randint(args.min_len, args.max_len + 1, (1,), generator=generator))
        ids = torch.randint(5, vocab_size, (args.batch, length), generator=generator)
        labels = torch.randint(0, 7, (args.batch, length), generator=generator)
        return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": labels.to(device)}

    return [(one(), one()) for _ in range(args.distinct_batches)]


def measure(args, method: str) -> dict:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    config = model_config(args.model, args.max_len)
    config.num_labels = 7
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_config(config, attn_implementation="eager").to(device)
    run_config = RunConfig(model="tiny", data="synthetic", rtn_bottleneck=args.bottleneck, batch_size=args.batch, **METHODS[method])
    bank = RTNBank([model_depth(config)], hidden_size(config), args.bottleneck, gate=False, detach_input=False).to(device)
    bank.attach(*encoder_modules(model))
    learner = Learner(model, bank, run_config, total_steps=10_000)
    data = batches(args, config.vocab_size, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    for source, target in data[: args.warmup]:
        learner.step(source, target)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for repeat in range(args.steps):
        source, target = data[repeat % len(data)]
        started = time.perf_counter()
        learner.step(source, target)
        sync()
        times.append(time.perf_counter() - started)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        # ru_maxrss is in KiB on Linux: the peak over what the model and warm-up already held.
        peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_rss, 1) / 1024
    return {"method": method, "median_s": statistics.median(times), "peak_mib": peak, "device": str(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny, base (xlm-roberta-base shape, random init) or a HF name/path")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--min-len", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=64)
    parser.add_argument("--bottleneck", type=int, default=384)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per method (the VM is noisy: fewer vary by 20 %)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--distinct-batches", type=int, default=6)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(measure(args, args.worker)))
        return

    forwarded = sys.argv[1:]
    results = {}
    for method in args.methods.split(","):
        output = subprocess.run(
            [sys.executable, __file__, *forwarded, "--worker", method], check=True, capture_output=True, text=True
        ).stdout
        results[method] = json.loads(output.strip().splitlines()[-1])
        row = results[method]
        print(f"{method:>17}  median step {row['median_s'] * 1000:8.1f} ms   peak memory {row['peak_mib']:9.1f} MiB")

    jt = results["jt"]
    summary = {
        "model": args.model,
        "device": jt["device"],
        "batch": args.batch,
        "length": [args.min_len, args.max_len],
        "metaxl_over_jt": results["metaxl"]["median_s"] / jt["median_s"],
        "recompute_over_jt": results["metaxl-recompute"]["median_s"] / jt["median_s"],
        "peak_memory_metaxl_over_jt": results["metaxl"]["peak_mib"] / jt["peak_mib"],
        "peak_memory_recompute_over_jt": results["metaxl-recompute"]["peak_mib"] / jt["peak_mib"],
        "step_ms": {method: row["median_s"] * 1000 for method, row in results.items()},
    }
    print(f"metaxl / jt step time: {summary['metaxl_over_jt']:.2f}x   recompute / jt: {summary['recompute_over_jt']:.2f}x   "
          f"peak memory metaxl / jt: {summary['peak_memory_metaxl_over_jt']:.2f}x")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
