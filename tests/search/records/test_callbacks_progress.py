"""The search's progress lines fit an 80-column terminal without cutting a number, and their counts
add up to the trials Tune has."""

from __future__ import annotations

from types import SimpleNamespace

from metaxl_tune.search.records.callbacks import ProgressCallback, best_lines, progress_line, trial_counts


def test_progress_line_names_the_incumbents_mean_and_seeds_within_80_columns():
    line = progress_line(2, {"completed": 13, "pruned": 4, "failed": 0}, 40, (71.1349, 3))
    assert line == "[search] 2 running, 13 finished, 4 pruned, 0 failed of 40 | best 71.13 (3 seeds)"
    assert progress_line(1, {"completed": 1, "pruned": 0, "failed": 0}, 6, (9.83, 1)).endswith("| best 9.83 (1 seed)")
    long = progress_line(2, {"completed": 113, "pruned": 41, "failed": 0}, 256, (71.1349, 3))
    assert long == "[search] 2 running, 113 finished, 41 pruned, 0 failed of 256 | best 71.13 n=3"
    assert len(long) <= 80


def completed_trial(config: dict, value: float) -> SimpleNamespace:
    return SimpleNamespace(trial_id="t", config=config, status="RUNNING",
                           last_result={"epoch": 3, "epochs_total": 3, "best_dev_f1": value},
                           run_metadata=SimpleNamespace(last_result={}))


def test_the_progress_shows_the_incumbent_config_not_the_luckiest_trial(capsys):
    progress = ProgressCallback("best_dev_f1", "max", 6, ("meta_lr",))
    # One lucky seed of config B, two seeds of config A: A (most seeds) is the incumbent.
    for config, value in (({"meta_lr": 1e-5}, 18.0), ({"meta_lr": 1e-5}, 14.0), ({"meta_lr": 3e-4}, 30.0)):
        progress.on_trial_complete(0, [], completed_trial(config, value))
    assert progress.incumbent() == (16.0, 2)
    assert capsys.readouterr().out.splitlines()[-1].endswith("| best 16.00 (2 seeds)")
    pruned = completed_trial({"meta_lr": 3e-4}, 40.0)
    pruned.last_result["epoch"] = 1  # stopped before the last epoch: pruned, no seed
    progress.on_trial_complete(0, [], pruned)
    assert progress.incumbent() == (16.0, 2)


def test_an_ablation_names_no_incumbent():
    progress = ProgressCallback("best_dev_f1", "max", 2, ())
    progress.on_trial_complete(0, [], completed_trial({"cell": {}}, 20.0))
    assert progress.incumbent() is None


def test_new_best_lines_wrap_every_searched_value_at_80_columns():
    params = {"meta_lr": 0.00068594164113287, "rtn_bottleneck": 384, "rtn_layers": "emb+last",
              "source": "related", "rtn_detach_input": True}
    lines = best_lines("best_dev_f1", 28.4999, "5ee49d56", params)
    assert lines == [
        "[search] new best best_dev_f1 28.50 (trial 5ee49d56): meta_lr=6.9e-4",
        "         rtn_bottleneck=384 rtn_layers=emb+last source=related",
        "         rtn_detach_input=true",
    ]


def tune_trial(trial_id: str, status: str, epoch: int | None = None, epochs_total: int = 3) -> SimpleNamespace:
    """A trial as Tune hands it to a callback: its status and its stored last result."""
    result = {} if epoch is None else {"epoch": epoch, "epochs_total": epochs_total, "best_dev_f1": 20.0}
    return SimpleNamespace(trial_id=trial_id, status=status, run_metadata=SimpleNamespace(last_result=result))


def test_a_trial_whose_end_is_announced_is_counted_as_ended_not_also_as_running():
    # Tune calls on_trial_complete while the trial is still RUNNING: counting Tune's statuses
    # and the ended trials apart gave "1 running, 2 finished, 1 pruned, 0 failed of 3".
    finished, pruned = tune_trial("a", "TERMINATED", 3), tune_trial("b", "TERMINATED", 1)
    ending = tune_trial("c", "RUNNING", 3)
    running, counts = trial_counts([finished, pruned, ending], ending)
    assert progress_line(running, counts, 3, (20.0, 1)) == (
        "[search] 0 running, 2 finished, 1 pruned, 0 failed of 3 | best 20.00 (1 seed)")


def test_counts_come_from_tunes_trials_so_a_resumed_search_counts_what_ended_before_it():
    # A driver started with --resume restores its callbacks from the first snapshot, which saw
    # no trial end: the ended trials are counted from Tune's restored statuses.
    trials = [tune_trial("a", "TERMINATED", 3), tune_trial("b", "ERROR", 1), tune_trial("c", "RUNNING", 2),
              tune_trial("d", "PENDING")]
    running, counts = trial_counts(trials)
    assert progress_line(running, counts, 4, None) == "[search] 1 running, 1 finished, 0 pruned, 1 failed of 4"


def test_a_trial_that_stopped_itself_counts_as_failed():
    diverged = tune_trial("a", "TERMINATED", 1)
    diverged.run_metadata.last_result["stop_reason"] = "diverged"
    assert trial_counts([diverged]) == (0, {"completed": 0, "pruned": 0, "failed": 1})
