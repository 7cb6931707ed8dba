import logging
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from hwlib.data import (ID2LABEL, LABEL2ID, LABELS, DataError, class_counts, load_split, load_splits,
                        sample_indices, subsample)

from .conftest import needs_data


def test_label_maps():
    assert LABELS == ("negative", "neutral", "positive")
    assert ID2LABEL == {0: "negative", 1: "neutral", 2: "positive"}
    assert all(LABEL2ID[name] == i for i, name in ID2LABEL.items())


@needs_data
def test_real_splits(data_dir):
    splits = load_splits(data_dir)
    assert {k: v.num_rows for k, v in splits.items()} == {"train": 45615, "validation": 2000, "test": 12284}
    assert splits["test"].column_names == ["text", "label"]
    assert class_counts(splits["test"]) == {"negative": 3972, "neutral": 5937, "positive": 2375}


@needs_data
def test_env_variable_is_used(data_dir, monkeypatch):
    monkeypatch.setenv("HWLIB_DATA_DIR", str(data_dir))
    assert load_split("validation").num_rows == 2000


def write_text_layout(folder, split, texts, labels):
    (folder / f"{split}_text.txt").write_text("\n".join(texts) + "\n")
    (folder / f"{split}_labels.txt").write_text("\n".join(map(str, labels)) + "\n")


def test_text_layout(tmp_path):
    write_text_layout(tmp_path, "test", ["good day", "bad day", "a day"], [2, 0, 1])
    split = load_split("test", tmp_path)
    assert split["text"] == ["good day", "bad day", "a day"] and split["label"] == [2, 0, 1]


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "nowhere")):
        load_splits(tmp_path / "nowhere")


def test_missing_split(tmp_path):
    write_text_layout(tmp_path, "train", ["x"], [0])
    with pytest.raises(DataError, match="split 'test' not found"):
        load_split("test", tmp_path)


def test_unknown_split(tmp_path):
    with pytest.raises(DataError, match="unknown split 'dev'"):
        load_split("dev", tmp_path)


def test_missing_column(tmp_path):
    pd.DataFrame({"text": ["a"], "sentiment": [1]}).to_parquet(tmp_path / "test.parquet")
    with pytest.raises(DataError, match=r"test\.parquet has no column label"):
        load_split("test", tmp_path)


def test_label_out_of_range(tmp_path):
    pd.DataFrame({"text": ["a", "b"], "label": [1, 3]}).to_parquet(tmp_path / "test.parquet")
    with pytest.raises(DataError, match=r"test\.parquet: 1 labels outside 0\.\.2 \(first at row 1: 3\)"):
        load_split("test", tmp_path)


def test_length_mismatch(tmp_path):
    (tmp_path / "test_text.txt").write_text("a\nb\nc\n")
    (tmp_path / "test_labels.txt").write_text("0\n1\n")
    with pytest.raises(DataError, match=r"test_text\.txt has 3 lines but .*test_labels\.txt has 2"):
        load_split("test", tmp_path)


def test_blank_texts_reported_and_kept(tmp_path, caplog):
    write_text_layout(tmp_path, "test", ["fine", "  ", "ok", ""], [1, 1, 2, 0])
    with caplog.at_level(logging.WARNING):
        split = load_split("test", tmp_path)
    assert split.num_rows == 4
    assert "2 empty or whitespace-only texts (rows [1, 3])" in caplog.text


def test_one_line_error_from_the_command_line(tmp_path):
    env = {"HWLIB_DATA_DIR": str(tmp_path / "missing"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "hwlib", "search", "--output", str(tmp_path / "s")],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("hwlib: error:")]
    assert len(errors) == 1 and str(tmp_path / "missing") in errors[0]


LABELS_600 = np.array([0] * 100 + [1] * 300 + [2] * 200)


def test_stratified_keeps_shares():
    picked = sample_indices(LABELS_600, 60, "stratified", seed=1)
    assert len(picked) == 60 and picked == sorted(picked)
    assert np.bincount(LABELS_600[picked]).tolist() == [10, 30, 20]


def test_balanced_equal_counts():
    picked = sample_indices(LABELS_600, 61, "balanced", seed=1)
    assert np.bincount(LABELS_600[picked]).tolist() == [21, 20, 20]


def test_sampling_is_seeded():
    assert sample_indices(LABELS_600, 90, "balanced", 7) == sample_indices(LABELS_600, 90, "balanced", 7)
    assert sample_indices(LABELS_600, 90, "balanced", 7) != sample_indices(LABELS_600, 90, "balanced", 8)


@pytest.mark.parametrize("size, sampling, message", [
    (0, "stratified", "between 1"), (700, "stratified", "between 1"),
    (400, "balanced", "needs 134 negative rows but the split has 100"), (10, "random", "unknown sampling"),
])
def test_bad_sampling(size, sampling, message):
    with pytest.raises(DataError, match=message):
        sample_indices(LABELS_600, size, sampling)


def test_subsample_dataset(tmp_path):
    write_text_layout(tmp_path, "train", [f"t{i}" for i in range(30)], [i % 3 for i in range(30)])
    split = load_split("train", tmp_path)
    small = subsample(split, 9, "balanced", seed=3)
    assert class_counts(small) == {"negative": 3, "neutral": 3, "positive": 3}
    assert subsample(split, None) is split


def test_bundled_copy_is_the_default(monkeypatch):
    from hwlib import data

    monkeypatch.delenv("HWLIB_DATA_DIR", raising=False)
    assert data.data_dir() == data.bundled_dir() is not None
    splits = load_splits()
    assert {k: v.num_rows for k, v in splits.items()} == {"train": 45615, "validation": 2000, "test": 12284}
    assert class_counts(splits["train"]) == {"negative": 7093, "neutral": 20673, "positive": 17849}
    assert data.data_source() == "bundled copy (sha256 verified)"


def test_changed_bundled_file_is_reported(monkeypatch, tmp_path, caplog):
    import shutil

    from hwlib import data

    for split in ("train", "validation", "test"):
        shutil.copy(data.bundled_dir() / f"{split}.parquet", tmp_path / f"{split}.parquet")
    pd.DataFrame({"text": ["x"], "label": [0]}).to_parquet(tmp_path / "test.parquet")
    monkeypatch.delenv("HWLIB_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "bundled_dir", lambda: tmp_path)
    data.bundled_mismatches.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            assert data.bundled_mismatches() == ("test",)
        assert "differ from the published sha256 (test)" in caplog.text
        assert data.data_source().startswith("bundled copy (sha256 DIFFERS: test")
    finally:
        data.bundled_mismatches.cache_clear()


def test_explicit_folder_and_env_come_first(tmp_path, monkeypatch):
    from hwlib import data

    write_text_layout(tmp_path, "test", ["a"], [1])
    monkeypatch.setenv("HWLIB_DATA_DIR", str(tmp_path))
    assert load_split("test").num_rows == 1 and data.data_source() == f"folder {tmp_path}"
    monkeypatch.delenv("HWLIB_DATA_DIR")
    assert load_split("test", tmp_path).num_rows == 1
