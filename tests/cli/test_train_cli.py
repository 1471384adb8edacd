"""`metaxl-tune train` through Typer's runner: end to end, flags, --config, errors."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from metaxl_tune.cli.app import app
from metaxl_tune.config import RunConfig

runner = CliRunner()
FAST = ["--source-size", "32", "--max-length", "32"]


@pytest.fixture(autouse=True)
def cache(monkeypatch, shared_cache):
    monkeypatch.setenv("METAXL_TUNE_CACHE", str(shared_cache))


@pytest.mark.parametrize("task", ["ner", "sa"])
def test_train_end_to_end_on_synthetic_data(tmp_path, task):
    target = "tk" if task == "ner" else "te"
    result = runner.invoke(app, ["train", "--model", "tiny", "--data", "synthetic", "--task", task, "--target", target,
                                 "--method", "metaxl", "--epochs", "2", *FAST, "--output", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "epoch   1/2  dev F1" in result.output and "epoch   2/2  dev F1" in result.output
    assert "best epoch" in result.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["history"]) == 2 and results["config"]["task"] == task
    # The task's evaluation length (NER 512, SA 256) is more than the 34 positions tiny sizes from
    # --max-length 32 (32 + 4 rows, less XLM-R's 2 unused ones): capped, said, recorded.
    asked = {"ner": 512, "sa": 256}[task]
    assert f"notice: --eval-max-length {asked} is more than model tiny takes; dev and test are encoded at 34" in result.output
    assert (results["config"]["eval_max_length"], results["eval_max_length"]) == (asked, 34)


def test_base_random_trains_offline_with_the_tiny_tokenizer(tmp_path, monkeypatch):
    """bench/gpu.py's model: XLM-R base's shape, randomly initialised, with the tiny tokenizer
    trained on the run's data; the fit check never asks the hub for a tokenizer. On a 4-sentence
    panx folder and one step: the 278 M-parameter model's step and writes are the cost, not data."""
    from tests.helpers import write_panx

    write_panx(tmp_path / "data", "tk", 4)
    monkeypatch.setenv("METAXL_TUNE_CACHE", str(tmp_path / "cache"))  # its own cache: the tokenizer is trained here
    result = runner.invoke(app, ["train", "--model", "base-random", "--data", str(tmp_path / "data"), "--task", "ner",
                                 "--target", "tk", "--method", "target-only", "--epochs", "1", "--target-size", "4",
                                 "--batch-size", "4", "--max-length", "32", "--eval-max-length", "32",
                                 "--output", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "training the tiny tokenizer on 12 sentences (tk)" in result.output
    assert "data: target 4 train / 4 dev / 4 test; no source data" in result.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["config"]["model"] == "base-random" and len(results["history"]) == 1


def test_flags_override_the_config_file(tmp_path):
    config = tmp_path / "run.yaml"
    RunConfig(model="tiny", data="synthetic", epochs=7, seed=3).dump(config)
    result = runner.invoke(app, ["train", "--config", str(config), "--seed", "9", "--rtn-layers", "0,last",
                                 "--max-grad-norm", "none", "--print-config"])
    assert result.exit_code == 0, result.output
    printed = RunConfig.model_validate(__import__("yaml").safe_load(result.output))
    assert (printed.epochs, printed.seed, printed.rtn_layers, printed.max_grad_norm) == (7, 9, [0, "last"], None)


def test_every_config_field_has_a_flag():
    # Rich sizes the help from COLUMNS (terminal_width alone leaves long flag names cut at 80).
    help_text = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    for field in RunConfig.model_fields:
        assert "--" + field.replace("_", "-") in help_text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "maml"], "error: --method: Input should be 'target-only', 'jt', 'jt-rtn' or 'metaxl'"),
        (["--rtn-layers", "9"], "error: --rtn-layers: layer 9 is past the depth of model tiny (4 layers); use 0..4"),
        (["--source", "related", "--target", "fa"], "error: --source: 'related' is defined for"),
        (["--data", "/nonexistent/data"], "error: "),
        (["--model", "no-such-model-xyz"], "error: cannot load model 'no-such-model-xyz'"),
        (["--method", "jt", "--finetune-epochs", "2"], "error: --finetune-epochs: must be 0, or >= 1 with an RTN method"),
    ],
)
def test_bad_input_is_one_line_with_exit_status_2(tmp_path, args, message):
    base = ["train", "--model", "tiny", "--data", "synthetic", "--output", str(tmp_path / "run"), "--no-progress"]
    result = runner.invoke(app, [*base, *args])
    assert result.exit_code == 2
    last_line = result.output.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and message in last_line, result.output


