"""TweetEval `sentiment` splits: loading (a folder, the bundled copy or the Hub), validation, seeded subsampling."""

from __future__ import annotations

import hashlib
import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict

from .config import PACKAGE_PARENT, HwlibError

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
ID2LABEL: dict[int, str] = dict(enumerate(LABELS))
LABEL2ID: dict[str, int] = {name: i for i, name in ID2LABEL.items()}
SPLITS: tuple[str, ...] = ("train", "validation", "test")
HUB_DATASET = ("cardiffnlp/tweet_eval", "sentiment")
DATA_DIR_ENV = "HWLIB_DATA_DIR"
SAMPLINGS = ("stratified", "balanced")

log = logging.getLogger(__name__)


class DataError(HwlibError, ValueError):
    """Bad or missing data: the message names the file and what to do about it."""


BUNDLED_SHA256: dict[str, str] = {  # data/tweet_eval_sentiment/README.md gives the same, with counts and sources
    "train": "884ed7990ba4058aa78372f5f9590db308c393820545d9c4f2363f5a2ea12fbf",
    "validation": "ba8e7513047d4991bcdcc0a22aaa70777e47b609f1b739da5117baf7893f3e56",
    "test": "f73aea52d43879223019e733b944780f7e9203ee32459ea006f554011379fcdf",
}
HUB_SOURCE = f"hub:{HUB_DATASET[0]}/{HUB_DATASET[1]}"


def bundled_dir() -> Path | None:
    """The copy that ships with the course: `data/tweet_eval_sentiment/` in a clone, `hwlib/bundled_data/` when
    installed from a wheel; None when neither holds the parquet files."""
    for folder in (PACKAGE_PARENT / "data" / "tweet_eval_sentiment", PACKAGE_PARENT / "hwlib" / "bundled_data"):
        if all((folder / f"{split}.parquet").is_file() for split in SPLITS):
            return folder
    return None


def data_dir(path: str | os.PathLike | None = None) -> Path | None:
    """The local folder to read: `path`, else `$HWLIB_DATA_DIR`, else the bundled copy, else None (the Hub)."""
    chosen = path if path is not None else os.environ.get(DATA_DIR_ENV) or None
    return bundled_dir() if chosen is None else Path(chosen).expanduser()


def data_source(path: str | os.PathLike | None = None) -> str:
    """Where `load_split(…, path)` reads from, in words for tables and cards: the Hub, the bundled copy, or a folder."""
    folder = data_dir(path)
    if folder is None:
        return HUB_SOURCE
    if folder == bundled_dir() and path is None and not os.environ.get(DATA_DIR_ENV):
        state = "sha256 verified" if not bundled_mismatches() else "sha256 DIFFERS: " + ", ".join(bundled_mismatches())
        return f"bundled copy ({state})"
    return f"folder {folder}"


@lru_cache(maxsize=1)
def bundled_mismatches() -> tuple[str, ...]:
    """Bundled split files whose sha256 differs from the published one (checked once per process, ~20 ms)."""
    folder = bundled_dir()
    if folder is None:
        return ()
    differ = tuple(split for split in SPLITS
                   if hashlib.sha256((folder / f"{split}.parquet").read_bytes()).hexdigest() != BUNDLED_SHA256[split])
    if differ:
        log.warning("bundled TweetEval files differ from the published sha256 (%s): results may not be comparable; "
                    "restore them with `git checkout data/tweet_eval_sentiment`", ", ".join(differ))
    return differ


def load_splits(path: str | os.PathLike | None = None, splits: tuple[str, ...] = SPLITS) -> DatasetDict:
    """Load the splits as a `DatasetDict` of `text`/`label` columns.

    Order: the folder `path`, else `$HWLIB_DATA_DIR`, else the copy bundled with the course, else the Hub.
    """
    folder = data_dir(path)
    if folder is None:
        return _load_from_hub(splits)
    if not folder.is_dir():
        raise DataError(
            f"data folder {folder} does not exist: pass an existing folder or set {DATA_DIR_ENV} to one "
            "holding {train,validation,test}.parquet or {split}_text.txt + {split}_labels.txt"
        )
    return DatasetDict({split: load_split(split, folder) for split in splits})


