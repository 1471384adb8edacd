"""tiny-pretrained: built by MLM once, cached by recipe, deterministic, and trainable end to end."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from metaxl_tune.cli.app import app
from metaxl_tune.model import pretrain
from metaxl_tune.model.pretrain import RECIPE_FILE, Recipe, ensure_pretrained, pretrained_dir, recipe_shape

# A reduced budget: three languages, a few sentences, three steps.
SMALL = Recipe(steps=3, sentences_per_language=40, batch_size=8, languages=("en", "tk", "tr"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = tmp_path_factory.mktemp("pretrain-cache")
    return cache, ensure_pretrained(cache, SMALL, progress=False)


def test_builds_from_scratch_a_saved_model_with_its_tokenizer_and_recipe(built):
    cache, directory = built
    assert directory == pretrained_dir(cache, SMALL) and directory.name == f"tiny-pretrained-{SMALL.key()}"
    assert {"config.json", "model.safetensors", "tokenizer.json", RECIPE_FILE} <= {p.name for p in directory.iterdir()}
    recorded = json.loads((directory / RECIPE_FILE).read_text())
    assert recorded["recipe"]["steps"] == 3 and recorded["recipe"]["languages"] == ["en", "tk", "tr"]
    assert recorded["final_mlm_loss"] > 0


def test_the_built_models_shape_is_the_one_its_recipe_says(built):
    # The fit checks read recipe_shape before the model is built (model/fit.py).
    _, directory = built
    saved = json.loads((directory / "config.json").read_text())
    shape = recipe_shape(SMALL)
    fields = ("num_hidden_layers", "hidden_size", "max_position_embeddings", "pad_token_id", "model_type")
    assert {field: saved[field] for field in fields} == {field: getattr(shape, field) for field in fields}


def test_the_second_call_reuses_the_cache_without_pre_training(built, monkeypatch):
    cache, directory = built
    monkeypatch.setattr(pretrain, "build", lambda *args, **kwargs: pytest.fail("pre-trained again"))
    assert ensure_pretrained(cache, SMALL, progress=False) == directory


def test_a_changed_recipe_builds_a_new_model(built, monkeypatch):
    cache, directory = built
    calls = []
    original = pretrain.build
    monkeypatch.setattr(pretrain, "build", lambda recipe, path, **kw: calls.append(recipe) or original(recipe, path, **kw))
    changed = Recipe(**{**SMALL.__dict__, "seed": 1})
    other = ensure_pretrained(cache, changed, progress=False)
    assert calls == [changed] and other != directory and (other / RECIPE_FILE).is_file()


def test_the_same_recipe_builds_the_same_weights(built, tmp_path):
    _, directory = built
    again = ensure_pretrained(tmp_path, SMALL, progress=False)
    first, second = load_file(directory / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


def test_the_steps_variable_changes_the_recipe_and_a_bad_one_is_one_line(monkeypatch):
    monkeypatch.setenv(pretrain.STEPS_ENV, "7")
    assert pretrain.default_recipe().steps == 7 and pretrain.default_recipe().key() != Recipe().key()
    monkeypatch.setenv(pretrain.STEPS_ENV, "many")
    with pytest.raises(ValueError, match="METAXL_TUNE_PRETRAIN_STEPS=many: must be a positive number"):
        pretrain.default_recipe()


@pytest.mark.parametrize("task", ["ner", "sa"])
@pytest.mark.parametrize("method", ["target-only", "jt", "jt-rtn", "metaxl"])
def test_train_end_to_end_with_tiny_pretrained(tmp_path, task, method, monkeypatch, shared_cache):
    monkeypatch.setenv("METAXL_TUNE_CACHE", str(shared_cache))
    monkeypatch.setenv(pretrain.STEPS_ENV, "3")
    target = "tk" if task == "ner" else "te"
    # target-only refuses source options (it reads no source data).
    source = [] if method == "target-only" else ["--source-size", "32"]
    result = CliRunner().invoke(app, [
        "train", "--model", "tiny-pretrained", "--data", "synthetic", "--task", task, "--target", target,
        "--method", method, "--epochs", "1", *source, "--target-size", "32", "--max-length", "48",
        "--output", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["model"] == "tiny-pretrained" and len(results["history"]) == 1
