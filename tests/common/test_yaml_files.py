"""The project's one YAML loader: limits on size, aliases and depth, and no duplicate keys."""

from __future__ import annotations

import pytest

from metaxl_tune.common.yaml_files import MAX_YAML_BYTES, MAX_YAML_DEPTH, YamlError, parse_yaml, read_yaml_text
from tests.io_counters import reading


def refusal(text: str) -> str:
    with pytest.raises(YamlError) as error:
        parse_yaml(text, "f.yaml")
    message = str(error.value)
    assert "\n" not in message and message.startswith("f.yaml: ")
    return message


def billion_laughs(levels: int = 9) -> str:
    """Each level a list of nine aliases of the level below: 9**levels strings once expanded."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_the_line_that_crosses_the_limit():
    message = refusal(billion_laughs())
    assert message.startswith("f.yaml: line 6: the document would hold over 100,000 values once its aliases")
    assert len(message) < 200


def test_a_few_aliases_are_read_as_yaml_reads_them():
    data = parse_yaml(billion_laughs(levels=3), "f.yaml")
    assert data["l1"] == [["lol"] * 9] * 9 and len(data["l2"]) == 9


@pytest.mark.parametrize("text", [
    "x: " + "[" * 20_000 + "]" * 20_000 + "\n",  # flow style, as in the issue
    "".join(" " * depth + f"k{depth}:\n" for depth in range(MAX_YAML_DEPTH + 1)) + " " * (MAX_YAML_DEPTH + 1) + "v\n",
    "- " * (MAX_YAML_DEPTH + 1) + "x\n",
], ids=["flow-20000", "block-mappings", "block-lists"])
def test_deep_nesting_is_one_line(text):
    message = refusal(text)
    assert "nest" in message and "Recursion" not in message


def test_nesting_at_the_limit_is_read():
    assert parse_yaml("x: " + "[" * (MAX_YAML_DEPTH - 1) + "]" * (MAX_YAML_DEPTH - 1) + "\n", "f.yaml") is not None


def test_a_duplicate_key_names_the_key_and_both_lines():
    message = refusal("method: jt\nepochs: 2\nmethod: metaxl\n")
    assert message == "f.yaml: line 3: key 'method' appears twice in one mapping (lines 1 and 3); keep one"


def test_a_duplicate_key_in_a_nested_mapping_is_refused():
    message = refusal("settings:\n  jt: {method: jt}\n  mx: {method: metaxl}\n  jt: {method: metaxl}\n")
    assert "key 'jt' appears twice in one mapping (lines 2 and 4)" in message


def test_a_duplicate_key_in_a_flow_mapping_is_refused():
    assert "key 'a' appears twice in one mapping (lines 1 and 1)" in refusal("{a: 1, a: 2}\n")


def test_keys_are_compared_as_yaml_reads_them():
    assert "key 1 appears twice" in refusal("1: a\n0x1: b\n")


def test_the_same_key_in_two_mappings_is_fine():
    assert parse_yaml("a: {x: 1}\nb: {x: 2}\n", "f.yaml") == {"a": {"x": 1}, "b": {"x": 2}}


def test_a_merge_key_may_be_overridden():
    data = parse_yaml("base: &base {lr: 1, epochs: 2}\nrun:\n  <<: *base\n  lr: 3\n", "f.yaml")
    assert data["run"] == {"lr": 3, "epochs": 2}


def test_an_alias_inside_its_own_anchor_is_refused():
    assert "alias *a refers to a list or mapping that holds it" in refusal("a: &a [1, *a]\n")


def test_invalid_yaml_names_the_line():
    assert refusal("epochs: [1,\n").startswith("f.yaml: line 2: not valid YAML")


def test_an_empty_document_is_none():
    assert parse_yaml("# nothing\n", "f.yaml") is None


def test_a_large_file_is_refused_after_reading_only_the_limit(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as handle:
        handle.truncate(1 << 30)  # 1 GiB, sparse: no disk, and reading it whole would take a GiB
    error, read = reading(lambda: read_yaml_text(path, "pass a config"))
    assert isinstance(error, YamlError)
    assert str(error) == f"{path}: holds over {MAX_YAML_BYTES:,} bytes, more than a YAML file of this project needs; pass a config"
    assert read < 2 * MAX_YAML_BYTES


def test_a_binary_file_names_the_byte(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_bytes(b"a: \xff\n")
    with pytest.raises(YamlError, match=r"b.yaml: not UTF-8 text \(byte 3\); pass a config"):
        read_yaml_text(path, "pass a config")
