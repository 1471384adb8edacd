"""The typed run config: defaults, YAML round trip, one-line errors."""

from __future__ import annotations

import pytest
import yaml

from metaxl_tune.config import ConfigError, RunConfig, build_config, load_config


def config_file(tmp_path, text: str, name: str = "run.yaml"):
    """A config file holding ``text``, as a user would hand it to --config."""
    path = tmp_path / name
    path.write_text(text)
    return path


def test_task_defaults_follow_the_paper_protocol():
    ner, sa = RunConfig(task="ner"), RunConfig(task="sa")
    assert (ner.batch_size, ner.max_length, ner.rtn_bottleneck, ner.source_size) == (16, 200, 384, 5000)
    assert (sa.batch_size, sa.max_length, sa.rtn_bottleneck, sa.source_size) == (12, 256, 192, 1000)


def test_evaluation_length_defaults_to_the_reference_recipe_and_is_dumped_resolved():
    # mtrain.py: NER trains at --train_max_seq_length 200 and evaluates at --max_seq_length 512; SA 256/256.
    assert (RunConfig(task="ner").eval_max_length, RunConfig(task="sa").eval_max_length) == (512, 256)
    assert yaml.safe_load(RunConfig(task="ner", max_length=64).to_yaml())["eval_max_length"] == 512
    assert RunConfig(task="ner").replace(task="sa").eval_max_length == 256
    with pytest.raises(ValueError, match=r"eval_max_length\s+Value error, must be a positive integer"):
        RunConfig(eval_max_length=0)


def test_yaml_round_trip_is_exact(tmp_path):
    config = RunConfig(task="sa", target="te", rtn_layers=[0, "last"], lookahead_lr=1e-4, max_grad_norm=None,
                       meta_lr=1e-7, theta_update="algorithm1", rtn_gate=False, rtn_init="xavier-uniform")
    path = tmp_path / "run.yaml"
    config.dump(path)
    assert load_config(path) == config
    assert load_config(path).to_yaml() == config.to_yaml()


def test_overrides_replace_file_fields(tmp_path):
    path = tmp_path / "run.yaml"
    RunConfig(seed=1, epochs=3).dump(path)
    assert load_config(path, {"seed": 7}).seed == 7
    assert load_config(path, {"seed": 7}).epochs == 3


