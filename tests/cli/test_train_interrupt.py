"""Ctrl-C during the tiny tokenizer's training (native code that ignores Python's signal
handlers) ends `train` at once: exit status 130, one line, nothing left in the run folder."""

from __future__ import annotations

import json
import random
import signal
import string
import subprocess
import time

from processes import CLI, cli_env, read_until

LINES = 4_000
WORDS_PER_LINE = 400  # 1.6 million distinct-ish words: tens of seconds of WordPiece training


def _large_legal_sa_folder(root):
    """fa's train/dev/test: long reviews of random words, each token and line under the limits."""
    draw = random.Random(7)
    vocabulary = ["".join(draw.choices(string.ascii_lowercase, k=draw.randint(4, 14))) for _ in range(300_000)]
    folder = root / "data" / "fa"
    folder.mkdir(parents=True)
    for split, lines in (("train", LINES), ("dev", 20), ("test", 20)):
        with (folder / f"{split}.jsonl").open("w") as handle:
            for index in range(lines):
                text = " ".join(draw.choices(vocabulary, k=WORDS_PER_LINE))
                handle.write(json.dumps({"text": text, "label": index % 2}) + "\n")
    return root / "data"




def test_ctrl_c_during_tokenizer_training_exits_130_with_one_line(tmp_path):
    data = _large_legal_sa_folder(tmp_path)
    output = tmp_path / "run"
    process = subprocess.Popen(
        [*CLI, "train", "--model", "tiny", "--task", "sa", "--target", "fa", "--method", "target-only",
         "--data", str(data), "--epochs", "1", "--no-progress", "-o", str(output)],
        cwd=tmp_path, env=cli_env(tmp_path / "cache"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        read_until(process, "training the tiny tokenizer", timeout=300)
        time.sleep(1.0)  # inside the trainer's native code by now (it runs for tens of seconds)
        assert process.poll() is None, "the tokenizer finished before the signal; make the data larger"
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=60)
        waited = time.monotonic() - sent
        stderr = process.stderr.read()
        rest = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert status == 130, (stderr, rest)
    assert waited < 5, f"took {waited:.1f} s to stop"
    assert stderr.strip().splitlines() == [f"interrupted before training started; nothing was written to {output}"]
    assert "Traceback" not in rest
    assert not output.exists()
    # No half-trained tokenizer in the cache that a later run would pick up.
    assert not list((tmp_path / "cache").glob("tokenizers/*/tokenizer.json"))
