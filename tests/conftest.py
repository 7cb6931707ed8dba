"""Shared fixtures: the real TweetEval copy (skipped when absent) and a tiny-random smoke run."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwlib.config import train_config


def real_data_dir() -> Path | None:
    """`$HWLIB_DATA_DIR` when set, else the copy bundled with the course (the loader's own order)."""
    from hwlib.data import data_dir as chosen

    folder = chosen()
    return folder if folder is not None and (folder / "train.parquet").is_file() else None


needs_data = pytest.mark.skipif(real_data_dir() is None,
                                reason="no TweetEval parquet files: neither HWLIB_DATA_DIR nor the bundled copy")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    folder = real_data_dir()
    if folder is None:
        pytest.skip("no TweetEval parquet files: neither HWLIB_DATA_DIR nor the bundled copy")
    return folder


@pytest.fixture(scope="session")
def tiny():
    """tiny-random in 4-bit NF4, as the smoke profile loads it."""
    from hwlib.models import load_model

    return load_model("tiny-random")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, data_dir) -> Path:
    """A finished smoke-profile training run (tiny-random: plumbing only, no quality)."""
    from hwlib.train import train

    output = tmp_path_factory.mktemp("runs") / "smoke"
    return train(train_config("smoke", output_dir=str(output), data_dir=str(data_dir)))
