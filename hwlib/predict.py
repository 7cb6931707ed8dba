"""Labels for your own messages at any size: one Python entry point (`Classifier`), files read and written in chunks
(memory bounded by a chunk, not the file), a progress bar, output that resumes where an interrupted run stopped, and
the work split between processes under `accelerate launch`."""

from __future__ import annotations

import codecs
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .data import LABELS
from .embedded import file_sha256
from .evaluate import EMPTY, EvalError, check_texts, predict, refuse_blank
from .files import write_json

log = logging.getLogger(__name__)

CHUNK_ROWS = 1024  # rows written at a time: about a minute of a 2-core CPU, about all that a kill can lose
# Rows sorted by length and batched together, counted from the input's first row. Chunks, resumes and processes
# never change which messages share a batch, so in half precision too a message gets the same probabilities
# whatever the chunk size, the interruption point or the number of processes.
SCORING_ROWS = 256
ROW_RULE = ("row: the message's position in the input, counting from 0 (the first argument, line, table row or "
            "list item is row 0)")
TABLE_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")  # read with the column --text-column
TEXT_SUFFIXES = ("", ".txt", ".text")  # one message per line
OUTPUT_SUFFIXES = (".csv", ".jsonl")
PREDICTED_COLUMNS = ("predicted", *(f"p_{label}" for label in LABELS))  # what prediction adds to each input row
PROGRESS_SUFFIX = ".progress.json"  # beside an output being written: what it was started with and how far it got
LOCK_SUFFIX = ".lock"  # beside an output being written: held by the one process writing it


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


def check_output_path(path: str | Path, source: str | Path | None = None) -> Path:
    """A file name predictions can go to; never the input `source` (the same path, a link to it, the same inode)."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise EvalError(f"--output {path}: use a {' or '.join(OUTPUT_SUFFIXES)} file name")
    if path.is_dir():
        raise EvalError(f"--output {path} is a directory: give a file name")
    if source is not None and (path.resolve() == Path(source).resolve() or
                               (path.exists() and os.path.samefile(path, source))):
        raise EvalError(f"--output {path} is the input file {source}: writing there would destroy the messages; "
                        "give another --output")
    return path


def is_text_file(path: Path) -> bool:
    return path.suffix.lower() in TEXT_SUFFIXES


def read_chunks(path: str | Path, text_column: str = "text", chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """The file's rows, `chunk_rows` at a time: `row` (ROW_RULE) and the input's columns (text files: `text`), the
    messages as strings ("" for a JSON null or an empty cell).

    .csv, .jsonl/.json (one object per line) and .parquet take the column `text_column`; any other file is text
    with one message per line. UTF-8 with or without a byte-order mark; Windows line ends are handled; only "\\n"
    ends a line (a Unicode line separator inside a tweet stays in it).
    """
    path = check_input_path(path)
    text_column = text_column_of(path, text_column)
    if is_text_file(path):
        yield from _text_chunks(path, chunk_rows)
        return
    start = 0
    for frame in _table_frames(path, text_column, chunk_rows):
        yield _table_chunk(frame, text_column, path, start)
        start += len(frame)


def _table_frames(path: Path, text_column: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """A table file's frames as pandas or pyarrow reads them, with one-line errors for what they cannot read."""
    suffix = path.suffix.lower()
    if suffix == ".json" and _starts_with(path, b"["):
        raise EvalError(f"{path} holds one JSON array; hwlib reads JSON Lines (one object per line): convert it, e.g. "
                        f"`jq -c '.[]' {path.name} > {path.stem}.jsonl`")
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
            return
        if suffix == ".csv":
            reader = pd.read_csv(path, encoding="utf-8-sig", keep_default_na=False, dtype={text_column: str},
                                 chunksize=chunk_rows)
        else:
            reader = pd.read_json(path, lines=True, encoding="utf-8-sig", dtype={text_column: object},
                                  chunksize=chunk_rows)  # JSON's own types: a number in the column is refused
        with reader:
            yield from reader
    except UnicodeDecodeError as error:
        raise EvalError(f"{path} is not UTF-8 text (byte {error.start} of a block): convert it, e.g. "
                        f"`iconv -f latin1 -t utf-8 {path.name}`") from error
    except (ValueError, OSError) as error:
        raise EvalError(f"{path} could not be read as {suffix[1:]}: {_reader_error(error, suffix)}") from error


def _starts_with(path: Path, marker: bytes) -> bool:
    with path.open("rb") as stream:
        return stream.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(marker)


def _reader_error(error: Exception, suffix: str) -> str:
    """pandas' message in one line, its CSV line numbers (1 = the header) turned into `row`s."""
    import re

    text = " ".join(str(error).split())
    if suffix == ".csv":
        text = re.sub(r"\bline (\d+)", lambda m: f"row {int(m.group(1)) - 2} (line {m.group(1)} of the file)", text)
    return f"{error.__class__.__name__}: {text}"


