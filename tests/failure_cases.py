"""The table of bad inputs and faults, and what hwlib does with each: `tests/test_failures.py` runs every row,
`tools/failure_table.py` prints it for docs/reliability.md, so it is written once."""

CASES: list[dict[str, str]] = [
    # id, family, the case as a user meets it, the outcome the test asserts
    dict(id="empty-message", family="input", case='`predict ""` or `predict "   "`',
         outcome="refused: one line naming the rows; `--allow-empty` reports them as `empty`, never as a label"),
    dict(id="injected-markers", family="input", case="a message containing `<|im_end|>` and a fake assistant turn",
         outcome="the markers stay text: no special token ids in the message; scored as the same text with them escaped"),
    dict(id="long-message", family="input", case="a message far beyond the training length (10,000 characters)",
         outcome="truncated to `--max-length` tokens (256, the training length) with a warning that counts them"),
    dict(id="missing-file", family="input", case="`predict --file missing.txt`",
         outcome="one line: the file is not found"),
    dict(id="not-utf8", family="input", case="`--file` in Latin-1, or a data folder's text file that is not UTF-8",
         outcome="one line: not UTF-8, with the byte offset and an `iconv` command"),
    dict(id="bom-crlf-separators", family="input", case="UTF-8 BOM, Windows line ends, U+2028 inside a tweet",
         outcome="read correctly: no BOM in the first message, no stray `\\r`, the tweet stays one line"),
    dict(id="csv-jsonl-parquet", family="input", case="`predict --file x.csv` (or .jsonl, .parquet) with a named column",
         outcome="predictions carry `row` (the position from 0) and every input column (the messages' under its own "
                 "name, a stored index as a column); `--output` writes .csv or .jsonl; a missing column is named"),
    dict(id="bad-row-deep", family="input",
         case="a number, or an empty message, at row 2,712 of a 3,000-row JSONL file",
         outcome="one line naming the row, before the model loads (the whole file is checked first); nothing is "
                 "written"),
    dict(id="bytes-column", family="input", case="a parquet text column holding bytes",
         outcome="decoded as UTF-8, never written as `b'...'`"),
    dict(id="predict-arguments", family="input",
         case="`predict` with texts and `--file`, a directory or an `.xlsx` as `--file`, `--output x.xlsx`, an adapter "
              "path that does not exist, `--jsn`",
         outcome="each refused with one line before the model loads (a typo: `predict`'s own usage)"),
    dict(id="shipped-by-name", family="input", case="`predict --adapter smollm2-135m-cpu` from a folder outside the "
                                                       "repository",
         outcome="the shipped adapter is found by name"),
    dict(id="numbering-null-newline", family="input",
         case="an empty line in a text file, a JSONL `null`, a message with a newline in the plain output",
         outcome="errors name the output's `row` (line N is row N-1: one rule for every input); a `null` is an "
                 "empty message; the newline is printed as `\\n`"),
    dict(id="output-is-input", family="input",
         case="`predict --file X --output X --overwrite` (.csv or .jsonl), or `--output` a link to X",
         outcome="refused in one line before anything is opened for writing; X is byte-identical afterwards"),
    dict(id="not-an-adapter", family="input", case="`predict --adapter` a folder that is not an adapter",
         outcome="one line naming the missing adapter file and the shipped adapters' names"),
    dict(id="table-format-errors", family="input",
         case="a .csv row with an extra field, a .json file holding one JSON array, `--text-column` on a text file",
         outcome="one line each: the bad row by its `row` (and the file's line), a `jq` command to convert the array "
                 "to JSON Lines, a text file has no columns"),
    dict(id="python-inputs", family="input", case="`Classifier(...)` given bytes, a named pandas Series",
         outcome="bytes refused as bytes (decode them first); a Series comes back with its name and index"),
    dict(id="not-english", family="input", case="`predict` on messages that are mostly not English",
         outcome="one warning naming the share and the languages (py3langid); none for English tweets"),
    dict(id="broken-pipe", family="input", case="`predict --json ... | head -1`",
         outcome="stops quietly once the reader has gone: no traceback"),
    dict(id="batch-size", family="settings", case="`evaluate --batch-size -1` (or 0)",
         outcome="one line: `batch_size=-1 cannot work: it must be a positive number of messages`"),
    dict(id="bool-flag", family="settings", case="`train --group-by-length maybe`",
         outcome="refused by the argument parser: not a boolean (a lenient parser would read it as False)"),
    dict(id="none-overrides", family="settings", case="`train_config(quantize=None)`, `train_config(train_size=None)`",
         outcome="honoured: plain LoRA, every training row"),
    dict(id="nan-scores", family="settings", case="a model whose scores come out NaN",
         outcome="one line naming the rows and suggesting float32, instead of labels with probabilities 1/3"),
    dict(id="overwrite-bad-data", family="runs", case="`train --overwrite` with a wrong `--data-dir`",
         outcome="one line about the data folder; the previous run is untouched (training happens in a staging folder)"),
    dict(id="non-run-folder", family="runs", case="`train --output` into a folder of other files",
         outcome="refused before anything is written"),
    dict(id="resume-other-settings", family="runs", case="`train --resume` with another learning rate",
         outcome="refused with the list of differences"),
    dict(id="short-run", family="runs", case="fewer steps than `logging_steps`",
         outcome="finishes; the record holds the final training loss"),
    dict(id="sigkill-mid-step", family="runs", case="SIGKILL during a training step, then `--resume`",
         outcome="the final adapter is bit-identical to an uninterrupted run's"),
    dict(id="sigkill-mid-save", family="runs", case="SIGKILL while a checkpoint is being written, then `--resume`",
         outcome="the incomplete checkpoint is skipped; bit-identical to an uninterrupted run"),
    dict(id="predict-sigkill-resume", family="runs",
         case="SIGKILL during `predict --file F --output O`, then the same command",
         outcome="continues after the last complete chunk, saying from which row, even with another `--chunk-rows`; "
                 "the killed run's lock does not block it; the file is byte-identical to an uninterrupted run's"),
    dict(id="predict-changed-resume", family="runs",
         case="after that kill, the same command with another `--max-length`, or on an edited input",
         outcome="one line naming what changed, nothing lost; `--overwrite` starts again"),
    dict(id="predict-existing-output", family="runs",
         case="`predict --output O` where O exists and is not an unfinished prediction",
         outcome="refused with one line, O untouched; `--overwrite` replaces it"),
    dict(id="predict-interrupted", family="runs", case="Ctrl-C during `predict --file F --output O`",
         outcome="one line saying the same command continues the unfinished output (predict has no `--resume`)"),
    dict(id="second-writer", family="runs",
         case="a second `predict --output O` while a first is still writing O",
         outcome="refused in one line naming the first (process, host, start); the first finishes with exactly "
                 "the input's rows"),
    dict(id="chunks-in-half-precision", family="runs",
         case="the same file with `--chunk-rows 100` and `--chunk-rows 1024`, in bf16 (`HWLIB_COMPUTE_DTYPE`) and "
              "fp32",
         outcome="byte-identical outputs: batches are fixed by the rows' positions in the file, the prompt's keys "
                 "and values computed once"),
    dict(id="failed-write", family="runs", case="a write that fails half-way (`os.replace` raising)",
         outcome="the previous file is intact and no temporary file is left"),
    dict(id="flipped-byte", family="fingerprints", case="one flipped byte in `adapter_model.safetensors`",
         outcome="one line: the file does not match the sha256 in run_config.json"),
    dict(id="other-base", family="fingerprints", case="the adapter on a base of the same shape with other weights",
         outcome="one line: not the base this adapter was trained on"),
    dict(id="no-run-config", family="fingerprints", case="an adapter folder without run_config.json",
         outcome="one line asking for `--base` (never a silent guess at the Hub's model)"),
]


def markdown_table() -> str:
    lines = ["| family | case | outcome |", "|---|---|---|"]
    lines += [f"| {c['family']} | {c['case']} | {c['outcome']} |" for c in CASES]
    return "\n".join(lines)
