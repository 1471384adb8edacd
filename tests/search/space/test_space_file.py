"""The space file's pydantic models: which problem a file with several is reported by, the
keys each parameter type takes, and the pickled names a resumed search looks up."""

from __future__ import annotations

import pickle

import pytest
import yaml

from metaxl_tune.search.space import SearchSpace, SpaceError, load_space
from metaxl_tune.search.space.specs import PARAMETER_TYPES, SPECS


def error(text: str) -> str:
    with pytest.raises(SpaceError) as caught:
        SearchSpace.from_dict(yaml.safe_load(text), origin="my.yaml")
    return str(caught.value)


def test_an_unknown_key_is_reported_before_the_problems_it_causes():
    # "stp" is a typo; pydantic lists the missing high first, but the typo is the thing to fix.
    assert error("parameters: {lr: {type: uniform, low: 1, stp: 1}}") == (
        "my.yaml: parameters.lr.stp: unknown key for type uniform (known: type, low, high, when)")
    # A misspelt top-level key comes before a problem inside the parameters.
    assert error("paramter: {}\nparameters: {lr: {type: uniform, low: 1}}").startswith(
        "my.yaml: paramter: unknown key (known: description, metric, mode, fixed, parameters)")


def test_a_problem_in_an_earlier_parameter_is_reported_first():
    text = "parameters:\n  lr: {type: uniform, low: 2, high: 1}\n  meta_lr: {type: loguniform, low: 0, high: 1}"
    assert error(text) == "my.yaml: parameters.lr.low: must be <= high (got 2 > 1)"


@pytest.mark.parametrize("kind", PARAMETER_TYPES)
def test_each_type_lists_the_keys_its_model_takes(kind):
    message = error(f"parameters: {{lr: {{type: {kind}, bogus: 1}}}}")
    assert message == f"my.yaml: parameters.lr.bogus: unknown key for type {kind} (known: {', '.join(SPECS[kind].model_fields)})"
    assert list(SPECS[kind].model_fields)[0] == "type" and list(SPECS[kind].model_fields)[-1] == "when"


def test_a_space_pickled_before_the_package_move_loads():
    # Tune's searcher state holds SearchSpace.sample; the release before the move pickled the
    # classes as metaxl_tune.search.space.{SearchSpace,Parameter}. Protocol 0 names them in text.
    space = load_space("demo")
    payload = pickle.dumps(space, protocol=0)
    assert b"metaxl_tune.search.space.schema\nSearchSpace" in payload
    assert b"metaxl_tune.search.space.parameter\nParameter" in payload
    old = (payload.replace(b"metaxl_tune.search.space.schema\nSearchSpace", b"metaxl_tune.search.space\nSearchSpace")
           .replace(b"metaxl_tune.search.space.parameter\nParameter", b"metaxl_tune.search.space\nParameter"))
    assert pickle.loads(old) == space
    # ... and the layout just before the pydantic models, with both classes in schema.py.
    moved = payload.replace(b"metaxl_tune.search.space.parameter\nParameter", b"metaxl_tune.search.space.schema\nParameter")
    assert pickle.loads(moved) == space