def _table_chunk(frame: pd.DataFrame, text_column: str, path: Path, start: int) -> pd.DataFrame:
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
    stored_index = frame.index.name is not None or not isinstance(frame.index, pd.RangeIndex)
    frame = frame.reset_index(drop=not stored_index)  # a parquet file's stored index stays, as a column
    frame[text_column] = texts.mask(missing, "").astype(object).to_numpy()
    frame.insert(0, "row", range(start, start + len(frame)))
    return frame


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
                yield pd.DataFrame({"row": range(number, number + len(lines)), "text": lines})
                number, lines = number + len(lines), []
    if lines:
        yield pd.DataFrame({"row": range(number, number + len(lines)), "text": lines})


def read_messages(path: str | Path, text_column: str = "text") -> pd.DataFrame:
    """The whole file in memory (`read_chunks` joined): `row`, then the input's columns."""
    return pd.concat(list(read_chunks(path, text_column)), ignore_index=True)


def text_column_of(path: Path, text_column: str) -> str:
    """The messages' column: `text_column` in a table file; `text` in a text file, which has no columns to name."""
    if not is_text_file(path):
        return text_column
    if text_column != "text":
        raise EvalError(f"{path} is a text file (one message per line), so it has no column {text_column!r}: leave "
                        "--text-column out, or give a .csv, .jsonl or .parquet file")
    return "text"


def scan(path: str | Path, text_column: str = "text", allow_empty: bool = False,
         chunk_rows: int = CHUNK_ROWS) -> int:
    """Read the whole file once, without a model, and refuse what would fail later (not UTF-8, a missing column, a
    cell that is not text, empty messages without `allow_empty`), naming the rows; returns the row count."""
    path = check_input_path(path)
    column = text_column_of(path, text_column)
    rows, blank, languages = 0, [], Counter()
    for chunk in read_chunks(path, text_column, chunk_rows):
        check_texts(chunk[column].tolist(), "report", chunk["row"].tolist())
        blank += chunk.loc[~chunk[column].map(str.strip).astype(bool), "row"].tolist()
        languages += count_languages(language_sample(chunk[column].tolist(), rows))
        rows += len(chunk)
    if not rows:
        raise EvalError(f"no messages: {path} is empty")
    if blank and not allow_empty:
        refuse_blank(blank)
    warn_if_not_english(languages)
    return rows


# On TweetEval's English test tweets py3langid calls 6.1% another language (mostly Nigerian Pidgin, `pcm`), so a
# share four times that is a sign of messages the adapter was not trained for.
NOT_ENGLISH_SHARE = 0.25


LANGUAGE_SAMPLE = (1000, 20)  # the language check reads the first 1,000 messages of a file, then every 20th


def language_sample(texts: list[str], start: int) -> list[str]:
    """The messages of a chunk (its first at position `start`) that the language check reads: all of the first
    LANGUAGE_SAMPLE[0], then one in LANGUAGE_SAMPLE[1], so a big file costs seconds, not minutes."""
    first, every = LANGUAGE_SAMPLE
    return [text for position, text in enumerate(texts, start) if position < first or position % every == 0]


def count_languages(texts: list[str]) -> Counter:
    """How many messages py3langid assigns to each language (empty messages are not counted)."""
    import py3langid

    return Counter(py3langid.classify(text)[0] for text in texts if text.strip())


