"""Classification metrics for 3-way sentiment with invalid ("") predictions, and confusion-matrix plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from .data import ID2LABEL, LABELS

INVALID = ""
INVALID_NAME = "invalid"


def to_names(labels: Sequence[int | str]) -> list[str]:
    """Label ids or names to names; "" (no label found) stays "" and anything unknown is an error."""
    names = []
    for label in labels:
        if isinstance(label, (int, np.integer)) and int(label) in ID2LABEL:
            names.append(ID2LABEL[int(label)])
        elif isinstance(label, str) and label.lower() in LABELS + (INVALID,):
            names.append(label.lower())
        else:
            raise ValueError(f"unknown label {label!r}: use an id 0..2, a name in {LABELS}, or '' for invalid")
    return names


def compute_metrics(y_true: Sequence[int | str], y_pred: Sequence[int | str]) -> dict:
    """Macro-F1, accuracy, macro-recall (TweetEval's sentiment metric), per-class scores and confusion matrices.

    Invalid predictions ("") count as wrong for their row's class and get their own confusion column.
    """
    y_true, y_pred = to_names(y_true), to_names(y_pred)
    if len(y_true) != len(y_pred) or not y_true:
        raise ValueError(f"need equally long, non-empty label lists (got {len(y_true)} and {len(y_pred)})")
    if INVALID in y_true:
        raise ValueError("y_true holds an empty label: gold labels must be valid")
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(LABELS), zero_division=0
    )
    counts = confusion_matrix(y_true, y_pred, labels=[*LABELS, INVALID])[: len(LABELS)]
    normalised = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    return {
        "macro_f1": float(f1.mean()),
        "macro_recall": float(recall.mean()),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "invalid_rate": float(np.mean([p == INVALID for p in y_pred])),
        "rows": len(y_true),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(LABELS, precision, recall, f1, support)
        },
        "confusion": {
            "rows": list(LABELS),
            "columns": [*LABELS, INVALID_NAME],
            "counts": counts.tolist(),
            "normalised": normalised.round(6).tolist(),
        },
    }


def plot_confusion(metrics: dict, ax=None, normalised: bool = False, title: str | None = None):
    """Seaborn heatmap of a confusion matrix from `compute_metrics` (the invalid column only when used)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    confusion = metrics["confusion"]
    matrix = np.asarray(confusion["normalised" if normalised else "counts"])
    columns = confusion["columns"]
    if not np.asarray(confusion["counts"])[:, -1].any():
        matrix, columns = matrix[:, :-1], columns[:-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3.8))
    sns.heatmap(
        matrix, annot=True, fmt=".2f" if normalised else "d", cmap="Blues", cbar=False,
        xticklabels=columns, yticklabels=confusion["rows"], ax=ax, vmin=0,
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"macro-F1 {metrics['macro_f1']:.3f}")
    return ax


def save_confusion_png(panels: dict[str, dict], path: str | Path, normalised: bool = False) -> Path:
    """One PNG with a confusion matrix per titled panel, side by side (e.g. before and after fine-tuning)."""
    import matplotlib.pyplot as plt

    from .files import atomic_path

    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (title, metrics) in zip(axes[0], panels.items()):
        plot_confusion(metrics, ax=ax, normalised=normalised, title=f"{title}\nmacro-F1 {metrics['macro_f1']:.3f}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)


def bootstrap_interval(y_true: Sequence[int | str], y_pred: Sequence[int | str], resamples: int = 1000,
                       seed: int = 42, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals for macro-F1 and macro-recall: how much the test figures would move with
    another sample of tweets of the same kind. Differences smaller than this are not wins."""
    codes = {name: i for i, name in enumerate((*LABELS, INVALID))}
    truth = np.array([codes[n] for n in to_names(y_true)])
    predicted = np.array([codes[n] for n in to_names(y_pred)])
    rng = np.random.default_rng(seed)
    k = len(LABELS)
    f1s, recalls = [], []
    for _ in range(resamples):
        pick = rng.integers(0, len(truth), len(truth))
        counts = np.bincount(truth[pick] * (k + 1) + predicted[pick], minlength=k * (k + 1)).reshape(k, k + 1)
        hits = np.diag(counts[:, :k])
        recall = hits / counts.sum(axis=1).clip(min=1)
        precision = hits / counts[:, :k].sum(axis=0).clip(min=1)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clip(min=1e-12), 0.0)
        f1s.append(f1.mean())
        recalls.append(recall.mean())
    tail = (1 - level) / 2 * 100
    return {name: (round(float(np.percentile(values, tail)), 4), round(float(np.percentile(values, 100 - tail)), 4))
            for name, values in (("macro_f1", f1s), ("macro_recall", recalls))}


def pairs_from_confusion(counts: Sequence[Sequence[int]]) -> tuple[list[str], list[str]]:
    """The (gold, predicted) pairs a confusion matrix of counts stands for (rows: LABELS; columns: LABELS, then
    invalid). The bootstrap only needs these pairs, so an interval can be computed for results that kept their
    confusion matrix but not their predictions file."""
    columns = [*LABELS, INVALID]
    y_true, y_pred = [], []
    for gold, row in zip(LABELS, counts):
        for predicted, count in zip(columns, row):
            y_true += [gold] * int(count)
            y_pred += [predicted] * int(count)
    return y_true, y_pred



def recorded_interval(metrics: dict, name: str = "macro_f1") -> tuple[float, float] | None:
    """The bootstrap 95% interval of an evaluation's `name` (macro_f1 or macro_recall): as recorded in its
    metrics.json, else from its confusion matrix (results recorded before intervals were); None for neither."""
    if "bootstrap_95" in metrics:
        return tuple(metrics["bootstrap_95"][name])
    counts = metrics.get("confusion", {}).get("counts")
    if not counts or not sum(map(sum, counts)):
        return None
    return bootstrap_interval(*pairs_from_confusion(counts))[name]