def test_resume_without_checkpoint_says_how_to_start(tmp_path):
    result = runner.invoke(app, ["train", "--model", "tiny", "--data", "synthetic", "--output", str(tmp_path), "--resume"])
    assert result.exit_code == 2 and "run without --resume to start fresh" in result.output


def test_sentipers_polarity_target_with_a_marc_stars_source(tmp_path):
    # The paper's SA pair: each language's files are read in their own label format.
    data = tmp_path / "data"
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    for split, count in (("train", 24), ("dev", 12), ("test", 12)):
        rows = [f"{words[i % 6]} {words[(i * 5) % 6]} {i}\t{(-2, -1, 0, 1, 2)[i % 5]}" for i in range(count)]
        (data / "fa").mkdir(parents=True, exist_ok=True)
        (data / "fa" / f"{split}.tsv").write_text("sentence\tpolarity\n" + "\n".join(rows) + "\n", encoding="utf-8")
        reviews = [{"review_body": f"{words[(i * 7) % 6]} review {i}", "stars": 1 + i % 5} for i in range(2 * count)]
        (data / "en").mkdir(exist_ok=True)
        (data / "en" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reviews), encoding="utf-8")
    base = ["train", "--model", "tiny", "--task", "sa", "--data", str(data), "--target", "fa", "--source", "en",
            "--method", "jt", "--epochs", "1", "--max-length", "32", "--no-progress", "--label-format", "polarity"]

    one_format = runner.invoke(app, [*base, "--output", str(tmp_path / "one")])
    assert one_format.exit_code == 2 and "--source-label-format" in one_format.output.strip().splitlines()[-1]

    result = runner.invoke(app, [*base, "--source-label-format", "stars", "--output", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "results.json").read_text())["config"]
    assert (config["label_format"], config["source_label_format"]) == ("polarity", "stars")


