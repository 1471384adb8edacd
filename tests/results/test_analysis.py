"""Representation analysis: cosine Hausdorff distances against brute force, and end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from metaxl_tune.results import analysis
from metaxl_tune.results.analysis import analyze, collect_representations, directed_hausdorff, hausdorff, load_weights
from metaxl_tune.train.checkpoint import load_checkpoint
from metaxl_tune.config import RunConfig
from metaxl_tune.train.trainer import Run


def brute_directed(a: np.ndarray, b: np.ndarray) -> float:
    def distance(x, y):
        return 1.0 - float(x @ y) / (np.linalg.norm(x) * np.linalg.norm(y))

    return max(min(distance(x, y) for y in b) for x in a)


def test_matches_a_brute_force_double_loop(monkeypatch):
    monkeypatch.setattr(analysis, "_BLOCK_ELEMENTS", 7 * 13)  # several row blocks of A
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 5)), rng.normal(size=(13, 5))
    assert directed_hausdorff(a, b) == pytest.approx(brute_directed(a, b), abs=1e-12)
    assert directed_hausdorff(b, a) == pytest.approx(brute_directed(b, a), abs=1e-12)
    assert hausdorff(a, b) == pytest.approx(max(brute_directed(a, b), brute_directed(b, a)), abs=1e-12)
    assert hausdorff(torch.tensor(a, dtype=torch.float32), b) == pytest.approx(hausdorff(a, b), abs=1e-6)


def test_directed_distances_differ_for_a_subset():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20, 4))
    b = a[:5]
    assert directed_hausdorff(b, a) == pytest.approx(0.0, abs=1e-12)
    assert directed_hausdorff(a, b) == pytest.approx(brute_directed(a, b), abs=1e-12) and directed_hausdorff(a, b) > 0.01
    assert hausdorff(a, b) == hausdorff(b, a) == directed_hausdorff(a, b)


def test_identical_sets_are_at_zero_and_scaling_does_not_matter():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(16, 6)), rng.normal(size=(9, 6))
    assert hausdorff(a, a) == pytest.approx(0.0, abs=1e-12)
    scales = rng.uniform(0.1, 10.0, size=(16, 1))
    assert hausdorff(a * scales, b * 3.0) == pytest.approx(hausdorff(a, b), abs=1e-12)
    assert hausdorff(a[:1], -a[:1]) == pytest.approx(2.0)  # opposite directions: the largest distance


def test_rejects_empty_or_mismatched_sets():
    with pytest.raises(ValueError, match="non-empty"):
        hausdorff(np.zeros((0, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="dimension: 3 vs 4"):
        hausdorff(np.ones((2, 3)), np.ones((2, 4)))


def tiny_config(**changes) -> RunConfig:
    values = dict(model="tiny", data="synthetic", task="ner", target="tk", source="related", method="metaxl",
                  epochs=1, lr=3e-3, meta_lr=1e-3, rtn_bottleneck=8, rtn_layers=["last"], source_size=64,
                  batch_size=16, max_length=48, device="cpu")
    return RunConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_cache):
    directory = tmp_path_factory.mktemp("trained")
    config = tiny_config()
    Run(config, directory, cache_dir=shared_cache, progress=False, save_model=False).fit()
    return config, directory


def test_analyze_end_to_end(trained, tmp_path, shared_cache):
    config, directory = trained
    result = analyze(config, directory / "best", cache_dir=shared_cache, output_dir=tmp_path / "out", limit=150)
    distances = result.metrics()
    assert len(distances) == 6 and all(np.isfinite(value) and 0 <= value <= 2 for value in distances.values())
    assert result.hausdorff_source_target == max(result.directed_source_to_target, result.directed_target_to_source)
    assert result.n_target == result.n_source == 150 and result.source_language == "tr"
    assert result.plot == tmp_path / "out" / "pca.png"
    assert result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert saved["hausdorff_rtn_source_target"] == result.hausdorff_rtn_source_target
    assert result.mixture_weights == {"rtn_mix_4": 1.0}  # one placement: weight 1


def test_rtn_changes_the_source_representations(trained, tmp_path, shared_cache):
    config, directory = trained
    run = Run(config, tmp_path, cache_dir=shared_cache, progress=False, save_model=False)
    state = load_checkpoint(directory / "checkpoint")
    run.model.load_state_dict(state["theta"])
    run.rtn.load_state_dict(state["phi"])
    plain = collect_representations(run, run.data.source_train, with_rtn=False, limit=40)
    moved = collect_representations(run, run.data.source_train, with_rtn=True, limit=40)
    # NER keeps the word positions (labels != -100) of the first sentences, in order.
    first = run.data.source_train.batch(range(64), torch.device("cpu"))["labels"]
    words = int((first != -100).sum())
    assert plain.shape == moved.shape == (min(40, words), 64)
    assert not torch.allclose(plain, moved, atol=1e-4)
    again = collect_representations((run.model, run.rtn), run.data.source_train, with_rtn=False, task="ner", limit=40)
    assert torch.equal(plain, again)  # eval mode: no dropout, the same vectors every time
    sentences = collect_representations(run, run.data.target_train, with_rtn=False, task="sa", limit=7)
    assert sentences.shape == (7, 64)  # one <s> vector per sentence


def test_method_without_rtn_is_refused_before_any_work(tmp_path):
    config = tiny_config(method="jt")
    with pytest.raises(ValueError, match=r"needs a run trained with an RTN \(method metaxl or jt-rtn\); run abc used jt"):
        analyze(config, tmp_path, cache_dir=tmp_path / "cache", output_dir=tmp_path / "out", run_name="abc")
    assert not (tmp_path / "cache").exists()


def test_a_mixture_is_analysed_one_placement_at_a_time_as_it_was_trained(tmp_path, shared_cache):
    config = tiny_config(rtn_layers=[0, "last"], rtn_combine="mixture")
    Run(config, tmp_path / "run", cache_dir=shared_cache, progress=False, save_model=False).fit()
    result = analyze(config, tmp_path / "run" / "best", cache_dir=shared_cache, output_dir=tmp_path / "out", limit=60)
    weights = {int(key.removeprefix("rtn_mix_")): value for key, value in result.mixture_weights.items()}
    assert set(weights) == {0, 4} and result.rtn_placement == max(weights, key=weights.get)
    assert set(result.rtn_by_placement) == {"0", "4"}
    assert result.rtn_by_placement[str(result.rtn_placement)] == [
        result.hausdorff_rtn_source_target, result.directed_rtn_source_to_target, result.directed_target_to_rtn_source]

    # Placement "last": the RTN on the final states, nothing above it; placement 0: all layers re-run.
    run = Run(config, tmp_path / "again", cache_dir=shared_cache, progress=False, save_model=False)
    theta, phi, _ = load_weights(tmp_path / "run" / "best")
    run.model.load_state_dict(theta)
    run.rtn.load_state_dict(phi)
    plain = collect_representations(run, run.data.source_train, with_rtn=False, limit=60)
    last = collect_representations(run, run.data.source_train, with_rtn=True, limit=60, placement=4)
    first = collect_representations(run, run.data.source_train, with_rtn=True, limit=60, placement=0)
    with torch.inference_mode():
        torch.testing.assert_close(last, run.rtn.rtn(4).eval()(plain))
    assert not torch.allclose(first, plain, atol=1e-4) and not torch.allclose(first, last, atol=1e-4)
    with pytest.raises(ValueError, match="placement: 2 is not one of the RTN placements"):
        collect_representations(run, run.data.source_train, with_rtn=True, limit=5, placement=2)
