"""`metaxl-tune ablate`: dry-run counts and a real grid on Ray (the session's shared head,
conftest.ray_head) + MLflow."""

from __future__ import annotations

import itertools

import pytest
from mlflow.tracking import MlflowClient

from metaxl_tune.search.space.study import load_study
from processes import run_cli
from search_runs import MACHINERY_SIZES

STUDY = """
description: three methods
settings:
  target-only: {method: target-only}
  jt: {method: jt}
  metaxl: {method: metaxl}
"""


@pytest.mark.parametrize(
    "study, task, targets, seeds, runs",
    [("methods", "ner", "qu,tk", 3, 5 * 2 * 3), ("placement", "ner", "tk", 2, 4 * 1 * 2),
     ("source-size", "sa", "fa,te", 1, 6 * 2 * 1), ("paper", "ner", "qu,tk", 3, 19 * 2 * 3)],
)
def test_dry_run_counts_every_cell(tmp_path, shared_cache, study, task, targets, seeds, runs):
    result = run_cli(["ablate", "--study", study, "--task", task, "--targets", targets, "--seeds", str(seeds), "--dry-run"],
                     cwd=tmp_path, cache_dir=shared_cache, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"{runs} runs, about" in result.stdout and "device-hours" in result.stdout
    assert not (tmp_path / "metaxl-searches").exists()


def test_paper_study_runs_each_distinct_setting_once():
    settings = load_study("paper", "ner").settings
    assert len(settings) == 19
    assert len({tuple(sorted(map(str, values.items()))) for values in settings.values()}) == 19


def test_a_setting_that_a_flag_would_override_is_refused(tmp_path, shared_cache):
    result = run_cli(["ablate", "--study", "methods", "--targets", "tk", "--method", "jt", "--dry-run"],
                     cwd=tmp_path, cache_dir=shared_cache, timeout=120)
    assert result.returncode == 2 and "methods: settings vary method; drop the flag for it" in result.stderr


def test_ablation_grid_runs_end_to_end(tmp_path, shared_cache, ray_head):
    study = tmp_path / "three.yaml"
    study.write_text(STUDY)
    result = run_cli(["ablate", "--study", str(study), "--task", "ner", "--targets", "tk,qu", "--seeds", "2",
                      "--preset", "demo", *MACHINERY_SIZES, "--name", "grid"], cwd=tmp_path, cache_dir=shared_cache, ray=ray_head)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "12 of 12 runs completed, 0 failed" in result.stdout

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("metaxl-tune")
    runs = client.search_runs([experiment.experiment_id], "tags.`metaxl.search` = 'grid'")
    parent = [run for run in runs if run.data.tags["metaxl.role"] == "search"]
    trials = [run for run in runs if run.data.tags["metaxl.role"] == "trial"]
    assert len(parent) == 1 and parent[0].data.tags["metaxl.kind"] == "ablation"
    assert parent[0].data.tags["metaxl.settings_order"] == "target-only,jt,metaxl"
    cells = sorted((r.data.tags["metaxl.setting"], r.data.params["target"], r.data.params["seed"]) for r in trials)
    assert cells == sorted(itertools.product(["target-only", "jt", "metaxl"], ["tk", "qu"], ["1", "2"]))
    for run in trials:
        assert run.info.status == "FINISHED"
        assert run.data.params["method"] == run.data.tags["metaxl.setting"]
        # A note next to the params that this trial's method never reads (config.METHODS_USING).
        ignored = {
            "target-only": "source,source_strategy,rtn_per_source,source_label_format,rtn_layers,rtn_bottleneck,"
                           "rtn_gate,rtn_detach_input,rtn_init,rtn_combine,jt_rtn_residual,hypergradient,meta_lr,"
                           "lookahead_lr,portion,theta_update,max_grad_norm,finetune_epochs,source_size",
            "jt": "rtn_per_source,rtn_layers,rtn_bottleneck,rtn_gate,rtn_detach_input,rtn_init,rtn_combine,"
                  "jt_rtn_residual,hypergradient,meta_lr,lookahead_lr,portion,theta_update,max_grad_norm,finetune_epochs",
            "metaxl": "jt_rtn_residual",
        }
        assert run.data.params.get("ignored_by_method") == ignored.get(run.data.params["method"])
        assert run.data.metrics["device_seconds"] >= run.data.metrics["wall_seconds"] * 0.99 > 0
        assert run.data.tags["metaxl.device_type"] == "cpu"


def test_multi_source_study_dry_run_counts_its_rows(tmp_path, shared_cache):
    result = run_cli(["ablate", "--study", "multi-source", "--task", "ner", "--targets", "qu,tk", "--seeds", "2",
                      "--dry-run"], cwd=tmp_path, cache_dir=shared_cache, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "20 runs, about" in result.stdout
    settings = load_study("multi-source", "ner").settings
    assert [values.get("source") for values in settings.values()] == ["en", "related"] + ["en,related"] * 3
    assert [values.get("source_strategy", "mixed") for values in settings.values()] == ["mixed"] * 3 + ["sequential"] * 2
    assert [values.get("rtn_per_source", False) for values in settings.values()] == [False] * 4 + [True]
