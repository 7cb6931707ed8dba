"""Labels for your own messages at any size: one Python entry point (`Classifier`), files read and written in chunks
(memory bounded by a chunk, not the file), a progress bar, output that resumes where an interrupted run stopped, and
the work split between processes under `accelerate launch`."""

from __future__ import annotations

import codecs
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .data import LABELS
from .embedded import file_sha256
from .evaluate import EMPTY, EvalError, check_texts, predict, refuse_blank
from .files import write_json

log = logging.getLogger(__name__)

CHUNK_ROWS = 1024  # rows scored and written at a time: about a minute of a 2-core CPU, all that a kill can lose
TABLE_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")  # read with the column --text-column
TEXT_SUFFIXES = ("", ".txt", ".text")  # one message per line
OUTPUT_SUFFIXES = (".csv", ".jsonl")
PREDICTED_COLUMNS = ("predicted", *(f"p_{label}" for label in LABELS))  # what prediction adds to each input row
PROGRESS_SUFFIX = ".progress.json"  # beside an output being written: what it was started with and how far it got


def progress_record_path(output: str | Path) -> Path:
    """The record beside an unfinished output (`labels.csv.progress.json`); it is deleted when the output is done."""
    output = Path(output)
    return output.with_name(output.name + PROGRESS_SUFFIX)


# ---------------------------------------------------------------- reading

def check_input_path(path: str | Path) -> Path:
    """A readable file of messages with a suffix hwlib knows, or a one-line error naming what is wrong."""
    path = Path(path)
    if path.is_dir():
        raise EvalError(f"{path} is a directory: give a file of messages (--file)")
    if not path.is_file():
        raise EvalError(f"{path} not found: give an existing file of messages (--file)")
    if path.suffix.lower() not in TABLE_SUFFIXES + TEXT_SUFFIXES:
        raise EvalError(f"{path}: unknown kind of file {path.suffix!r}; use one of "
                        f"{', '.join(s for s in TABLE_SUFFIXES + TEXT_SUFFIXES if s)} or a file without a suffix")
    return path


def check_output_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise EvalError(f"--output {path}: use a {' or '.join(OUTPUT_SUFFIXES)} file name")
    if path.is_dir():
        raise EvalError(f"--output {path} is a directory: give a file name")
    return path


def is_text_file(path: Path) -> bool:
    return path.suffix.lower() in TEXT_SUFFIXES