def warn_if_not_english(languages: Counter) -> bool:
    """One warning when more than NOT_ENGLISH_SHARE of the messages look non-English: the adapter learned English
    tweets only (docs/predict.md measures what it does with others). True if it warned."""
    total = sum(languages.values())
    others = total - languages.get("en", 0)
    if not total or others / total <= NOT_ENGLISH_SHARE:
        return False
    common = ", ".join(f"{name} {count}" for name, count in
                       Counter({k: v for k, v in languages.items() if k != "en"}).most_common(4))
    log.warning("%d of %d messages (%.0f%%) look non-English to py3langid (%s): the adapter learned English tweets "
                "only and labels most other-language messages neutral, whatever they say (docs/predict.md)", others,
                total, 100 * others / total, common)
    return True


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
        """Label a message, a list of them, a Series, or a DataFrame's `text_column` (its other columns are kept).

        A Series or DataFrame comes back with its own index; `row` is ROW_RULE for every kind of input."""
        if isinstance(messages, str):
            messages = [messages]
        elif isinstance(messages, (bytes, bytearray)):
            raise EvalError("messages are bytes: decode them to text first, e.g. data.decode('utf-8')")
        elif isinstance(messages, Path) or not hasattr(messages, "__iter__"):
            raise EvalError(f"messages must be a string, a list of strings, a Series or a DataFrame (got "
                            f"{type(messages).__name__}); label a file with .file(path)")
        if isinstance(messages, pd.Series):
            messages = messages.to_frame(name=messages.name if messages.name is not None else text_column)
            text_column = messages.columns[0]
        index = None
        if isinstance(messages, pd.DataFrame):
            if text_column not in messages.columns:
                raise EvalError(f"the DataFrame has no column {text_column!r} (found: "
                                f"{', '.join(map(str, messages.columns))}): pass text_column=")
            index, frame = messages.index, messages.reset_index(drop=True)
            frame.insert(0, "row", range(len(frame)))
        else:
            messages = list(messages)
            frame = pd.DataFrame({"row": range(len(messages)), "text": pd.Series(messages, dtype=object)})
            text_column = "text"
        texts = check_texts(frame[text_column].tolist(), "report")
        warn_if_not_english(count_languages(texts))
        labelled = self.label_rows(frame, text_column, allow_empty)
        return labelled if index is None else labelled.set_index(index)

    def label_rows(self, frame: pd.DataFrame, text_column: str, allow_empty: bool = False, bar=None,
                   share: tuple[int, int] = (0, 1)) -> pd.DataFrame:
        """`frame` (with `row`) and the predicted columns, scored SCORING_ROWS at a time from its first row; an empty
        frame comes back with them, empty. `bar`: a tqdm bar to advance per batch (a file shows one bar over all its
        chunks); `share`: one process's share of the batches (`hwlib.evaluate.score`), other rows unlabelled."""
        if frame.empty:
            return frame.assign(**{c: pd.Series(dtype=object if c == "predicted" else float)
                                   for c in PREDICTED_COLUMNS})
        parts = []
        for start in range(0, len(frame), SCORING_ROWS):
            block = frame.iloc[start:start + SCORING_ROWS]
            table = predict(self.model, self.tokenizer, block[text_column].tolist(), "score", self.batch_size,
                            progress=bar is not None, bar=bar, empty="report" if allow_empty else "refuse",
                            max_length=self.max_length, rows=block["row"].tolist(), share=share)
            out = block.copy()
            for column in PREDICTED_COLUMNS:
                out[column] = table[column].to_numpy() if column in table else float("nan")
            parts.append(out)
        return pd.concat(parts)

    def file(self, path: str | Path, output: str | Path | None = None, text_column: str = "text",
             allow_empty: bool = False, overwrite: bool = False, progress: bool = True,
             chunk_rows: int = CHUNK_ROWS) -> pd.DataFrame | Path:
        """Label a file: the predictions as a DataFrame, or, with `output`, written there chunk by chunk (resumed if
        an earlier call was interrupted) and the output's path returned. `chunk_rows` changes how much is written at
        a time, never a label (SCORING_ROWS)."""
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
    lock: object = None  # the output's lock (filelock.FileLock), held from planning to the end
    writer: dict = field(default_factory=dict)  # the process writing the output: pid, host, start time

    def release(self) -> None:
        """Give the output's lock back (and remove its file once the output is finished)."""
        if self.lock is not None and self.lock.is_locked:
            if self.output is not None and not progress_record_path(self.output).exists():
                Path(self.lock.lock_file).unlink(missing_ok=True)
            self.lock.release()


def plan_file(path: str | Path, output: str | Path | None = None, text_column: str = "text",
              allow_empty: bool = False, overwrite: bool = False, settings: dict | None = None,
              chunk_rows: int = CHUNK_ROWS) -> FileJob:
    """Check and count the input, take the output's lock, and decide where the output starts: everything that can
    fail without a model fails here, in one line, before anything is written. An unfinished output with the same
    input and settings resumes; anything changed is refused."""
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise EvalError(f"chunk_rows must be a positive number of rows (got {chunk_rows!r})")
    source = check_input_path(path)
    if output is not None:
        output = check_output_path(output, source)
    rows = scan(source, text_column, allow_empty, chunk_rows)
    column = text_column_of(source, text_column)
    job = FileJob(source, column, allow_empty, rows, chunk_rows, output)
    if output is None:
        return job
    job.record = {"input": str(source.resolve()), "input_bytes": source.stat().st_size,
                  "input_sha256": file_sha256(source), "text_column": column, "allow_empty": allow_empty,
                  **(settings or {})}
    job.lock = _take_lock(output)
    try:
        _resume_point(job, overwrite)
    except BaseException:
        job.release()
        raise
    return job


def _take_lock(output: Path):
    """The output's lock, held until the job ends; a second writer is refused in one line naming the first. A killed
    process's lock is free again (the kernel drops it with the process). Under `accelerate launch` the main process
    holds it."""
    from filelock import FileLock, Timeout

    if not processes().is_main_process:
        return None
    output.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(output.with_name(output.name + LOCK_SUFFIX))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        who = (_read_json_or_none(progress_record_path(output)) or {}).get("writer")
        named = f" (process {who['pid']} on {who['host']}, started {who['started']})" if who else ""
        raise EvalError(f"{output} is being written by another predict{named}: wait for it to finish, stop it, or "
                        "give another --output") from None
    return lock


