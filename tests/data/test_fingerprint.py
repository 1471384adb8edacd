from __future__ import annotations

import os

import pytest

from metaxl_tune.config import RunConfig
from metaxl_tune.data import DataError, data_fingerprint

PANX = "tk:Maru\tB-PER\n"


@pytest.fixture
def panx_config(tmp_path, write):
    for split in ("train", "dev", "test"):
        write(tmp_path / "tk" / split, PANX)
    return RunConfig(data=str(tmp_path))


def test_synthetic_fingerprint_is_stable_and_short_hex():
    fingerprint = data_fingerprint(RunConfig(data="synthetic"), "tk")
    assert fingerprint == data_fingerprint(RunConfig(data="synthetic"), "tk")
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0


def test_synthetic_fingerprint_depends_on_language_and_task():
    fingerprints = {
        data_fingerprint(RunConfig(data="synthetic", task=task), language)
        for task in ("ner", "sa")
        for language in ("tk", "qu")
    }
    assert len(fingerprints) == 4


def test_hub_fingerprint_needs_no_network_and_depends_on_language():
    assert data_fingerprint(RunConfig(data="hub"), "tk") != data_fingerprint(RunConfig(data="hub"), "qu")


def test_directory_fingerprint_changes_when_a_file_read_changes(panx_config, tmp_path):
    before = data_fingerprint(panx_config, "tk")
    (tmp_path / "tk" / "dev").write_text(PANX + "tk:Tessa\tI-PER\n", encoding="utf-8")
    assert data_fingerprint(panx_config, "tk") != before


def test_directory_fingerprint_changes_with_modification_time(panx_config, tmp_path):
    before = data_fingerprint(panx_config, "tk")
    os.utime(tmp_path / "tk" / "test", ns=(0, 0))
    assert data_fingerprint(panx_config, "tk") != before


def test_directory_fingerprint_ignores_files_not_read(panx_config, tmp_path, write):
    before = data_fingerprint(panx_config, "tk")
    write(tmp_path / "tk" / "README", "notes")
    assert data_fingerprint(panx_config, "tk") == before


def test_sa_fingerprint_covers_the_options_that_change_the_labels(tmp_path, write):
    for split in ("train", "dev", "test"):
        write(tmp_path / "fa" / f"{split}.jsonl", '{"text": "a", "label": 1}\n')
    auto = RunConfig(data=str(tmp_path), task="sa", target="fa")
    assert data_fingerprint(auto, "fa") != data_fingerprint(auto.replace(label_format="binary"), "fa")


def test_sa_on_the_hub_is_refused_like_load_splits():
    with pytest.raises(DataError, match="SA has no hub dataset"):
        data_fingerprint(RunConfig(data="hub", task="sa", target="fa"), "fa")