def test_finetune_epochs_follow_the_training_epochs(tmp_path):
    result = runner.invoke(app, ["train", "--model", "tiny", "--data", "synthetic", "--task", "ner", "--target", "tk",
                                 "--method", "metaxl", "--epochs", "1", "--finetune-epochs", "1", *FAST,
                                 "--eval-max-length", "24", "--output", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "epoch   1/2  dev F1" in result.output and "epoch   2/2  fine-tune  dev F1" in result.output
    assert "fine-tuning from epoch 1's weights (best dev F1 " in result.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert [entry["stage"] for entry in results["history"]] == ["train", "finetune"]
    assert results["finetune_from_epoch"] == 1
    assert (results["config"]["eval_max_length"], results["eval_max_length"]) == (24, 24)
    assert "notice: --eval-max-length" not in result.output


def _panx_data(tmp_path, languages):
    from tests.helpers import write_panx

    for language, count in languages:
        write_panx(tmp_path / "data", language, count)
    return ["--model", "tiny", "--data", str(tmp_path / "data"), "--task", "ner", "--target", "tk",
            "--target-size", "8", "--batch-size", "4", "--epochs", "1", "--max-length", "16", "--no-progress"]


def test_two_source_metaxl_with_rtn_per_source_records_what_it_used(tmp_path):
    args = _panx_data(tmp_path, [("tk", 10), ("en", 14), ("tr", 12)])
    result = runner.invoke(app, ["train", *args, "--method", "metaxl", "--source", "en,related", "--rtn-per-source",
                                 "--source-strategy", "sequential",
                                 "--rtn-layers", "last", "--rtn-bottleneck", "8", "--source-size", "14",
                                 "--output", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "warning: source tr train holds 12 examples, fewer than the 14 requested (--source-size); using 12" in result.output
    assert "data: target 8 train / 10 dev / 10 test; source en 14, tr 12" in result.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["data_sizes"] == {"source": {"en": 14, "tr": 12}, "target_train": 8, "target_dev": 10, "target_test": 10}
    assert results["source_steps"] == {"en": 4, "tr": 3}
    assert results["config"]["source"] == "en,related" and results["config"]["rtn_per_source"] is True
    state = __import__("torch").load(tmp_path / "run" / "rtn.pt", weights_only=True)["state"]
    assert sum(key.endswith("down.weight") for key in state) == 2  # one RTN per source language


def test_two_source_metaxl_mixes_the_languages_by_default(tmp_path):
    args = _panx_data(tmp_path, [("tk", 10), ("en", 14), ("tr", 12)])
    result = runner.invoke(app, ["train", *args, "--method", "metaxl", "--source", "en,related",
                                 "--rtn-layers", "last", "--rtn-bottleneck", "8", "--source-size", "12",
                                 "--output", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["config"]["source_strategy"] == "mixed"
    assert results["source_examples"] == {"en": 12, "tr": 12} and results["source_steps"] == {}
    state = __import__("torch").load(tmp_path / "run" / "rtn.pt", weights_only=True)["state"]
    assert sum(key.endswith("down.weight") for key in state) == 1  # one RTN serves both languages


def test_rtn_per_source_with_mixed_batches_is_refused_before_any_data_work(tmp_path):
    args = _panx_data(tmp_path, [("tk", 10), ("en", 14), ("tr", 12)])
    result = runner.invoke(app, ["train", *args, "--method", "metaxl", "--source", "en,related", "--rtn-per-source",
                                 "--output", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert "drop --rtn-per-source or pass --source-strategy sequential" in result.output
    assert not (tmp_path / "run").exists()


def test_target_only_trains_without_the_source_folder(tmp_path):
    args = _panx_data(tmp_path, [("tk", 10)])
    result = runner.invoke(app, ["train", *args, "--method", "target-only",
                                 "--output", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "data: target 8 train / 10 dev / 10 test; no source data" in result.output
    assert json.loads((tmp_path / "run" / "results.json").read_text())["data_sizes"]["source"] == {}


def test_a_full_config_from_best_is_accepted_with_another_method(tmp_path):
    # `best` exports every field (meta_lr, rtn_layers, ...); only flags the method ignores are refused.
    config = tmp_path / "best.yaml"
    RunConfig(model="tiny", data="synthetic", method="metaxl", meta_lr=1e-4).dump(config)
    result = runner.invoke(app, ["train", "--config", str(config), "--method", "jt", "--print-config"])
    assert result.exit_code == 0, result.output
    assert "method: jt" in result.output and "meta_lr: 0.0001" in result.output


# ---- run folders protect finished work ---------------------------------------------------------

import shutil  # noqa: E402

from test_checkpoint import DAMAGE  # noqa: E402

RUN = ["train", "--model", "tiny", "--data", "synthetic", "--task", "ner", "--target", "tk", "--method", "metaxl",
       "--epochs", "1", "--source-size", "32", "--max-length", "32", "--no-progress"]


def snapshot(folder):
    return {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, shared_cache):
    folder = tmp_path_factory.mktemp("finished") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("METAXL_TUNE_CACHE", str(shared_cache))
        result = runner.invoke(app, [*RUN, "--output", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


def test_output_over_a_finished_run_is_refused_and_nothing_changes(finished):
    before = snapshot(finished)
    result = runner.invoke(app, [*RUN, "--output", str(finished)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: --output {finished} holds another run (config.yaml, results.json, checkpoint, best, model, rtn.pt); "
        "choose a new folder, continue it with --resume, or replace it with --overwrite"
    )
    assert snapshot(finished) == before


def test_resume_with_another_method_names_the_field(finished):
    before = snapshot(finished)
    result = runner.invoke(app, [*RUN, "--output", str(finished), "--resume", "--method", "jt"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: --resume: {finished} holds a run with another config: method ('metaxl' here, 'jt' asked); "
        "resume with the same options, or train into a new --output"
    )
    assert snapshot(finished) == before


@pytest.mark.parametrize("damage", DAMAGE)
def test_resume_from_a_damaged_checkpoint_is_one_line(finished, tmp_path, damage):
    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    state = folder / "checkpoint" / "state.pt"
    DAMAGE[damage](state)
    before = snapshot(folder)
    result = runner.invoke(app, [*RUN, "--output", str(folder), "--resume"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith(f"error: checkpoint {state} is unusable (") and lines[-1].endswith(
        f"start again with --overwrite (output {folder})")
    assert not any(line.startswith("error") for line in lines[:-1]) and "weights_only" not in result.output
    assert snapshot(folder) == before


def test_overwrite_replaces_the_run(finished, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    (folder / "notes.txt").write_text("mine")
    result = runner.invoke(app, [*RUN, "--output", str(folder), "--overwrite", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert json.loads((folder / "results.json").read_text())["config"]["seed"] == 7
    assert (folder / "notes.txt").read_text() == "mine"


def _cpu_has(precision: str) -> bool:
    from metaxl_tune.train.precision import PrecisionError, check_precision

    try:
        check_precision(precision, __import__("torch").device("cpu"))
    except PrecisionError:
        return False
    return True


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_train_end_to_end_in_mixed_precision_on_cpu(tmp_path, precision):
    if not _cpu_has(precision):
        pytest.skip(f"this torch has no {precision} autocast on CPU")
    # --max-length 48, not FAST's 32: at 32 (source sizes 32 and 64) this fp16 run stops with "meta loss became nan".
    result = runner.invoke(app, ["train", "--model", "tiny", "--data", "synthetic", "--target", "tk", "--method", "metaxl",
                                 "--epochs", "1", "--source-size", "32", "--max-length", "48", "--precision", precision,
                                 "--output", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "epoch   1/1  dev F1" in result.output and "MiB)" in result.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["precision"] == precision and results["config"]["attention"] == "sdpa"
    assert results["history"][0]["peak_memory_mib"] > 0


def test_a_diverging_run_is_one_line_and_its_folder_is_replaced_with_overwrite(tmp_path):
    tiny = ["train", "--model", "tiny", "--data", "synthetic", "--epochs", "1", *FAST, "--target-size", "20",
            "--output", str(tmp_path), "--no-progress"]
    result = runner.invoke(app, [*tiny, "--lr", "1e30", "--meta-lr", "1e30"])
    assert result.exit_code == 1, result.output
    errors = result.stderr.splitlines()
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert re.fullmatch(r"error: training diverged: (training|meta) loss became (nan|inf|-inf) at epoch 1, step \d+ of \d+; "
                        r"lower (--lr \(now 1e\+30\) or --meta-lr \(now 1e\+30\)|--meta-lr \(now 1e\+30\) or --lr \(now 1e\+30\)); "
                        rf"then start again with --overwrite \(output {re.escape(str(tmp_path))}\)", errors[0]), errors[0]
    again = runner.invoke(app, [*tiny, "--overwrite"])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "results.json").read_text())["config"]["lr"] == RunConfig().lr


def test_progress_into_a_pipe_is_plain_lines_at_each_quarter(tmp_path):
    # A real `train` whose output is a pipe (a log file, a batch job): the one-time build of
    # tiny-pretrained says each quarter on a line of its own, with no redrawn bar.
    import subprocess

    from processes import CLI, cli_env
    from metaxl_tune.model.pretrain import STEPS_ENV

    env = {**cli_env(tmp_path / "cache"), STEPS_ENV: "8"}
    result = subprocess.run([*CLI, "train", "--model", "tiny-pretrained", "--data", "synthetic", "--task", "ner",
                             "--target", "tk", "--method", "target-only", "--epochs", "1", "--max-length", "32",
                             "--output", str(tmp_path / "run")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    said = result.stdout + result.stderr
    assert [line.split(" (")[0] for line in said.splitlines() if line.startswith("pre-training tiny-pretrained: ")] == [
        f"pre-training tiny-pretrained: {k}/8 steps" for k in (2, 4, 6, 8)]
    assert "\r" not in said and "epoch   1/1  dev F1" in said