def read_chunks(path: str | Path, text_column: str = "text", chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """The file's rows, `chunk_rows` at a time: `row` (the input's row index; line number for text files) and the
    input's columns (text files: `text`), the messages as strings ("" for a JSON null or an empty cell).

    .csv, .jsonl/.json (one object per line) and .parquet take the column `text_column`; any other file is text
    with one message per line. UTF-8 with or without a byte-order mark; Windows line ends are handled; only "\\n"
    ends a line (a Unicode line separator inside a tweet stays in it).
    """
    path = check_input_path(path)
    suffix = path.suffix.lower()
    if is_text_file(path):
        yield from _text_chunks(path, chunk_rows)
        return
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            parquet, start = pq.ParquetFile(path), 0
            index = ((parquet.schema_arrow.pandas_metadata or {}).get("index_columns") or [None])[0]
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                frame = batch.to_pandas()
                if not isinstance(index, str):  # pandas' range index (start, step); a stored column is restored
                    first, step = (index["start"], index["step"]) if isinstance(index, dict) else (0, 1)
                    frame.index = range(first + start * step, first + (start + len(frame)) * step, step)
                start += len(frame)
                yield _table_chunk(frame, text_column, path)
            return
        if suffix == ".csv":
            reader = pd.read_csv(path, encoding="utf-8-sig", keep_default_na=False, dtype={text_column: str},
                                 chunksize=chunk_rows)
        else:
            reader = pd.read_json(path, lines=True, encoding="utf-8-sig", dtype={text_column: object},
                                  chunksize=chunk_rows)  # JSON's own types: a number in the column is refused
        with reader:
            for frame in reader:
                yield _table_chunk(frame, text_column, path)
    except UnicodeDecodeError as error:
        raise EvalError(f"{path} is not UTF-8 text (byte {error.start} of a block): convert it, e.g. "
                        f"`iconv -f latin1 -t utf-8 {path.name}`") from error
    except (ValueError, OSError) as error:
        raise EvalError(f"{path} could not be read as {suffix[1:]} ({error.__class__.__name__}: {error})") from error


def _table_chunk(frame: pd.DataFrame, text_column: str, path: Path) -> pd.DataFrame:
    if text_column not in frame.columns:
        raise EvalError(f"{path} has no column {text_column!r} (found: {', '.join(map(str, frame.columns))}): "
                        "name the messages' column with --text-column")
    taken = [c for c in ("row", *PREDICTED_COLUMNS) if c in frame.columns]
    if taken:
        raise EvalError(f"{path} already has the column(s) {', '.join(taken)}, which the output adds: rename them")
    texts = frame[text_column]
    if texts.map(lambda v: isinstance(v, bytes)).any():
        texts = texts.map(lambda v: v.decode("utf-8") if isinstance(v, bytes) else v)
    missing = texts.map(lambda v: v is None or (isinstance(v, float) and v != v))  # a JSON null, an empty cell
    frame = frame.copy()
    frame[text_column] = texts.mask(missing, "").astype(object)
    frame.insert(0, "row", frame.index)
    return frame.reset_index(drop=True)


def _text_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    lines, number, offset = [], 0, 0
    with path.open("rb") as stream:
        for raw in stream:
            try:
                line = decoder.decode(raw)
            except UnicodeDecodeError as error:
                raise EvalError(f"{path} is not UTF-8 text (byte {offset + error.start}): convert it, e.g. "
                                f"`iconv -f latin1 -t utf-8 {path.name}`") from error
            offset += len(raw)
            lines.append(line.removesuffix("\n").removesuffix("\r"))
            if len(lines) == chunk_rows:
                yield pd.DataFrame({"row": range(number + 1, number + len(lines) + 1), "text": lines})
                number, lines = number + len(lines), []
    if lines:
        yield pd.DataFrame({"row": range(number + 1, number + len(lines) + 1), "text": lines})


def read_messages(path: str | Path, text_column: str = "text") -> pd.DataFrame:
    """The whole file in memory (`read_chunks` joined): `row`, then the input's columns."""
    return pd.concat(list(read_chunks(path, text_column)), ignore_index=True)


def text_column_of(path: Path, text_column: str) -> str:
    return "text" if is_text_file(path) else text_column


def scan(path: str | Path, text_column: str = "text", allow_empty: bool = False,
         chunk_rows: int = CHUNK_ROWS) -> int:
    """Read the whole file once, without a model, and refuse what would fail later (not UTF-8, a missing column, a
    cell that is not text, empty messages without `allow_empty`), naming the rows; returns the row count."""
    path = check_input_path(path)
    column = text_column_of(path, text_column)
    rows, blank = 0, []
    for chunk in read_chunks(path, text_column, chunk_rows):
        check_texts(chunk[column].tolist(), "report", chunk["row"].tolist())
        blank += chunk.loc[~chunk[column].map(str.strip).astype(bool), "row"].tolist()
        rows += len(chunk)
    if not rows:
        raise EvalError(f"no messages: {path} is empty")
    if blank and not allow_empty:
        refuse_blank(blank)
    return rows


# ---------------------------------------------------------------- the model, loaded once

def processes():
    """accelerate's view of the processes this one works with (one, unless started by `accelerate launch`); on a CPU
    it is the gloo group that `--multi_gpu` starts there, as training uses."""
    from accelerate import PartialState

    from .config import device

    return PartialState(cpu=device() == "cpu")


def prediction_settings(adapter: str | Path, base: str | None = None, max_length: int | None = 256,
                        batch_size: int = 32) -> dict:
    """What a label depends on besides the input, read without loading a model: recorded beside an unfinished
    output and compared when it resumes."""
    from .models import adapter_base_model
    from .runs import resolve_adapter

    adapter = resolve_adapter(adapter)
    return {"adapter": str(adapter.resolve()), "adapter_sha256": file_sha256(adapter / "adapter_model.safetensors"),
            "base": base or adapter_base_model(adapter), "method": "score", "max_length": max_length,
            "batch_size": batch_size}


class Classifier:
    """A fine-tuned adapter loaded once (merged for inference by default), labelling messages by label scoring.

    `Classifier("smollm2-135m-cpu")(["great day", "awful"])` returns a DataFrame with the CLI's columns;
    `.file("tweets.csv")` labels a file, `.file("tweets.csv", output="labels.csv")` streams it to disk, resumably.
    """

    def __init__(self, adapter: str | Path = "smollm2-135m-cpu", base: str | None = None, merged: bool = True,
                 batch_size: int = 32, max_length: int | None = 256):
        from .models import load_adapter
        from .runs import resolve_adapter

        processes()  # under `accelerate launch`, join the other processes before loading
        self.adapter = resolve_adapter(adapter)
        self.batch_size, self.max_length = batch_size, max_length
        self.settings = prediction_settings(self.adapter, base, max_length, batch_size)
        self.model, self.tokenizer = load_adapter(self.adapter, merged=merged, base=base)

    def __call__(self, messages, text_column: str = "text", allow_empty: bool = False) -> pd.DataFrame:
        """Label a message, a list of them, or a DataFrame's `text_column` (its other columns are kept)."""
        if isinstance(messages, str):
            messages = [messages]
        elif isinstance(messages, Path) or not hasattr(messages, "__iter__"):
            raise EvalError(f"messages must be a string, a list of strings or a DataFrame (got "
                            f"{type(messages).__name__}); label a file with .file(path)")
        if isinstance(messages, pd.DataFrame):
            if text_column not in messages.columns:
                raise EvalError(f"the DataFrame has no column {text_column!r} (found: "
                                f"{', '.join(map(str, messages.columns))}): pass text_column=")
            frame = messages.copy()
            frame.insert(0, "row", frame.index)
            frame = frame.reset_index(drop=True)
        else:
            messages = list(messages)
            frame = pd.DataFrame({"row": range(len(messages)), "text": pd.Series(messages, dtype=object)})
            text_column = "text"
        return self.label_rows(frame, text_column, allow_empty)

    def label_rows(self, frame: pd.DataFrame, text_column: str, allow_empty: bool = False, bar=None) -> pd.DataFrame:
        """`frame` (with `row`) and the predicted columns; an empty frame comes back with them, empty. `bar`: a tqdm
        bar to advance per batch (a file shows one bar over all its chunks)."""
        if frame.empty:
            return frame.assign(**{c: pd.Series(dtype=object if c == "predicted" else float)
                                   for c in PREDICTED_COLUMNS})
        table = predict(self.model, self.tokenizer, frame[text_column].tolist(), "score", self.batch_size,
                        progress=bar is not None, bar=bar, empty="report" if allow_empty else "refuse",
                        max_length=self.max_length, rows=frame["row"].tolist())
        out = frame.copy()
        for column in PREDICTED_COLUMNS:
            out[column] = table[column].to_numpy() if column in table else float("nan")
        return out

    def file(self, path: str | Path, output: str | Path | None = None, text_column: str = "text",
             allow_empty: bool = False, overwrite: bool = False, progress: bool = True,
             chunk_rows: int = CHUNK_ROWS) -> pd.DataFrame | Path:
        """Label a file: the predictions as a DataFrame, or, with `output`, written there chunk by chunk (resumed if
        an earlier call was interrupted) and the output's path returned."""
        job = plan_file(path, output, text_column, allow_empty, overwrite, self.settings, chunk_rows)
        chunks = run_file(job, self, progress)
        if output is None:
            return pd.concat(list(chunks), ignore_index=True)
        for _ in chunks:
            pass
        return job.output

    def iter_file(self, path: str | Path, output: str | Path | None = None, text_column: str = "text",
                  allow_empty: bool = False, overwrite: bool = False, progress: bool = True,
                  chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
        """`file`, one chunk of predictions at a time (each already on disk when `output` is given)."""
        return run_file(plan_file(path, output, text_column, allow_empty, overwrite, self.settings, chunk_rows),
                        self, progress)


# ---------------------------------------------------------------- a file, in chunks, resumable

@dataclass
class FileJob:
    """A file to label, checked and counted before any model loads, and where to start (0, or after the chunks an
    interrupted run already wrote)."""

    source: Path
    text_column: str
    allow_empty: bool
    rows: int
    chunk_rows: int
    output: Path | None = None
    record: dict = field(default_factory=dict)  # written beside the output after every chunk
    done_rows: int = 0
    done_bytes: int = 0


def plan_file(path: str | Path, output: str | Path | None = None, text_column: str = "text",
              allow_empty: bool = False, overwrite: bool = False, settings: dict | None = None,
              chunk_rows: int = CHUNK_ROWS) -> FileJob:
    """Check and count the input, and decide where the output starts: everything that can fail without a model fails
    here, in one line. An unfinished output with the same input and settings resumes; anything changed is refused."""
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise EvalError(f"chunk_rows must be a positive number of rows (got {chunk_rows!r})")
    source = check_input_path(path)
    if output is not None:
        output = check_output_path(output)
    rows = scan(source, text_column, allow_empty, chunk_rows)
    column = text_column_of(source, text_column)
    job = FileJob(source, column, allow_empty, rows, chunk_rows, output)
    if output is None:
        return job
    job.record = {"input": str(source.resolve()), "input_bytes": source.stat().st_size,
                  "input_sha256": file_sha256(source), "text_column": column, "allow_empty": allow_empty,
                  **(settings or {})}
    sidecar = progress_record_path(output)
    if overwrite or not (output.exists() or sidecar.exists()):
        return job
    if not sidecar.is_file():
        raise EvalError(f"{output} already exists and is not an unfinished prediction (no {sidecar.name}): pass "
                        "--overwrite (overwrite=True) to replace it, or another --output")
    recorded = json.loads(sidecar.read_text())
    changed = [name for name in job.record if recorded.get(name) != job.record[name]]
    if changed:
        what = "; ".join(f"{name}: was {recorded.get(name)!r}, now {job.record[name]!r}" for name in changed
                         if not name.endswith("sha256")) or ""
        names = ", ".join(changed)
        raise EvalError(f"cannot resume {output}: {names} changed since it was started"
                        f"{f' ({what})' if what else ''}; rerun with what it was started with, or pass --overwrite "
                        "(overwrite=True) to start again")
    size = output.stat().st_size if output.exists() else 0
    if size < recorded["done_bytes"]:
        raise EvalError(f"cannot resume {output}: it holds {size} bytes, fewer than the {recorded['done_bytes']} "
                        f"its {sidecar.name} records; pass --overwrite to start again")
    job.done_rows, job.done_bytes = recorded["done_rows"], recorded["done_bytes"]
    return job


def run_file(job: FileJob, classifier: Classifier, progress: bool = True) -> Iterator[pd.DataFrame]:
    """Label the job's rows chunk by chunk, yielding each chunk's predictions after it is written (with an output).

    Under `accelerate launch` every process reads the file, scores its share of each chunk
    (`PartialState.split_between_processes`), and the main process writes the chunk in input order.
    """
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    state = processes()
    writing = job.output is not None and state.is_main_process
    if state.num_processes > 1 and state.is_main_process:
        log.info("%d processes (%s), each scoring its share of every chunk of %d rows", state.num_processes,
                 state.backend, job.chunk_rows)
    if writing:
        _start_output(job)
    bar = tqdm(total=job.rows, initial=job.done_rows, desc="predict", unit="row", file=sys.stderr, mininterval=2,
               smoothing=0.1, disable=not (progress and state.is_main_process), dynamic_ncols=True)
    seen = 0
    try:
        for chunk in read_chunks(job.source, job.text_column, job.chunk_rows):
            seen += len(chunk)
            if seen <= job.done_rows:
                continue
            chunk = chunk.iloc[max(0, job.done_rows - (seen - len(chunk))):]
            if state.num_processes > 1:
                with state.split_between_processes(list(range(len(chunk)))) as mine:
                    part = classifier.label_rows(chunk.iloc[mine], job.text_column, job.allow_empty,
                                                 bar if state.is_main_process else None)
                labelled = pd.concat(gather_object([part]), ignore_index=True)
                if state.is_main_process:
                    bar.update(len(chunk) - len(part))
            else:
                labelled = classifier.label_rows(chunk, job.text_column, job.allow_empty, bar)
            if writing:
                _append(job, labelled, seen)
            yield labelled
    finally:
        bar.close()
    if writing:
        progress_record_path(job.output).unlink(missing_ok=True)
    state.wait_for_everyone()


def _start_output(job: FileJob) -> None:
    if job.done_rows:
        with job.output.open("r+b") as stream:  # drop a chunk that was being written when the run was stopped
            stream.truncate(job.done_bytes)
        log.info("resuming %s: %d of %d rows already labelled there; continuing after input row %s", job.output,
                    job.done_rows, job.rows, _row_label(job))
        return
    job.output.parent.mkdir(parents=True, exist_ok=True)
    job.output.write_bytes(b"")
    write_json(progress_record_path(job.output), {**job.record, "done_rows": 0, "done_bytes": 0})


def _row_label(job: FileJob) -> str:
    offset = 1 if is_text_file(job.source) else 0  # the `row` of the last labelled message
    return str(job.done_rows - 1 + offset)


def _append(job: FileJob, table: pd.DataFrame, done_rows: int) -> None:
    """One chunk at the end of the output, on disk before the record says so."""
    if job.output.suffix.lower() == ".csv":
        text = table.to_csv(index=False, header=job.done_bytes == 0)
    else:
        text = table.to_json(orient="records", lines=True, force_ascii=False)
        text = text if text.endswith("\n") else text + "\n"
    data = text.encode("utf-8")
    with job.output.open("ab") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    job.done_rows, job.done_bytes = done_rows, job.done_bytes + len(data)
    write_json(progress_record_path(job.output), {**job.record, "done_rows": job.done_rows,
                                                  "done_bytes": job.done_bytes})


def write_predictions(table: pd.DataFrame, path: str | Path) -> Path:
    """Predictions as .csv or .jsonl (by the file's suffix), written atomically."""
    from .files import atomic_path

    path = check_output_path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".csv":
            table.to_csv(tmp, index=False)
        else:
            table.to_json(tmp, orient="records", lines=True, force_ascii=False)
    return path


__all__ = ["CHUNK_ROWS", "Classifier", "EMPTY", "FileJob", "plan_file", "read_chunks", "read_messages", "run_file",
           "scan"]
