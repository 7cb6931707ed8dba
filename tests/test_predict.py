"""`hwlib.predict`: files in chunks, resume after a kill, refusals before the model loads, several processes, and the
Python entry point. The smoke adapter (tiny-random) proves the plumbing: its labels mean nothing."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from hwlib.evaluate import EvalError
from hwlib.predict import PREDICTED_COLUMNS, Classifier, progress_record_path, read_chunks

PROBABILITIES = [c for c in PREDICTED_COLUMNS if c.startswith("p_")]


@pytest.fixture(scope="module")
def classifier(smoke_run):
    return Classifier(smoke_run)


@pytest.fixture(scope="module")
def tweets(data_dir) -> pd.DataFrame:
    from hwlib.data import load_split

    texts = load_split("test", data_dir)["text"][:60]
    return pd.DataFrame({"id": range(500, 500 + len(texts)), "tweet": texts})


from .test_failures import same_predictions


def test_the_python_entry_point_labels_lists_frames_and_files(classifier, tweets, tmp_path):
    listed = classifier(tweets["tweet"].tolist())
    assert list(listed.columns) == ["row", "text", *PREDICTED_COLUMNS] and listed["row"].tolist() == list(range(60))
    assert listed["predicted"].isin(["negative", "neutral", "positive"]).all()
    assert (listed[PROBABILITIES].sum(axis=1) - 1).abs().max() < 1e-5
    framed = classifier(tweets.set_index("id"), text_column="tweet")
    assert list(framed.columns) == ["row", "tweet", *PREDICTED_COLUMNS] and framed["row"].tolist() == list(range(60))
    assert framed.index.tolist() == tweets["id"].tolist()  # a DataFrame keeps its index
    assert framed["predicted"].tolist() == listed["predicted"].tolist()
    tweets.to_csv(tmp_path / "in.csv", index=False)
    from_file = classifier.file(tmp_path / "in.csv", text_column="tweet", progress=False)
    assert list(from_file.columns) == ["row", "id", "tweet", *PREDICTED_COLUMNS]
    assert from_file["predicted"].tolist() == listed["predicted"].tolist()
    with pytest.raises(EvalError, match="label a file with .file"):
        classifier(tmp_path / "in.csv")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet", ".txt"])
def test_chunk_boundaries_change_nothing(classifier, tweets, tmp_path, suffix):
    source = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        tweets.to_csv(source, index=False)
    elif suffix == ".jsonl":
        tweets.to_json(source, orient="records", lines=True)
    elif suffix == ".parquet":
        tweets.to_parquet(source, row_group_size=7)
    else:
        source.write_text("".join(t.replace("\n", " ") + "\n" for t in tweets["tweet"]))
    column = "text" if suffix == ".txt" else "tweet"
    whole = classifier.file(source, text_column=column, progress=False, chunk_rows=1000)
    assert whole["row"].tolist() == list(range(60))  # one rule for every input: the position from 0
    assert [len(c) for c in read_chunks(source, column, 25)] == [25, 25, 10]
    written = {}
    for rows in (1, 7, 60, 61):
        output = tmp_path / f"out-{rows}.jsonl"
        chunks = list(classifier.iter_file(source, output, text_column=column, progress=False, chunk_rows=rows))
        assert len(chunks) == -(-60 // rows) and not progress_record_path(output).exists()
        same_predictions(pd.concat(chunks, ignore_index=True), whole)
        same_predictions(pd.read_json(output, lines=True, dtype={column: str}, precise_float=True), whole)
        written[rows] = output.read_bytes()
    assert len(set(written.values())) == 1  # byte-identical files, whatever the chunk size


@pytest.mark.slow
def test_two_processes_write_what_one_writes(smoke_run, tweets, tmp_path):
    """`accelerate launch --multi_gpu` without CUDA: two CPU processes over gloo, each scoring half of every chunk."""
    source = tmp_path / "in.jsonl"
    tweets.to_json(source, orient="records", lines=True)
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    common = ["-m", "hwlib", "predict", "--adapter", str(smoke_run), "--file", str(source), "--text-column",
              "tweet", "--chunk-rows", "9", "--quiet", "--output"]
    assert subprocess.run([sys.executable, *common, str(one)], capture_output=True, timeout=600).returncode == 0
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    result = subprocess.run([*launch, *common, str(two)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("predictions written to") == 1 and "2 processes (gloo)" in result.stderr
    assert two.read_bytes() == one.read_bytes()
