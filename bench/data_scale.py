"""Peak memory and time of a run's data preparation against the size of its data file, at fixed sizes asked.

    python bench/data_scale.py                        # 10 MB, 100 MB and 1 GB train files (the issue's run)
    python bench/data_scale.py --sizes-mb 1,4         # smoke (seconds; tested)
    python bench/data_scale.py --task sa              # SA: a train.jsonl of reviews instead of panx NER
    python bench/data_scale.py --keep DIR             # keep the generated data and caches in DIR

What runs
---------
Per size, a fresh folder ``<tmp>/data/tk/{train,dev,test}``: NER in the panx layout
(``tk:word<TAB>TAG``, blank line between sentences) or SA as ``.jsonl`` reviews with a binary
label. The train file has the size asked; dev and test hold 500 examples each, the same at every
size. The file is made fast by writing one seeded block (~1 MB of sentences over a 30,000-word
vocabulary) again and again, cut at a sentence boundary.

A child process per size (``python bench/data_scale.py --child ...``, so each peak is its own)
runs what ``metaxl-tune train --model tiny --data DIR --target tk --method target-only
--target-size 10`` runs before its model is built: ``prepare_data`` with a fresh cache (reading
and checking the files, sampling 10 train examples by the data seed, training the tiny tokenizer,
encoding). The parent reads the child's peak resident memory (``ru_maxrss`` from ``wait4``) and
its wall time; the child reports the seconds ``prepare_data`` took. A first child only imports
the package, the fixed cost every size pays. Files are removed after each size.

Figures: per size, peak RSS (MiB), prepare seconds and wall seconds; ``rss_ratio`` = peak RSS at
the largest size over peak RSS at the smallest (target: <= 1.5, flat), ``seconds_ratio`` likewise
(reading is linear in the file: it grows). The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RSS_RATIO = 1.5
HELD_OUT = 500
TARGET_SIZE = 10
BLOCK_BYTES = 1 << 20
VOCABULARY = 30_000
TAGS = ("O", "O", "O", "O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-mb", default="10,100,1000", help="train file sizes in MB (10^6 bytes), comma-separated")
    parser.add_argument("--task", choices=("ner", "sa"), default="ner")
    parser.add_argument("--keep", type=Path, default=None, help="generate into this folder and keep it")
    parser.add_argument("--child", nargs=3, metavar=("DATA", "CACHE", "TASK"), help=argparse.SUPPRESS)
    parser.add_argument("--imports-only", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---- data ------------------------------------------------------------------------------------


def _words(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 10))) for _ in range(VOCABULARY)]


def _ner_sentence(rng: random.Random, words: list[str]) -> str:
    return "".join(f"tk:{rng.choice(words)}\t{rng.choice(TAGS)}\n" for _ in range(rng.randint(5, 20))) + "\n"


def _sa_review(rng: random.Random, words: list[str], index: int) -> str:
    text = " ".join(rng.choice(words) for _ in range(rng.randint(8, 40)))
    return json.dumps({"text": text, "label": index % 2}) + "\n"


def _block(task: str, rng: random.Random, words: list[str], size: int) -> str:
    parts, length, index = [], 0, 0
    while length < size:
        part = _ner_sentence(rng, words) if task == "ner" else _sa_review(rng, words, index)
        parts.append(part)
        length += len(part)
        index += 1
    return "".join(parts)


def write_data(folder: Path, task: str, size_bytes: int, seed: int = 0) -> Path:
    """``folder/tk/{train,dev,test}`` (``.jsonl`` for SA); the train file is ``size_bytes`` long
    (to a sentence boundary), written as repeats of one block."""
    rng = random.Random(seed)
    words = _words(rng)
    language = folder / "tk"
    language.mkdir(parents=True, exist_ok=True)
    suffix = "" if task == "ner" else ".jsonl"
    block = _block(task, rng, words, min(BLOCK_BYTES, size_bytes)).encode("utf-8")
    with open(language / f"train{suffix}", "wb") as handle:
        written = 0
        while written + len(block) <= size_bytes:
            handle.write(block)
            written += len(block)
        rest = block[: size_bytes - written]
        cut = rest.rfind(b"\n\n" if task == "ner" else b"\n")
        handle.write(rest[: cut + 1] if cut >= 0 else b"")
    for split in ("dev", "test"):
        examples = [_ner_sentence(rng, words) if task == "ner" else _sa_review(rng, words, index)
                    for index in range(HELD_OUT)]
        (language / f"{split}{suffix}").write_text("".join(examples), encoding="utf-8")
    return language / f"train{suffix}"


# ---- measuring ---------------------------------------------------------------------------------


def child(data: str, cache: str, task: str, imports_only: bool) -> None:
    from metaxl_tune.config import RunConfig
    from metaxl_tune.train.prepare import prepare_data

    if imports_only:
        print(json.dumps({"prepare_s": 0.0}))
        return
    config = RunConfig(model="tiny", data=data, task=task, target="tk", method="target-only", target_size=TARGET_SIZE)
    start = time.perf_counter()
    prepared = prepare_data(config, Path(cache))
    seconds = time.perf_counter() - start
    print(json.dumps({"prepare_s": round(seconds, 2), "sizes": prepared.sizes()}))


def measure(data: Path | None, cache: Path | None, task: str) -> dict:
    """One child: its peak RSS (MiB, its own ``ru_maxrss``), wall seconds and what it printed."""
    command = [sys.executable, __file__, "--child", str(data), str(cache), task]
    if data is None:
        command.append("--imports-only")
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        # wait4, not wait: the rusage of this child alone (RUSAGE_CHILDREN keeps the largest so far).
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if process.returncode:
            raise SystemExit(f"child failed (exit {process.returncode}):\n{err.read()[-3000:]}")
        printed = json.loads(out.read().strip().splitlines()[-1])
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "wall_s": round(wall, 2), **printed}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child:
        child(*args.child, imports_only=args.imports_only)
        return {}
    sizes_mb = [float(size) for size in args.sizes_mb.split(",")]
    root = args.keep or Path(tempfile.mkdtemp(prefix="data-scale-"))
    rows = []
    try:
        imports = measure(None, None, args.task)
        print(f"imports only: peak RSS {imports['peak_rss_mib']:.0f} MiB, {imports['wall_s']:.1f} s", flush=True)
        for size_mb in sizes_mb:
            folder = root / f"{size_mb:g}MB"
            start = time.perf_counter()
            train = write_data(folder / "data", args.task, int(size_mb * 1_000_000))
            generated = time.perf_counter() - start
            row = {"size_mb": size_mb, "file_bytes": train.stat().st_size, "generate_s": round(generated, 1),
                   **measure(folder / "data", folder / "cache", args.task)}
            rows.append(row)
            print(f"{size_mb:>8g} MB: peak RSS {row['peak_rss_mib']:8.0f} MiB, prepare {row['prepare_s']:7.1f} s, "
                  f"wall {row['wall_s']:7.1f} s (file written in {generated:.1f} s)", flush=True)
            if args.keep is None:
                shutil.rmtree(folder)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    rss_ratio = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    summary = {
        "task": args.task,
        "target_size": TARGET_SIZE,
        "imports_only_rss_mib": imports["peak_rss_mib"],
        "rows": rows,
        "rss_ratio": round(rss_ratio, 3),
        "seconds_ratio": round(rows[-1]["prepare_s"] / max(rows[0]["prepare_s"], 1e-9), 2),
        "target_rss_ratio": TARGET_RSS_RATIO,
        "flat": rss_ratio <= TARGET_RSS_RATIO,
    }
    print()
    print(f"{'size':>10} {'peak RSS MiB':>13} {'prepare s':>10} {'wall s':>8}")
    for row in rows:
        print(f"{row['size_mb']:>8g}MB {row['peak_rss_mib']:>13.0f} {row['prepare_s']:>10.1f} {row['wall_s']:>8.1f}")
    print(f"peak RSS {rows[-1]['size_mb']:g} MB / {rows[0]['size_mb']:g} MB = {rss_ratio:.3f} (target <= {TARGET_RSS_RATIO})")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
