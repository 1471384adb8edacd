"""Search spaces: shipped YAMLs, define-by-run sampling, conditionals, grids, RunConfigs."""

from __future__ import annotations

import pickle

import optuna
import pytest

from metaxl_tune.config import RunConfig
from metaxl_tune.search.space import SearchSpace, SpaceError, load_space, shipped_spaces

optuna.logging.set_verbosity(optuna.logging.WARNING)

NER = RunConfig(task="ner", target="tk", model="tiny", data="synthetic")
SA = RunConfig(task="sa", target="fa", model="tiny", data="synthetic")

# A space with a conditional parameter: meta_lr and rtn_gate exist only for MetaXL trials.
CONDITIONAL = {
    "fixed": {"epochs": 2},
    "parameters": {
        "rtn_gate": {"type": "categorical", "values": [False, True], "when": {"method": "metaxl"}},
        "method": {"type": "categorical", "values": ["jt", "metaxl"]},
        "meta_lr": {"type": "loguniform", "low": 1e-5, "high": 1e-2, "when": {"method": ["metaxl"]}},
    },
}


def ask(space: SearchSpace, *, n: int, seed: int = 0) -> list[optuna.Trial]:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    trials = []
    for _ in range(n):
        trial = study.ask()
        trial.set_user_attr("sampled", space.sample(trial))
        trials.append(trial)
    return trials


def test_shipped_spaces_are_listed():
    assert shipped_spaces() == ["demo", "ner", "paper-grid", "sa"]


@pytest.mark.parametrize(("name", "base"), [("ner", NER), ("sa", SA), ("paper-grid", NER), ("demo", NER)])
def test_shipped_space_loads_and_validates(name, base):
    space = load_space(name)
    space.validate(base)
    assert (space.metric, space.mode, space.fixed["method"]) == ("best_dev_f1", "max", "metaxl")


def test_sa_space_offers_only_the_english_source():
    space = load_space("sa")
    assert space.fixed["source"] == "en" and "source" not in space.names


def test_ner_space_rejects_a_target_without_a_related_source():
    with pytest.raises(SpaceError, match=r"^ner\.yaml: parameters\.source\.values\[1\]: 'related' is rejected"):
        load_space("ner").validate(NER.replace(target="sw", data="hub"))  # synthetic has no sw


def test_load_space_reads_a_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("parameters:\n  lr: {type: loguniform, low: 1e-5, high: 1e-3}\n")
    space = load_space(str(path))
    assert space.origin == str(path) and space.parameters[0].low == 1e-5  # 1e-5 read as a float


def test_sampling_yields_run_configs():
    space = load_space("ner")
    for trial in ask(space, n=8):
        config = space.to_run_config(NER, trial.user_attrs["sampled"])
        assert config.method == "metaxl" and config.epochs == 20
        assert 1e-7 <= config.meta_lr <= 3e-5
        assert config.rtn_bottleneck in (96, 192, 384, 768)


def test_sample_returns_fixed_values_and_readable_placements():
    (trial,) = ask(load_space("demo"), n=1)
    sampled = trial.user_attrs["sampled"]
    assert sampled["epochs"] == 3 and sampled["lr"] == 3e-3
    assert sampled["rtn_layers"] in ("emb", "middle", "last", "emb+last")
    assert trial.params["rtn_layers"] == sampled["rtn_layers"]


def test_conditional_parameters_are_sampled_only_when_true():
    space = SearchSpace.from_dict(CONDITIONAL)
    assert space.names == ("method", "rtn_gate", "meta_lr")  # dependencies first
    trials = ask(space, n=16)
    methods = {trial.params["method"] for trial in trials}
    assert methods == {"jt", "metaxl"}
    for trial in trials:
        metaxl = trial.params["method"] == "metaxl"
        assert ("meta_lr" in trial.params) is metaxl and ("rtn_gate" in trial.params) is metaxl


def test_inactive_parameter_keeps_the_base_value():
    space = SearchSpace.from_dict(CONDITIONAL)
    config = space.to_run_config(NER, {"method": "jt"})
    assert (config.method, config.meta_lr, config.epochs) == ("jt", NER.meta_lr, 2)


