"""A config's stable id (metaxl_tune/config/identity.py)."""

from metaxl_tune.config.identity import config_id


def test_the_id_is_pinned_and_ignores_key_order():
    searched = {"meta_lr": 0.0003, "rtn_bottleneck": 64, "rtn_layers": "emb", "source": "en"}
    reordered = dict(reversed(list(searched.items())))

    assert config_id(searched) == config_id(reordered) == "c7e22bbe3274"


def test_an_integral_float_is_the_same_config_as_its_integer():
    assert config_id({"rtn_bottleneck": 64.0}) == config_id({"rtn_bottleneck": 64})


def test_different_values_give_different_ids():
    assert config_id({"meta_lr": 0.0003}) != config_id({"meta_lr": 0.00030000000000000003})