def load_split(split: str, path: str | os.PathLike | None = None) -> Dataset:
    """Load one split (`train`, `validation` or `test`), from the same sources as `load_splits`."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    folder = data_dir(path)
    if folder is None:
        return _load_from_hub((split,))[split]
    if folder == bundled_dir():
        bundled_mismatches()
    parquet = folder / f"{split}.parquet"
    texts, labels = folder / f"{split}_text.txt", folder / f"{split}_labels.txt"
    if parquet.is_file():
        frame = _read_parquet(parquet)
        source = parquet
    elif texts.is_file() and labels.is_file():
        frame = _read_text_layout(texts, labels)
        source = texts
    else:
        raise DataError(
            f"split {split!r} not found in {folder}: expected {parquet.name}, or {texts.name} with {labels.name}"
        )
    _validate(frame, source)
    return Dataset.from_pandas(frame[["text", "label"]], preserve_index=False)


def _load_from_hub(splits: tuple[str, ...]) -> DatasetDict:
    from datasets import load_dataset

    try:
        loaded = load_dataset(*HUB_DATASET)
    except Exception as error:  # network, auth, or a missing `datasets` cache: all need the same advice
        raise DataError(
            f"could not load {HUB_DATASET[0]} ({HUB_DATASET[1]}) from the Hugging Face Hub ({error.__class__.__name__}); "
            f"offline, set {DATA_DIR_ENV} to a local copy (a clone of the course ships one in data/tweet_eval_sentiment)"
        ) from error
    out = DatasetDict()
    for split in splits:
        frame = loaded[split].to_pandas()
        _validate(frame, Path(f"hub:{HUB_DATASET[0]}/{split}"))
        out[split] = loaded[split].select_columns(["text", "label"])
    return out


def _read_parquet(file: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(file)
    except Exception as error:
        raise DataError(f"{file} is not a readable parquet file ({error.__class__.__name__}: {error})") from error


def _read_text_layout(texts: Path, labels: Path) -> pd.DataFrame:
    """The cardiffnlp/tweeteval GitHub layout: one tweet per line, one label id per line."""
    text_lines, label_lines = _lines(texts), _lines(labels)
    if len(text_lines) != len(label_lines):
        raise DataError(
            f"{texts} has {len(text_lines)} lines but {labels} has {len(label_lines)}: "
            "they must match line for line"
        )
    try:
        label_ids = [int(line.strip()) for line in label_lines]
    except ValueError as error:
        raise DataError(f"{labels} holds a line that is not an integer label ({error})") from error
    return pd.DataFrame({"text": text_lines, "label": label_ids})


def _lines(file: Path) -> list[str]:
    """A file's lines: UTF-8 with or without a byte-order mark, "\\n" or "\\r\\n" line ends. Only "\\n" ends a line, so a
    Unicode line separator inside a tweet (U+2028, U+0085) stays in that tweet."""
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{file} is not UTF-8 (undecodable byte at offset {error.start}): convert it, e.g. "
                        f"`iconv -f latin1 -t utf-8 {file.name}`") from error
    return split_lines(text)


def split_lines(text: str) -> list[str]:
    """Lines of a text: a leading byte-order mark dropped, "\\r\\n" or "\\n" ends, no empty last line; other Unicode
    line breaks (U+2028, U+0085) stay inside their line, as tweets may hold them."""
    lines = text.removeprefix("\ufeff").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _validate(frame: pd.DataFrame, source: Path) -> None:
    missing = [column for column in ("text", "label") if column not in frame.columns]
    if missing:
        raise DataError(f"{source} has no column {', '.join(missing)} (found: {', '.join(map(str, frame.columns))})")
    labels = pd.to_numeric(frame["label"], errors="coerce")
    bad = frame.index[~labels.isin(range(len(LABELS)))]
    if len(bad):
        raise DataError(
            f"{source}: {len(bad)} labels outside 0..{len(LABELS) - 1} "
            f"(first at row {bad[0]}: {frame['label'].iloc[bad[0]]})"
        )
    frame["label"] = labels.astype("int64")
    frame["text"] = frame["text"].map(_as_text)
    blank = np.flatnonzero(frame["text"].str.strip() == "")
    if len(blank):
        log.warning("%s: %d empty or whitespace-only texts (rows %s); kept", source, len(blank), blank[:10].tolist())


def _as_text(value) -> str:
    """A text cell as a string: bytes are decoded as UTF-8 (not written as "b'...'"), missing values become ""."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(f"a text cell holds bytes that are not UTF-8 ({value[:20]!r}...)") from error
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def blank_rows(dataset: Dataset) -> list[int]:
    """Row indices whose text is empty or whitespace only."""
    return [i for i, text in enumerate(dataset["text"]) if not text.strip()]


