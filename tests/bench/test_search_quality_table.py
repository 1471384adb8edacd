"""The tabular benchmark's table builder (bench/search_quality_table.py) adds seeds by appending:
only the (target, config, seed) lines the table lacks are trained, and the lines already there,
the committed table's included, stay byte for byte as they were."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from metaxl_tune.search.space.schema import load_space
from bench_scripts import pretrained_models_seen, tiny_grid
from processes import REPO, cli_env

BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))

from search_quality_table import DEFAULT_SPACE, DEFAULT_TABLE, build, config_key, parse_seeds, read_table  # noqa: E402

TINY_GRID = tiny_grid(1e-3)


class Recorder:
    """A training function with train_row's signature: records what it is asked to train and
    returns a made-up line (the test is about which lines get trained, not about training).
    The builds that use it name model ``tiny``: nothing to pre-train before the lines."""

    def __init__(self):
        self.calls: list[tuple[str, str, int]] = []

    def __call__(self, space, target, params, seed, cache_dir, model):
        self.calls.append((target, config_key(params), seed))
        epochs = [{"epoch": 1, "dev_f1": float(seed), "test_f1": float(seed), "steps": 30, "seconds": 0.0}]
        return {"target": target, "params": params, "seed": seed, "epochs": epochs, "seconds": 0.0}


def test_adding_seeds_to_the_committed_table_trains_only_the_new_seeds_and_keeps_its_lines_byte_for_byte(tmp_path):
    table = tmp_path / "table.jsonl"
    shutil.copyfile(DEFAULT_TABLE, table)
    committed = table.read_bytes()
    existing = {(row["target"], config_key(row["params"]), row["seed"]) for row in read_table(table)}
    keys = {(target, key) for target, key, _ in existing}
    committed_seeds = sorted({seed for _, _, seed in existing})
    # The committed table holds seeds 1 to n for every config of both targets; the next seed is new.
    assert len(keys) == 96 and committed_seeds == list(range(1, len(committed_seeds) + 1))
    assert len(existing) == 96 * len(committed_seeds)
    new_seed = len(committed_seeds) + 1
    train = Recorder()

    build(load_space(DEFAULT_SPACE), table, ["tk", "qu"], parse_seeds(f"1-{new_seed}"), say=lambda line: None,
          train=train, model="tiny")

    assert table.read_bytes().startswith(committed)  # every committed line as it was, in its place
    assert len(train.calls) == 96 and set(train.calls) == {(t, k, new_seed) for t, k in keys}
    assert len(read_table(table)) == len(existing) + 96


def test_a_table_with_every_seed_asked_trains_nothing_and_is_left_as_it_is(tmp_path):
    table = tmp_path / "table.jsonl"
    shutil.copyfile(DEFAULT_TABLE, table)
    train = Recorder()
    build(load_space(DEFAULT_SPACE), table, ["tk", "qu"], parse_seeds("2"), say=lambda line: None, train=train)
    # (every committed config has seeds 1 and 2 at least)
    assert train.calls == [] and table.read_bytes() == DEFAULT_TABLE.read_bytes()


def test_each_new_line_is_appended_as_its_training_ends(tmp_path):
    table = tmp_path / "table.jsonl"
    (tmp_path / "grid.yaml").write_text(TINY_GRID)
    seen_before_each_call = []

    class Watching(Recorder):
        def __call__(self, *args):
            seen_before_each_call.append(len(table.read_text().splitlines()) if table.exists() else 0)
            return super().__call__(*args)

    build(load_space(tmp_path / "grid.yaml"), table, ["tk"], [1, 2, 3], say=lambda line: None, train=Watching(),
          model="tiny")
    # Resumable: a build killed during the third training keeps the first two lines.
    assert seen_before_each_call == [0, 1, 2]
    assert [json.loads(line)["seed"] for line in table.read_text().splitlines()] == [1, 2, 3]


def test_parallel_workers_find_tiny_pretrained_ready_built_once_before_any_line_trains(tmp_path, monkeypatch):
    from metaxl_tune.model.pretrain import STEPS_ENV

    monkeypatch.setenv(STEPS_ENV, "2")  # a real pre-training, cut to two MLM steps
    monkeypatch.setenv("METAXL_TUNE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "grid.yaml").write_text(tiny_grid(1e-3, 3e-3))
    table = tmp_path / "table.jsonl"

    rows = build(load_space(tmp_path / "grid.yaml"), table, ["tk"], [1, 2], jobs=2, model="tiny-pretrained",
                 say=lambda line: None, train=pretrained_models_seen)

    assert len(rows) == 4
    seen = {tuple(row["pretrained_seen"]) for row in rows}
    assert len(seen) == 1 and len(next(iter(seen))) == 1  # one finished folder, no worker's partial copy
    assert not next(iter(seen))[0].endswith(".partial")


@pytest.mark.parametrize(("text", "seeds"), [("2", [1, 2]), ("1-8", list(range(1, 9))), ("1-2,5,7-8", [1, 2, 5, 7, 8]),
                                              ("3-4,1-4", [3, 4, 1, 2])])
def test_seeds_are_a_count_a_range_or_a_list(text, seeds):
    assert parse_seeds(text) == seeds


def test_the_cli_trains_only_the_missing_seed_for_real_and_keeps_the_line_there(tmp_path, shared_cache):
    (tmp_path / "grid.yaml").write_text(TINY_GRID)
    table = tmp_path / "table.jsonl"
    build(load_space(tmp_path / "grid.yaml"), table, ["tk"], [1], say=lambda line: None, train=Recorder(),
          model="tiny")
    kept = table.read_bytes()
    command = [sys.executable, str(BENCH / "search_quality_table.py"), "--space", str(tmp_path / "grid.yaml"),
               "--table", str(table), "--targets", "tk", "--seeds", "1-2", "--model", "tiny"]
    done = subprocess.run(command, cwd=tmp_path, env=cli_env(shared_cache), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "1 lines kept, 1 to train" in done.stderr and done.stderr.count("trained tk") == 1
    assert table.read_bytes().startswith(kept)
    added = json.loads(table.read_bytes()[len(kept):])
    assert added["seed"] == 2 and added["params"] == {"meta_lr": 1e-3} and [e["epoch"] for e in added["epochs"]] == [1]
    assert json.loads(done.stdout.splitlines()[-1])["configs_by_seed_count"] == {"tk": {"2": 1}}


@pytest.mark.parametrize(("seeds", "named"), [("x", "'x' is not a number or a range"),
                                              ("4-2", "'4-2' is empty or negative")])
def test_bad_seeds_are_refused_in_one_line_and_the_table_is_untouched(tmp_path, seeds, named):
    table = tmp_path / "table.jsonl"
    shutil.copyfile(DEFAULT_TABLE, table)
    done = subprocess.run([sys.executable, str(BENCH / "search_quality_table.py"), "--table", str(table),
                           "--seeds", seeds], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(f"--seeds {seeds}: ") and named in done.stderr
    assert table.read_bytes() == DEFAULT_TABLE.read_bytes()