def _read_json_or_none(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _resume_point(job: FileJob, overwrite: bool) -> None:
    """Where an unfinished output with the same input and settings resumes; anything changed is refused."""
    output, sidecar = job.output, progress_record_path(job.output)
    if overwrite or not (output.exists() or sidecar.exists()):
        return
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


def run_file(job: FileJob, classifier: Classifier, progress: bool = True) -> Iterator[pd.DataFrame]:
    """Label the job's rows and yield them `chunk_rows` at a time, each chunk on disk before it is yielded (with an
    output). Scoring goes SCORING_ROWS at a time from the file's first row; a resume rescores the unfinished part of
    its block, so its rows match an uninterrupted run's.

    Under `accelerate launch` every process reads the file and scores its share of each block's batches; the main
    process writes the chunks in input order.
    """
    from tqdm.auto import tqdm

    state = processes()
    writing = job.output is not None and state.is_main_process
    if state.num_processes > 1 and state.is_main_process:
        log.info("%d processes (%s), each scoring its share of the batches of every %d rows", state.num_processes,
                 state.backend, SCORING_ROWS)
    first_block = job.done_rows // SCORING_ROWS
    bar = tqdm(total=job.rows, initial=first_block * SCORING_ROWS, desc="predict", unit="row", file=sys.stderr,
               mininterval=2, smoothing=0.1, disable=not (progress and state.is_main_process), dynamic_ncols=True)
    try:
        if writing:
            _start_output(job)
        position, pending = job.done_rows, None  # the next row to hand out, and labelled rows not handed out yet
        for number, block in enumerate(read_chunks(job.source, job.text_column, SCORING_ROWS)):
            if number < first_block:
                continue
            labelled = _label_block(classifier, block, job, state, bar)
            labelled = labelled.iloc[max(0, position - number * SCORING_ROWS):]
            pending = labelled if pending is None else pd.concat([pending, labelled])
            while len(pending) >= (end := (position // job.chunk_rows + 1) * job.chunk_rows) - position:
                chunk, pending = pending.iloc[: end - position], pending.iloc[end - position:]
                position = end
                yield _hand_out(job, chunk.reset_index(drop=True), position, writing)
        if pending is not None and len(pending):
            yield _hand_out(job, pending.reset_index(drop=True), position + len(pending), writing)
        if writing:
            progress_record_path(job.output).unlink(missing_ok=True)
    finally:
        bar.close()
        job.release()
    state.wait_for_everyone()


def _hand_out(job: FileJob, chunk: pd.DataFrame, done_rows: int, writing: bool) -> pd.DataFrame:
    if writing:
        _append(job, chunk, done_rows)
    return chunk


def _label_block(classifier: Classifier, block: pd.DataFrame, job: FileJob, state, bar) -> pd.DataFrame:
    """One block of SCORING_ROWS labelled; under several processes each scores every n-th batch and the shares are
    put together."""
    if state.num_processes == 1:
        return classifier.label_rows(block, job.text_column, job.allow_empty, bar)
    from accelerate.utils import gather_object

    share = (state.process_index, state.num_processes)
    mine = classifier.label_rows(block, job.text_column, job.allow_empty, bar if state.is_main_process else None,
                                 share)
    shares = gather_object([mine])
    labelled = shares[0].copy()
    for other in shares[1:]:
        scored = other["predicted"].notna() & labelled["predicted"].isna()
        labelled.loc[scored, list(PREDICTED_COLUMNS)] = other.loc[scored, list(PREDICTED_COLUMNS)]
        if state.is_main_process:
            bar.update(int(scored.sum()))
    return labelled


def _start_output(job: FileJob) -> None:
    if job.done_rows:
        with job.output.open("r+b") as stream:  # drop a chunk that was being written when the run was stopped
            stream.truncate(job.done_bytes)
        log.info("resuming %s: %d of %d rows already labelled there; continuing from row %d", job.output,
                 job.done_rows, job.rows, job.done_rows)
    else:
        job.output.parent.mkdir(parents=True, exist_ok=True)
        job.output.write_bytes(b"")
    _write_record(job)


def _write_record(job: FileJob) -> None:
    """The progress record beside the output: the job's settings, how far it got, and which process writes it."""
    import socket
    import time

    if not job.writer:
        job.writer = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(progress_record_path(job.output), {**job.record, "done_rows": job.done_rows,
                                                  "done_bytes": job.done_bytes, "writer": job.writer})


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
    _write_record(job)


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