def sample_indices(labels: list[int] | np.ndarray, size: int, sampling: str = "stratified", seed: int = 42) -> list[int]:
    """A fixed, seeded selection of `size` row indices, sorted.

    `stratified` keeps each class's share; `balanced` takes (nearly) equal counts per class, which helps
    the minority class and therefore macro-F1.
    """
    labels = np.asarray(labels)
    if sampling not in SAMPLINGS:
        raise DataError(f"unknown sampling {sampling!r}: choose one of {', '.join(SAMPLINGS)}")
    if not 0 < size <= len(labels):
        raise DataError(f"sample size {size} must be between 1 and the split's {len(labels)} rows")
    rng = np.random.default_rng(seed)
    classes = np.arange(len(LABELS))
    if sampling == "stratified":
        shares = np.bincount(labels, minlength=len(classes)) / len(labels)
        counts = _apportion(shares * size, size)
    else:
        counts = np.full(len(classes), size // len(classes))
        counts[: size % len(classes)] += 1
    picked = []
    for label, count in zip(classes, counts):
        pool = np.flatnonzero(labels == label)
        if count > len(pool):
            raise DataError(
                f"{sampling} sample of {size} needs {count} {ID2LABEL[label]} rows but the split has {len(pool)}"
            )
        picked.append(rng.choice(pool, size=count, replace=False))
    return sorted(np.concatenate(picked).tolist())


def _apportion(quotas: np.ndarray, total: int) -> np.ndarray:
    """Round quotas to integers that add up to `total` (largest remainders first)."""
    counts = np.floor(quotas).astype(int)
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def subsample(dataset: Dataset, size: int | None, sampling: str = "stratified", seed: int = 42) -> Dataset:
    """`dataset` reduced to a seeded selection of `size` rows (all rows when `size` is None)."""
    if size is None or size == len(dataset):
        return dataset
    return dataset.select(sample_indices(dataset["label"], size, sampling, seed))


def class_counts(dataset: Dataset) -> dict[str, int]:
    """Rows per class name, in label order."""
    counts = np.bincount(np.asarray(dataset["label"]), minlength=len(LABELS))
    return {ID2LABEL[i]: int(n) for i, n in enumerate(counts)}


def split_summary(splits: DatasetDict) -> pd.DataFrame:
    """Rows and class shares per split."""
    rows = []
    for name, split in splits.items():
        counts = class_counts(split)
        rows.append({"split": name, "rows": split.num_rows,
                     **{label: round(n / split.num_rows, 3) for label, n in counts.items()}})
    return pd.DataFrame(rows).set_index("split")


def plot_class_balance(splits: DatasetDict, ax=None):
    """Seaborn bar plot of each class's share per split: shares, not counts, so splits of any size compare."""
    import seaborn as sns

    shares = split_summary(splits)[list(LABELS)] * 100
    frame = shares.reset_index().melt(id_vars="split", var_name="label", value_name="share")
    ax = sns.barplot(data=frame, x="split", y="share", hue="label", hue_order=LABELS, ax=ax)
    ax.set(title="class shares per split (each split's bars sum to 100%)", ylabel="share of the split (%)")
    return ax


def duplicate_report(splits: DatasetDict) -> pd.DataFrame:
    """Repeated texts within each split, and texts shared between splits (exact match after stripping)."""
    texts = {name: [t.strip() for t in split["text"]] for name, split in splits.items()}
    rows = [{"what": f"repeated within {name}", "texts": len(items) - len(set(items))} for name, items in texts.items()]
    names = list(texts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            rows.append({"what": f"shared by {a} and {b}", "texts": len(set(texts[a]) & set(texts[b]))})
    return pd.DataFrame(rows).set_index("what")


def examples_per_class(dataset: Dataset, per_class: int = 3, seed: int = 42) -> pd.DataFrame:
    """A seeded handful of messages of each class."""
    frame = dataset.to_pandas()
    frame["label"] = frame["label"].map(ID2LABEL)
    return frame.groupby("label", group_keys=False).sample(n=per_class, random_state=seed)[["label", "text"]]
