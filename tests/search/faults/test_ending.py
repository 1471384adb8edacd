"""How searches end: failure reasons, `best`'s line when every trial failed, leftovers closed."""

from __future__ import annotations

from types import SimpleNamespace

import optuna

from metaxl_tune.search.faults.ending import (
    close_leftover_optuna_trials,
    count_failures,
    error_reason,
    no_trial_finished,
)

TRACEBACK = """Failure # 1 (occurred at 2026-11-30_05-00-00)
ray::ImplicitFunc.train() (pid=1, ip=127.0.0.1)
  File "/x/trainable.py", line 70, in train_trial
    _train(config)
  File "/x/data.py", line 9, in load
    raise FileNotFoundError(path)
FileNotFoundError: /data/panx/tk/train: no such file
"""


def test_error_reason_is_the_last_error_line_of_a_traceback():
    assert error_reason(TRACEBACK) == "FileNotFoundError: /data/panx/tk/train: no such file"
    assert error_reason("ray.exceptions.RayActorError: The actor died unexpectedly") == (
        "RayActorError: The actor died unexpectedly")
    assert error_reason("something odd\n") == "something odd"


def test_the_most_common_reason_and_its_count():
    failures = count_failures(["diverged", None, "diverged", "out_of_memory"])
    assert (failures.total, failures.failed, failures.reason, failures.reason_count) == (4, 3, "diverged", 2)
    assert not failures.all_failed
    every = count_failures(["diverged", "diverged", "out_of_memory"])
    assert every.all_failed and every.line() == "all 3 trials failed; most common reason: diverged (2 of 3)"


def run(status: str, **tags: str):
    return SimpleNamespace(info=SimpleNamespace(status=status), data=SimpleNamespace(tags=tags))


def test_best_says_no_trial_finished_with_the_reason_only_when_every_trial_failed():
    failed = [run("FAILED", **{"metaxl.outcome": "diverged"}), run("FAILED", **{"metaxl.outcome": "diverged"}),
              run("FAILED", **{"metaxl.outcome": "failed", "metaxl.error": "ValueError: bad"})]
    assert no_trial_finished(failed, "s") == (
        "no trial of s finished: all 3 failed; most common reason: diverged (2 of 3)")
    assert no_trial_finished([*failed, run("KILLED", **{"metaxl.outcome": "pruned"})], "s") is None
    assert no_trial_finished([*failed, run("RUNNING")], "s") is None
    assert no_trial_finished([], "s") is None


def test_leftover_running_optuna_trials_fail_as_interrupted_and_finished_ones_are_kept():
    study = optuna.create_study()
    done = study.ask()
    study.tell(done, 1.0)
    left = study.ask()
    assert close_leftover_optuna_trials(study) == 1
    trials = study.get_trials()
    assert trials[done.number].state == optuna.trial.TrialState.COMPLETE
    assert trials[left.number].state == optuna.trial.TrialState.FAIL
    assert trials[left.number].user_attrs == {"stop_reason": "interrupted"}


# ---- end to end: a search in which every trial fails -------------------------------------------

DIVERGING_SPACE = """
metric: best_dev_f1
mode: max
fixed: {method: metaxl, epochs: 1, lr: 1.0e+5, source_size: 300, target_size: 100, batch_size: 16, max_length: 64,
        rtn_bottleneck: 8}
parameters:
  meta_lr: {type: categorical, values: [1.0e-3, 2.0e-3]}
"""


def test_a_search_whose_trials_all_failed_exits_non_zero_with_the_reason_and_best_says_so(tmp_path, shared_cache, ray_head):
    from processes import run_cli
    from search_runs import ONE_WORKER

    (tmp_path / "space.yaml").write_text(DIVERGING_SPACE)
    result = run_cli(["search", "--task", "ner", "--target", "tk", "--model", "tiny", "--data", "synthetic",
                      "--space", "space.yaml", "--name", "doomed", "--num-samples", "2", *ONE_WORKER, "--scheduler", "fifo"],
                     cwd=tmp_path, cache_dir=shared_cache, ray=ray_head)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "search doomed: all 2 trials failed; most common reason: diverged (2 of 2)" in result.stderr
    assert "export the winner" not in result.stdout
    best = run_cli(["best", "--name", "doomed"], cwd=tmp_path, cache_dir=shared_cache)
    assert best.returncode == 2
    assert best.stderr.strip() == "error: no trial of doomed finished: all 2 failed; most common reason: diverged (2 of 2)"


def test_an_ablation_whose_runs_all_failed_exits_non_zero_with_the_reason(tmp_path, shared_cache, ray_head):
    from processes import run_cli

    (tmp_path / "study.yaml").write_text(
        "settings:\n  unstable: {method: metaxl, lr: 1.0e+5, rtn_bottleneck: 8, meta_lr: 1.0e-3}\n")
    result = run_cli(["ablate", "--study", "study.yaml", "--task", "ner", "--targets", "tk", "--seeds", "1",
                      "--model", "tiny", "--data", "synthetic", "--epochs", "1", "--source-size", "300",
                      "--max-length", "64", "--name", "doomed"], cwd=tmp_path, cache_dir=shared_cache, ray=ray_head)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ablation doomed: all 1 runs failed; most common reason: diverged (1 of 1)" in result.stderr
    assert "tables: metaxl-tune report" not in result.stdout