@pytest.mark.parametrize(
    "values, message",
    [
        ({"method": "maml"}, "method: Input should be 'target-only', 'jt', 'jt-rtn' or 'metaxl' (got 'maml')"),
        ({"rtn_layers": [-1]}, "rtn_layers: layer indices start at 0"),
        ({"rtn_layers": []}, "rtn_layers: needs at least one placement"),
        ({"source": "related", "target": "fa"}, "source: 'related' is defined for qu->es"),
        ({"target": "Turkish"}, "target: must be a language code"),
        ({"portion": 40}, "portion: must be <= batch_size (16)"),
        ({"epochs": 0}, "epochs: must be a positive integer"),
        ({"meta_lr": 0}, "meta_lr: must be > 0"),
        ({"device": "gpu"}, "device: must be auto, cpu, cuda or cuda:N"),
        ({"meta_lrr": 1e-6}, "meta_lrr: unknown field (known: task, target"),
        ({"source": "tk", "target": "tk"}, "source: must differ from target"),
        ({"method": "jt", "finetune_epochs": 2}, "finetune_epochs: must be 0, or >= 1 with an RTN method"),
        ({"finetune_epochs": -1}, "finetune_epochs: must be 0, or >= 1 with an RTN method"),
        ({"weight_decay": -1e-4}, "weight_decay: must be >= 0"),
        ({"rtn_combine": "sum"}, "rtn_combine: Input should be 'mixture' or 'stack' (got 'sum')"),
        ({"hypergradient": "fd"}, "hypergradient: Input should be 'exact' or 'finite-difference' (got 'fd')"),
    ],
)
def test_invalid_values_fail_with_one_line_naming_the_field(values, message):
    with pytest.raises(ConfigError) as error:
        build_config(values, origin="run.yaml")
    assert str(error.value).startswith("run.yaml: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_config_file_errors_name_the_file(tmp_path):
    bad_yaml = config_file(tmp_path, "task: ner\n  epochs: [\n", "bad.yaml")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+: not valid YAML"):
        load_config(bad_yaml)
    not_mapping = config_file(tmp_path, yaml.safe_dump([1, 2]), "list.yaml")
    with pytest.raises(ConfigError, match="list.yaml: must be a mapping"):
        load_config(not_mapping)
    with pytest.raises(ConfigError, match="missing.yaml: no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_changing_task_re_resolves_task_defaults():
    assert RunConfig(task="ner").replace(task="sa", target="te").batch_size == 12
    assert RunConfig(task="ner", batch_size=8).replace(task="sa", target="te").batch_size == 8


def test_source_list_resolves_related_in_order():
    assert RunConfig(target="tk", source="en,related").source_languages == ["en", "tr"]
    assert RunConfig(target="tk", source="related").source_languages == ["tr"]


@pytest.mark.parametrize(
    "source, message",
    [
        ("en,Turkish", "source: must be language codes or 'related', comma-separated, e.g. en,tr"),
        ("tr,related", "source: names a language twice once 'related' is resolved (tr,tr)"),
        ("en,tk", "source: must differ from target (tk)"),
        ("en,", "source: must be language codes or 'related'"),
    ],
)
def test_bad_source_lists_fail_with_one_line(source, message):
    with pytest.raises(ConfigError) as excinfo:
        build_config({"target": "tk", "source": source})
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_related_in_a_list_needs_a_table_target():
    with pytest.raises(ConfigError, match="source: 'related' is defined for"):
        build_config({"target": "fa", "source": "en,related"})


def test_fields_a_method_ignores_are_listed_in_field_order():
    from metaxl_tune.config import ignored_by_method

    fields = ["portion", "meta_lr", "lr", "source", "rtn_layers"]
    assert ignored_by_method("jt", fields) == ["rtn_layers", "meta_lr", "portion"]
    assert ignored_by_method("jt-rtn", fields) == ["portion"]
    assert ignored_by_method("target-only", fields) == ["source", "rtn_layers", "meta_lr", "portion"]
    assert ignored_by_method("metaxl", fields) == []


def test_refusing_an_ignored_option_names_its_flag_and_the_methods_that_use_it():
    from metaxl_tune.config import ConfigError, refuse_ignored_options

    with pytest.raises(ConfigError) as caught:
        refuse_ignored_options("jt", {"meta_lr", "epochs"})
    assert str(caught.value) == "--meta-lr: method jt ignores it (only jt-rtn, metaxl use it); drop --meta-lr or choose --method metaxl"


def test_an_unknown_placement_names_the_field_and_the_allowed_names():
    from metaxl_tune.config import ConfigError, build_config

    with pytest.raises(ConfigError) as caught:
        build_config({"rtn_layers": [0, "top"]})
    message = str(caught.value)
    assert message.startswith("config: rtn_layers: 'top' is not a placement;") and "middle or last" in message


def test_a_binary_config_file_is_named(tmp_path):
    from metaxl_tune.config import ConfigError, load_config

    path = tmp_path / "model.bin"
    path.write_bytes(b"\x80\x81\x82")
    with pytest.raises(ConfigError, match=rf"^{path}: not UTF-8 text \(byte 0\); --config needs a YAML file$"):
        load_config(path)


def test_several_sources_default_to_the_references_mixed_batches():
    assert RunConfig(target="tk", source="en,related").source_strategy == "mixed"


def test_rtn_per_source_with_mixed_batches_is_refused_naming_both_flags():
    with pytest.raises(ConfigError, match="rtn_per_source: needs batches of one language.*drop --rtn-per-source "
                                          "or pass --source-strategy sequential"):
        build_config({"target": "tk", "source": "en,related", "rtn_per_source": True})


def test_rtn_per_source_is_accepted_with_one_language_per_batch_or_one_source():
    assert build_config({"target": "tk", "source": "en,related", "rtn_per_source": True,
                         "source_strategy": "sequential"}).rtn_per_source
    assert build_config({"target": "tk", "source": "en", "rtn_per_source": True}).rtn_per_source


def test_a_config_files_own_values_are_checked_whole_before_flags_override_them(tmp_path):
    from metaxl_tune.config import ConfigFileError, load_config

    path = config_file(tmp_path, "model: tiny\nepochs: abc\n")
    with pytest.raises(ConfigFileError, match=rf"^{path}: epochs: Input should be a valid integer"):
        load_config(path, {"epochs": 2})


def test_a_file_value_that_only_clashes_with_another_field_may_be_fixed_by_a_flag(tmp_path):
    from metaxl_tune.config import load_config

    path = config_file(tmp_path, "batch_size: 2\nportion: 4\n")  # portion above batch_size: fixed by --batch-size
    assert load_config(path, {"batch_size": 8}).portion == 4


def test_an_empty_config_file_is_refused(tmp_path):
    from metaxl_tune.config import load_config

    path = config_file(tmp_path, "# only a comment\n")
    with pytest.raises(ConfigError, match=rf"^{path}: the config file sets no field"):
        load_config(path)


def test_sa_only_fields_are_refused_on_ner_and_accepted_on_sa():
    from metaxl_tune.config import ignored_by_task, refuse_task_ignored_options

    assert ignored_by_task("ner", {"label_format", "text_column", "epochs"}) == ["label_format", "text_column"]
    assert ignored_by_task("sa", {"label_format", "text_column", "epochs"}) == []
    with pytest.raises(ConfigError, match=r"^--text-column: task ner ignores it \(only sa reads it\)"):
        refuse_task_ignored_options("ner", {"text_column"})


@pytest.mark.parametrize(("values", "field"), [({"target": "xx"}, "target"), ({"target": "tk", "source": "en,de"}, "source")])
def test_synthetic_data_refuses_a_language_it_has_no_grammar_for(values, field):
    with pytest.raises(ConfigError) as error:
        build_config({"data": "synthetic", **values}, origin="options")
    assert str(error.value).startswith(f"options: {field}: --data synthetic has no grammar for")
    assert build_config({"data": "hub", **values}, origin="options").target == values["target"]
