"""Reference points for every results table: a TF-IDF + logistic-regression classifier trained in seconds."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import ConfigError
from .data import ID2LABEL, load_split
from .runs import METRICS, PREDICTIONS
from .files import atomic_path, write_json
from .metrics import compute_metrics

TFIDF_C_GRID = (0.3, 1.0, 3.0)  # inverse regularisation strengths tried on validation


@dataclass
class TfidfResult:
    """The fitted pipeline, the C chosen on validation, and the validation scores of every C tried."""

    pipeline: object
    C: float
    validation_macro_f1: dict[float, float]


def tfidf_pipeline(C: float = 1.0, balanced: bool = True, seed: int = 42):
    """Word 1–2-gram TF-IDF features into a multinomial logistic regression (class-balanced by default)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True),
        LogisticRegression(C=C, max_iter=2000, class_weight="balanced" if balanced else None, random_state=seed),
    )


def fit_tfidf(data_dir=None, balanced: bool = True, c_grid=TFIDF_C_GRID, seed: int = 42) -> TfidfResult:
    """Fit on train, choose C by validation macro-F1 (never the test split), and return the chosen pipeline."""
    if not c_grid:
        raise ConfigError("c_grid is empty: give at least one regularisation strength C")
    train, validation = load_split("train", data_dir), load_split("validation", data_dir)
    scores, fitted = {}, {}
    for C in c_grid:
        pipeline = tfidf_pipeline(C, balanced, seed).fit(train["text"], train["label"])
        scores[C] = compute_metrics(validation["label"], pipeline.predict(validation["text"]).tolist())["macro_f1"]
        fitted[C] = pipeline
    best = max(c_grid, key=lambda C: scores[C])
    return TfidfResult(fitted[best], best, scores)


def evaluate_tfidf(output_dir: str | Path, split: str = "test", data_dir=None, balanced: bool = True,
                   seed: int = 42) -> dict:
    """Fit the baseline and score it on `split`; writes predictions.csv and metrics.json like `evaluate` does."""
    start = time.perf_counter()
    result = fit_tfidf(data_dir, balanced, seed=seed)
    rows = load_split(split, data_dir)
    y_pred = [ID2LABEL[int(y)] for y in result.pipeline.predict(rows["text"])]
    y_true = [ID2LABEL[int(y)] for y in rows["label"]]
    metrics = compute_metrics(y_true, y_pred)
    metrics.update(method="tfidf-logreg", split=split, limit=None, model=f"tfidf-logreg{'-balanced' * balanced}",
                   adapter=None, C=result.C, validation_macro_f1={str(c): round(f, 4) for c, f in
                                                                   result.validation_macro_f1.items()},
                   wall_time_s=round(time.perf_counter() - start, 2))
    output = Path(output_dir)
    table = pd.DataFrame({"row": np.arange(len(y_true)), "text": rows["text"], "gold": y_true, "predicted": y_pred})
    with atomic_path(output / PREDICTIONS) as tmp:
        table.to_csv(tmp, index=False)
    write_json(output / METRICS, metrics)
    return metrics
