"""A local checkpoint loaded with a new task head: transformers' coloured LOAD REPORT table stays
out of `train`'s output, which is plain lines of ours; encoder weights the checkpoint lacks are
said in one line instead. Through the real CLI in a subprocess, its output a pipe (no terminal)."""

from __future__ import annotations

import shutil

import pytest
from safetensors.torch import load_file, save_file

from metaxl_tune.model.pretrain import RECIPE_FILE, Recipe, ensure_pretrained
from processes import run_cli

# A few MLM steps: the weights only need to exist.
SMALL = Recipe(steps=3, sentences_per_language=40, batch_size=8, languages=("en", "tk", "tr"))
BANNER = ("\x1b[", "LOAD REPORT", "UNEXPECTED", "MISSING")


@pytest.fixture(scope="module")
def mlm_checkpoint(tmp_path_factory):
    """An MLM checkpoint in a folder of its own, as a user saves one: loaded for NER, its lm_head.*
    weights are unexpected and the classifier's are missing (the new head)."""
    built = ensure_pretrained(tmp_path_factory.mktemp("pretrain"), SMALL, progress=False)
    folder = tmp_path_factory.mktemp("models") / "mlm"
    shutil.copytree(built, folder, ignore=shutil.ignore_patterns(RECIPE_FILE))
    return folder


def train(model, tmp_path, shared_cache):
    return run_cli(["train", "--model", str(model), "--data", "synthetic", "--target", "tk", "--epochs", "1",
                    "--target-size", "20", "--source-size", "20", "--no-progress", "--output", str(tmp_path / "run")],
                   cwd=tmp_path, cache_dir=shared_cache)


def test_a_new_head_on_a_local_checkpoint_prints_no_library_banner(mlm_checkpoint, tmp_path, shared_cache):
    result = train(mlm_checkpoint, tmp_path, shared_cache)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert [mark for mark in BANNER if mark in output] == [], output
    assert "training metaxl on ner/tk" in result.stdout and "best epoch 1: dev F1" in result.stdout
    assert "encoder weights" not in output  # every encoder weight was in the checkpoint


def test_encoder_weights_missing_from_the_checkpoint_are_one_line_of_ours(mlm_checkpoint, tmp_path, shared_cache):
    holed = tmp_path / "holed"
    shutil.copytree(mlm_checkpoint, holed)
    weights = load_file(holed / "model.safetensors")
    dropped = sorted(key for key in weights if ".layer.1.attention." in key)
    save_file({key: value for key, value in weights.items() if key not in dropped}, holed / "model.safetensors",
              metadata={"format": "pt"})

    result = train(holed, tmp_path, shared_cache)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert [mark for mark in BANNER if mark in output] == [], output
    said = [line for line in output.splitlines() if "encoder weights" in line]
    assert said == [f"notice: {len(dropped)} encoder weights of model {holed} are not in its checkpoint and start from "
                    f"random values ({', '.join(dropped[:3])}, ...); check that --model names the encoder you mean"]
    assert "best epoch 1: dev F1" in result.stdout