def test_demo_detach_is_conditional_on_two_placements():
    for trial in ask(load_space("demo"), n=20):
        assert ("rtn_detach_input" in trial.params) is (trial.params["rtn_layers"] == "emb+last")


@pytest.mark.parametrize(("label", "layers"), [("emb", [0]), ("middle", ["middle"]), ("last", ["last"]), ("emb+last", [0, "last"])])
def test_placement_label_becomes_rtn_layers(label, layers):
    assert load_space("ner").to_run_config(NER, {"rtn_layers": label}).rtn_layers == layers


def test_explicit_layer_list_is_a_placement_value():
    space = SearchSpace.from_dict({"parameters": {"rtn_layers": {"type": "categorical", "values": [[0, 6], 12]}}})
    assert space.parameters[0].values == ("0+6", "12")
    assert space.to_run_config(NER, {"rtn_layers": "0+6"}).rtn_layers == [0, 6]


def test_int_parameter_samples_within_bounds():
    space = SearchSpace.from_dict({"parameters": {"epochs": {"type": "int", "low": 2, "high": 10, "step": 2}}})
    values = {trial.params["epochs"] for trial in ask(space, n=20)}
    assert values <= {2, 4, 6, 8, 10}


def test_paper_grid_has_48_points():
    grid = load_space("paper-grid").grid()
    assert len(grid) == 3 * 2 * 4 * 2
    assert len({tuple(sorted(point.items())) for point in grid}) == 48
    assert all(point["method"] == "metaxl" and point["epochs"] == 20 for point in grid)


def test_grid_respects_conditions():
    space = SearchSpace.from_dict({**CONDITIONAL, "parameters": {**CONDITIONAL["parameters"], "meta_lr": {
        "type": "categorical", "values": [1e-6, 1e-7], "when": {"method": "metaxl"}}}})
    grid = space.grid()
    assert len(grid) == 1 + 2 * 2  # jt alone; metaxl x rtn_gate x meta_lr
    assert {"method": "jt", "epochs": 2} in grid


def test_grid_refuses_continuous_parameters():
    with pytest.raises(SpaceError, match=r"^ner\.yaml: parameters\.meta_lr: a grid needs categorical"):
        load_space("ner").grid()


def test_validate_checks_combinations():
    space = SearchSpace.from_dict({"parameters": {
        "portion": {"type": "categorical", "values": [2, 8]},
        "batch_size": {"type": "categorical", "values": [16, 4]},
    }}, origin="my.yaml")
    with pytest.raises(SpaceError, match=r"^my\.yaml: parameters: the combination portion=8, batch_size=4 is rejected"):
        space.validate(NER)


def test_space_pickles_for_searcher_checkpoints():
    space = load_space("demo")
    assert pickle.loads(pickle.dumps(space.sample)).__self__ == space


def test_ray_optuna_search_uses_sample_as_define_by_run_space():
    from ray.tune.search.optuna import OptunaSearch

    space = load_space("demo")
    searcher = OptunaSearch(space=space.sample, metric=space.metric, mode=space.mode,
                            sampler=optuna.samplers.TPESampler(seed=0, constant_liar=True))
    config = searcher.suggest("t1")
    assert isinstance(config, dict) and config["method"] == "metaxl"
    assert space.to_run_config(NER, config).epochs == 3


def test_ner_space_searches_source_sets_with_per_source_rtn_only_for_two():
    space = load_space("ner")
    configs = [space.to_run_config(NER, trial.user_attrs["sampled"]) for trial in ask(space, n=30)]
    assert {config.source for config in configs} == {"en", "related", "en,related"}
    assert all(not config.rtn_per_source for config in configs if config.source != "en,related")
    # one RTN per source language only with one language per batch (mixed batches use one RTN)
    assert all(config.source_strategy == "sequential" for config in configs if config.rtn_per_source)


def test_the_metrics_a_space_may_name_are_the_ones_each_epoch_reports():
    import dataclasses

    from metaxl_tune.search.space.schema import REPORTED_METRICS
    from metaxl_tune.train.outcome import EpochResult

    fields = {field.name for field in dataclasses.fields(EpochResult)}
    assert set(REPORTED_METRICS) <= fields
