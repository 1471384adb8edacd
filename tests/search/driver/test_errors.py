"""Every mistake in a space is one SpaceError line: ``file: key: what is wrong``."""

from __future__ import annotations

import pytest
import yaml

from metaxl_tune.config import ConfigError, RunConfig
from metaxl_tune.search.space import SearchSpace, SpaceError, load_space

BASE = RunConfig(task="ner", target="tk", model="tiny", data="synthetic")


def error(text: str, *, validate: bool = False) -> str:
    with pytest.raises(SpaceError) as caught:
        space = SearchSpace.from_dict(yaml.safe_load(text), origin="my.yaml")
        if validate:
            space.validate(BASE)
    message = str(caught.value)
    assert "\n" not in message
    return message


CASES = {
    "unknown parameter": (
        "parameters: {meta_lrr: {type: uniform, low: 1, high: 2}}",
        "my.yaml: parameters.meta_lrr: unknown RunConfig field (did you mean meta_lr?)",
    ),
    "low above high": (
        "parameters: {meta_lr: {type: loguniform, low: 1.0e-3, high: 1.0e-5}}",
        "my.yaml: parameters.meta_lr.low: must be <= high (got 0.001 > 1e-05)",
    ),
    "unknown type": (
        "parameters: {lr: {type: logunifrom, low: 1, high: 2}}",
        "my.yaml: parameters.lr.type: unknown type 'logunifrom' (one of loguniform, uniform, int, categorical) (did you mean loguniform?)",
    ),
    "missing type": (
        "parameters: {lr: {low: 1, high: 2}}",
        "my.yaml: parameters.lr.type: missing",
    ),
    "missing high": (
        "parameters: {lr: {type: uniform, low: 1}}",
        "my.yaml: parameters.lr.high: missing",
    ),
    "missing values": (
        "parameters: {source: {type: categorical}}",
        "my.yaml: parameters.source.values: missing",
    ),
    "loguniform at zero": (
        "parameters: {lr: {type: loguniform, low: 0, high: 1}}",
        "my.yaml: parameters.lr.low: must be > 0 for loguniform (got 0)",
    ),
    "unknown spec key": (
        "parameters: {lr: {type: uniform, low: 1, high: 2, stp: 1}}",
        "my.yaml: parameters.lr.stp: unknown key for type uniform",
    ),
    "unknown top-level key": (
        "paramters: {}",
        "my.yaml: paramters: unknown key (known: description, metric, mode, fixed, parameters) (did you mean parameters?)",
    ),
    "bad mode": (
        "mode: maximise",
        "my.yaml: mode: must be max or min (got 'maximise')",
    ),
    "mode against metric": (
        "metric: dev_f1\nmode: min",
        "my.yaml: mode: min would pick the worst trial by dev_f1; use max",
    ),
    "bad metric": (
        "metric: [dev_f1]",
        "my.yaml: metric: must be a reported metric name",
    ),
    "metric no trial reports": (
        "metric: bogus_metric\nmode: max",
        "my.yaml: metric: bogus_metric is not a metric that trials report; use one of dev_f1, test_f1",
    ),
    "metric misspelt": (
        "metric: dev_f2",
        "my.yaml: metric: dev_f2 is not a metric that trials report",
    ),
    "no parameters": (
        "fixed: {epochs: 3}",
        "my.yaml: parameters: none given; a search needs at least one parameter",
    ),
    "empty space": (
        "",
        "my.yaml: parameters: none given",
    ),
    "float type on int field": (
        "parameters: {rtn_bottleneck: {type: uniform, low: 8, high: 64}}",
        "my.yaml: parameters.rtn_bottleneck.type: uniform samples floats but rtn_bottleneck is an integer field; use type: int",
    ),
    "unknown fixed field": (
        "fixed: {epoch: 3}",
        "my.yaml: fixed.epoch: unknown RunConfig field (did you mean epochs?)",
    ),
    "both fixed and sampled": (
        "fixed: {epochs: 3}\nparameters: {epochs: {type: int, low: 2, high: 4}}",
        "my.yaml: parameters.epochs: also set in fixed; keep one of the two",
    ),
    "unknown placement": (
        "parameters: {rtn_layers: {type: categorical, values: [emb, top]}}",
        "my.yaml: parameters.rtn_layers.values[1]: 'top' is not a placement",
    ),
    "condition on unknown field": (
        "parameters: {meta_lr: {type: uniform, low: 1, high: 2, when: {methd: metaxl}}}",
        "my.yaml: parameters.meta_lr.when.methd: unknown RunConfig field (did you mean method?)",
    ),
    "condition on a field outside the space": (
        "parameters: {meta_lr: {type: uniform, low: 1, high: 2, when: {method: metaxl}}}",
        "my.yaml: parameters.meta_lr.when.method: method is neither a parameter nor a fixed field of this space",
    ),
    "condition value outside the domain": (
        "parameters:\n  method: {type: categorical, values: [jt, metaxl]}\n"
        "  meta_lr: {type: uniform, low: 1, high: 2, when: {method: metaxll}}",
        "my.yaml: parameters.meta_lr.when.method: 'metaxll' is not a value of method ('jt', 'metaxl')",
    ),
    "condition never true on a fixed field": (
        "fixed: {method: jt}\nparameters: {meta_lr: {type: uniform, low: 1, high: 2, when: {method: metaxl}}}",
        "my.yaml: parameters.meta_lr.when.method: never true: method is fixed to 'jt'",
    ),
    "dependency cycle": (
        "parameters:\n  rtn_gate: {type: categorical, values: [false, true], when: {method: metaxl}}\n"
        "  method: {type: categorical, values: [jt, metaxl], when: {rtn_gate: true}}",
        "my.yaml: parameters.rtn_gate.when: dependency cycle rtn_gate -> method -> rtn_gate",
    ),
    "duplicate value": (
        "parameters: {rtn_bottleneck: {type: categorical, values: [96, 96]}}",
        "my.yaml: parameters.rtn_bottleneck.values[1]: 96 is listed twice",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_schema_error_is_one_line(case):
    text, expected = CASES[case]
    assert error(text).startswith(expected)


def test_categorical_value_the_run_config_rejects():
    message = error("parameters: {source: {type: categorical, values: [en, English]}}", validate=True)
    assert message.startswith("my.yaml: parameters.source.values[1]: 'English' is rejected by the run config (source: must be language codes or 'related'")


def test_numeric_bound_the_run_config_rejects():
    message = error("parameters: {warmup_ratio: {type: uniform, low: 0.0, high: 1.0}}", validate=True)
    assert message.startswith("my.yaml: parameters.warmup_ratio.high: 1 is rejected by the run config (warmup_ratio: must be in [0, 1)")


def test_fixed_value_the_run_config_rejects():
    message = error("fixed: {method: meta}\nparameters: {lr: {type: uniform, low: 1.0e-5, high: 1.0e-4}}", validate=True)
    assert message.startswith("my.yaml: fixed.method: rejected by the run config (")


def test_unknown_space_name_lists_the_shipped_ones():
    with pytest.raises(SpaceError, match=r"^nerr: unknown search space \(did you mean ner\?\); shipped: demo, ner, paper-grid, sa"):
        load_space("nerr")


def test_missing_file(tmp_path):
    with pytest.raises(SpaceError, match="no such search-space file"):
        load_space(tmp_path / "none.yaml")


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("metric: dev_f1\nparameters: {lr: [\n")
    with pytest.raises(SpaceError, match=rf"^{path}: line 3: not valid YAML"):
        load_space(path)


def test_space_error_is_a_config_error_and_value_error():
    assert issubclass(SpaceError, ConfigError) and issubclass(SpaceError, ValueError)
