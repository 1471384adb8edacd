"""run_search's public hooks: a substituted trial body and extra Tune callbacks (bench/ uses them)."""

from __future__ import annotations

from ray import tune

from metaxl_tune.search.driver.hooks import SearchHooks
from metaxl_tune.search.driver.options import SearchOptions
from metaxl_tune.search.driver.runner import run_search


def test_no_hooks_keep_the_default_trial_and_put_hook_callbacks_first():
    own = ["mlflow", "progress"]
    assert SearchHooks().trial_function(len) is len
    assert SearchHooks().with_callbacks(own) == own
    assert SearchHooks(trial=abs, callbacks=("timing",)).trial_function(len) is abs
    assert SearchHooks(callbacks=("timing",)).with_callbacks(own) == ["timing", "mlflow", "progress"]


class Recorder(tune.Callback):
    def __init__(self):
        self.results: list[dict] = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results.append({key: result.get(key) for key in ("epoch", "hooked_epochs", "best_dev_f1")})


def test_run_search_runs_the_hooked_trial_body_and_callback(tmp_path, shared_cache):
    def trial(sampled, *, configs, cache_dir, cpus, gpus, storage_retry_s):
        from ray import tune as tune_

        config = configs(sampled)  # the trial's RunConfig arrives as train_trial's does
        for epoch in range(1, config.epochs + 1):
            tune_.report({"epoch": epoch, "hooked_epochs": config.epochs, "best_dev_f1": float(epoch),
                          "epochs_total": config.epochs})

    recorder = Recorder()
    outcome = run_search(
        SearchOptions(name="hooked", preset="demo", base={"task": "ner", "target": "tk", "epochs": 2}, num_samples=1,
                      scheduler="fifo", gpus_per_trial=0, storage=str(tmp_path / "searches"),
                      tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", cache_dir=str(shared_cache)),
        log=lambda line: None, hooks=SearchHooks(trial=trial, callbacks=(recorder,)),
    )
    assert recorder.results == [{"epoch": 1, "hooked_epochs": 2, "best_dev_f1": 1.0},
                                {"epoch": 2, "hooked_epochs": 2, "best_dev_f1": 2.0}]
    assert outcome.counts["completed"] == 1
    assert outcome.best["value"] == 2.0
