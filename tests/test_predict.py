"""`hwlib.predict`: files in chunks, resume after a kill, refusals before the model loads, several processes, and the
Python entry point. The smoke adapter (tiny-random) proves the plumbing: its labels mean nothing."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from hwlib.evaluate import EvalError
from hwlib.predict import PREDICTED_COLUMNS, Classifier, plan_file, progress_record_path, read_chunks

from .test_failures import assert_one_line_error, cli

PROBABILITIES = [c for c in PREDICTED_COLUMNS if c.startswith("p_")]


@pytest.fixture(scope="module")
def classifier(smoke_run):
    return Classifier(smoke_run)


@pytest.fixture(scope="module")
def tweets(data_dir) -> pd.DataFrame:
    from hwlib.data import load_split

    texts = load_split("test", data_dir)["text"][:60]
    return pd.DataFrame({"id": range(500, 500 + len(texts)), "tweet": texts})


def same_predictions(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) and a["row"].tolist() == b["row"].tolist()
    assert a["predicted"].tolist() == b["predicted"].tolist()
    assert (a[PROBABILITIES] - b[PROBABILITIES]).abs().max().max() <= 1e-6 + 1e-12  # one unit of the 6th decimal


def test_the_python_entry_point_labels_lists_frames_and_files(classifier, tweets, tmp_path):
    listed = classifier(tweets["tweet"].tolist())
    assert list(listed.columns) == ["row", "text", *PREDICTED_COLUMNS] and listed["row"].tolist() == list(range(60))
    assert listed["predicted"].isin(["negative", "neutral", "positive"]).all()
    assert (listed[PROBABILITIES].sum(axis=1) - 1).abs().max() < 1e-5
    framed = classifier(tweets.set_index("id"), text_column="tweet")
    assert list(framed.columns) == ["row", "tweet", *PREDICTED_COLUMNS] and framed["row"].tolist()[0] == 500
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
    assert whole["row"].tolist() == list(range(1, 61) if suffix == ".txt" else range(60))
    assert [len(c) for c in read_chunks(source, column, 25)] == [25, 25, 10]
    for rows in (1, 7, 60, 61):
        output = tmp_path / f"out-{rows}.jsonl"
        chunks = list(classifier.iter_file(source, output, text_column=column, progress=False, chunk_rows=rows))
        assert len(chunks) == -(-60 // rows) and not progress_record_path(output).exists()
        same_predictions(pd.concat(chunks, ignore_index=True), whole)
        same_predictions(pd.read_json(output, lines=True, dtype={column: str}), whole)


def test_a_bad_row_deep_in_a_file_is_refused_before_the_model_loads(smoke_run, tmp_path):
    rows = [{"id": i, "text": f"message {i}"} for i in range(3000)]
    rows[2712]["text"] = 12
    path = tmp_path / "deep.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    started = time.perf_counter()
    assert_one_line_error(cli("predict", "--adapter", str(smoke_run), "--file", str(path), "--output",
                              str(tmp_path / "out.csv")), "row 2712", "not text")
    assert time.perf_counter() - started < 20 and not (tmp_path / "out.csv").exists()  # no model was loaded
    rows[2712]["text"] = "   "
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(EvalError, match="1 empty .* at row 2712"):
        plan_file(path)
    assert plan_file(path, allow_empty=True).rows == 3000


def test_an_existing_output_is_kept_unless_overwrite(classifier, tweets, tmp_path):
    source, output = tmp_path / "in.txt", tmp_path / "out.csv"
    source.write_text("good\nbad\n")
    output.write_text("someone's results\n")
    with pytest.raises(EvalError, match="already exists and is not an unfinished prediction.*--overwrite"):
        classifier.file(source, output, progress=False)
    assert output.read_text() == "someone's results\n"
    classifier.file(source, output, overwrite=True, progress=False)
    assert pd.read_csv(output)["row"].tolist() == [1, 2]


def start_predict(smoke_run, source, output, *extra):
    return subprocess.Popen([sys.executable, "-m", "hwlib", "predict", "--adapter", str(smoke_run), "--file",
                             str(source), "--output", str(output), "--chunk-rows", "8", "--quiet", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_killed_run_resumes_to_the_uninterrupted_file(smoke_run, data_dir, tmp_path):
    from hwlib.data import load_split

    source = tmp_path / "tweets.csv"
    texts = load_split("test", data_dir)["text"][:400]
    pd.DataFrame({"id": range(len(texts)), "tweet": texts}).to_csv(source, index=False)
    uninterrupted, output = tmp_path / "whole.csv", tmp_path / "resumed.csv"
    assert start_predict(smoke_run, source, uninterrupted, "--text-column", "tweet").wait(timeout=900) == 0
    process = start_predict(smoke_run, source, output, "--text-column", "tweet")
    record = progress_record_path(output)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if record.is_file() and json.loads(record.read_text())["done_rows"] >= 24:
            break
        time.sleep(0.05)
    assert process.poll() is None, "finished before it could be killed: give it more rows"
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = json.loads(record.read_text())
    assert 24 <= done["done_rows"] < 400 and output.stat().st_size >= done["done_bytes"]

    changed = tmp_path / "changed.csv"  # the same command with another setting, or on a changed input: refused
    result = cli("predict", "--adapter", str(smoke_run), "--file", str(source), "--output", str(output),
                 "--text-column", "tweet", "--max-length", "200")
    assert_one_line_error(result, "cannot resume", "max_length", "--overwrite")
    source_text = source.read_text()
    source.write_text(source_text.replace("\n", "\n", 1) + "999,one more tweet\n")
    assert_one_line_error(cli("predict", "--adapter", str(smoke_run), "--file", str(source), "--output",
                              str(output), "--text-column", "tweet"), "cannot resume", "input_sha256")
    source.write_text(source_text)
    assert not changed.exists()

    resumed = start_predict(smoke_run, source, output, "--text-column", "tweet")
    _, stderr = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, stderr[-2000:]
    assert f"resuming {output}: {done['done_rows']} of 400 rows" in stderr
    assert not record.exists()
    same_predictions(pd.read_csv(output, keep_default_na=False), pd.read_csv(uninterrupted, keep_default_na=False))


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
    same_predictions(pd.read_json(two, lines=True, dtype={"tweet": str}),
                     pd.read_json(one, lines=True, dtype={"tweet": str}))
