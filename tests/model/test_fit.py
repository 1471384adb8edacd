"""A config's max_length and RTN placements against its model, checked before any data."""

from __future__ import annotations

import pytest
from transformers import BertConfig, XLMRobertaConfig

from metaxl_tune.config import RunConfig
from metaxl_tune.model.model_config import (
    BASE_RANDOM, TINY, ModelError, check_max_length, load_model_config, model_shape, position_limit,
)
from metaxl_tune.model.fit import check_fit


def test_roberta_family_positions_start_after_the_padding_index():
    # XLM-R base: 514 position rows, positions numbered from pad_token_id + 1 = 2.
    assert position_limit(XLMRobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert position_limit(BertConfig(max_position_embeddings=512)) == 512


def test_max_length_past_the_position_embeddings_names_the_limit():
    config = XLMRobertaConfig(max_position_embeddings=514, pad_token_id=1)
    check_max_length(512, config, special_tokens=2, model_name="xlm-roberta-base")
    with pytest.raises(ModelError, match=r"^--max-length 513: model xlm-roberta-base has position embeddings for 512 tokens; use at most 512$"):
        check_max_length(513, config, special_tokens=2, model_name="xlm-roberta-base")


def test_max_length_must_leave_a_word_after_the_special_tokens():
    config = XLMRobertaConfig()
    check_max_length(3, config, special_tokens=2, model_name="m")
    with pytest.raises(ModelError, match="use at least 3"):
        check_max_length(2, config, special_tokens=2, model_name="m")


def test_check_fit_resolves_placements_for_rtn_methods_only():
    assert check_fit(RunConfig(model="tiny", data="synthetic", rtn_layers=[0, "last"])).placements == [0, 4]
    assert check_fit(RunConfig(model="tiny", data="synthetic", method="jt")).placements == []
    with pytest.raises(ModelError, match="--max-length 2"):
        check_fit(RunConfig(model="tiny", data="synthetic", max_length=2))


def test_eval_max_length_is_capped_to_the_model_positions_with_one_notice():
    # tiny's position table is sized from max_length (+ XLM-R's offset of 2): 40 + 2 positions.
    capped = RunConfig(model="tiny", data="synthetic", max_length=40)
    fit = check_fit(capped)
    assert fit.eval_max_length == 42
    assert fit.eval_cap_notice(capped) == (
        "notice: --eval-max-length 512 is more than model tiny takes; dev and test are encoded at 42 sub-words"
    )
    within = capped.replace(eval_max_length=30)
    assert check_fit(within).eval_max_length == 30 and check_fit(within).eval_cap_notice(within) is None


def test_eval_max_length_must_leave_a_word_after_the_special_tokens():
    with pytest.raises(ModelError, match=r"^--eval-max-length 2: too short"):
        check_fit(RunConfig(model="tiny", data="synthetic", eval_max_length=2))


def test_the_rtn_bottleneck_is_bounded_by_four_hidden_sizes_or_the_task_default():
    from metaxl_tune.model.fit import check_value_bounds

    check_value_bounds(RunConfig(model="tiny", data="synthetic"))  # the NER default 384 > 4 x 64 stays allowed
    check_value_bounds(RunConfig(model="base-random", data="synthetic", rtn_bottleneck=3072))  # 4 x 768
    with pytest.raises(ModelError, match=r"^--rtn-bottleneck 3073: at most 3072 for model base-random"):
        check_value_bounds(RunConfig(model="base-random", data="synthetic", rtn_bottleneck=3073))
    check_value_bounds(RunConfig(model="tiny", data="synthetic", method="jt", rtn_bottleneck=10**12))  # jt has no RTN


def test_the_bounds_are_stated_in_the_help():
    fields = RunConfig.model_fields
    assert "at most 4 x the model's hidden size" in fields["rtn_bottleneck"].description
    assert "4096 for tiny" in fields["max_length"].description


def test_the_fit_check_loads_no_model_class():
    # A search driver checks every trial's config before Ray starts, and a refused command
    # answers at once: neither builds a model, so neither loads the model classes (backbone,
    # RTN, the transformers modeling modules), a second or more per command.
    from processes import modules_loaded

    code = ("from metaxl_tune.config import RunConfig; from metaxl_tune.model.fit import check_fit; "
            "check_fit(RunConfig(model='tiny-pretrained', data='synthetic', task='sa', target='tk'))")
    assert modules_loaded(code, ("metaxl_tune.model.backbone", "metaxl_tune.model.rtn", "metaxl_tune.model.sa_head",
                                 "transformers.models.xlm_roberta.modeling")) == []


SHAPE_FIELDS = ("num_hidden_layers", "hidden_size", "max_position_embeddings", "pad_token_id", "model_type")


@pytest.mark.parametrize(("name", "max_length"), [(TINY, 32), (TINY, 200), (BASE_RANDOM, 128)])
def test_a_built_in_models_shape_is_what_its_config_says(name, max_length):
    # The fit checks read model_shape; the run builds the model from load_model_config: the two
    # must agree on every field the checks read.
    shape, config = model_shape(name, max_length=max_length), load_model_config(name, max_length=max_length)
    assert {field: getattr(shape, field) for field in SHAPE_FIELDS} == {field: getattr(config, field) for field in SHAPE_FIELDS}


def test_the_fit_check_of_a_built_in_model_loads_no_torch():
    # A search driver checks the trials' configs before Ray starts and never builds a model:
    # transformers' config classes import torch, about 3 s of every driver's start.
    from processes import modules_loaded

    code = ("from metaxl_tune.config import RunConfig; from metaxl_tune.model.fit import check_fit, check_value_bounds\n"
            "for model in ('tiny', 'base-random', 'tiny-pretrained'):\n"
            "    config = RunConfig(model=model, data='synthetic', target='tk', rtn_layers=['middle', 'last'])\n"
            "    check_value_bounds(config, check_fit(config))")
    assert modules_loaded(code, ("torch", "transformers.configuration_utils")) == []
