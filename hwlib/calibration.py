"""Decision calibration: per-class log-probability offsets, fitted on validation to maximise macro-F1.

A fine-tuned model's label probabilities are biased towards the classes it saw most or learned first; adding a
constant per class before the argmax moves its decision boundaries without retraining. Fit on validation only.
"""

from __future__ import annotations

from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd

from .config import HwlibError
from .data import LABELS
from .runs import METRICS, PREDICTIONS
from .files import read_json, write_json
from .metrics import compute_metrics

OFFSET_GRID = np.round(np.arange(-3.0, 3.01, 0.1), 2)
CALIBRATION = "calibration.json"


class CalibrationError(HwlibError, ValueError):
    """Predictions that cannot be calibrated: the message says what is missing."""


def log_probs(table: pd.DataFrame) -> np.ndarray:
    """The (rows, 3) label log-probabilities from a `score` predictions table (`p_negative`, ...)."""
    columns = [f"p_{label}" for label in LABELS]
    missing = [c for c in columns if c not in table]
    if missing:
        raise CalibrationError(f"no {', '.join(missing)} columns: calibration needs `score` predictions, "
                               "not `generate` ones")
    return np.log(table[columns].to_numpy(dtype=np.float64).clip(min=1e-12))


def apply_offsets(scores: np.ndarray, offsets) -> list[str]:
    """Labels after adding each class's offset to its log-probability."""
    return [LABELS[i] for i in (scores + np.asarray(offsets)).argmax(axis=1)]


def fit_offsets(scores: np.ndarray, y_true, grid=OFFSET_GRID) -> tuple[float, float, float]:
    """Offsets (negative fixed at 0) that maximise macro-F1 on these rows, by exhaustive search over `grid`."""
    truth = np.array([LABELS.index(label) for label in y_true])
    best, best_f1 = (0.0, 0.0, 0.0), -1.0
    for neutral, positive in product(grid, grid):
        offsets = (0.0, float(neutral), float(positive))
        f1 = _macro_f1(truth, (scores + np.asarray(offsets)).argmax(axis=1))
        # ties go to the smaller correction, so an already calibrated model keeps offsets near 0
        if f1 > best_f1 + 1e-12 or (abs(f1 - best_f1) <= 1e-12 and sum(map(abs, offsets)) < sum(map(abs, best))):
            best, best_f1 = offsets, f1
    return best


def _macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Macro-F1 over the three labels from a confusion matrix (the same value sklearn gives, thousands of times faster
    to call in a grid search)."""
    k = len(LABELS)
    confusion = np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)
    hits = np.diag(confusion)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)
    return float(np.mean(np.where(denominator > 0, 2 * hits / np.maximum(denominator, 1), 0.0)))


def calibrate(validation_folder: str | Path, test_folder: str | Path, output_dir: str | Path) -> dict:
    """Fit offsets on a validation evaluation, apply them to a test evaluation; writes metrics raw and calibrated."""
    validation = pd.read_csv(Path(validation_folder) / PREDICTIONS, keep_default_na=False)
    test = pd.read_csv(Path(test_folder) / PREDICTIONS, keep_default_na=False)
    validation_scores = log_probs(validation)
    offsets = fit_offsets(validation_scores, validation["gold"])
    raw = read_json(Path(test_folder) / METRICS)
    calibrated = compute_metrics(test["gold"].tolist(), apply_offsets(log_probs(test), offsets))
    calibrated.update({k: raw.get(k) for k in ("method", "split", "limit", "model", "adapter")})
    calibrated["method"] = f"{raw.get('method')}+calibrated"
    calibrated["offsets"] = dict(zip(LABELS, offsets))
    calibrated["validation_macro_f1"] = {
        name: compute_metrics(validation["gold"].tolist(), apply_offsets(validation_scores, shift))["macro_f1"]
        for name, shift in (("raw", (0.0, 0.0, 0.0)), ("calibrated", offsets))
    }
    write_json(Path(output_dir) / CALIBRATION, {"offsets": calibrated["offsets"], "fitted_on": str(validation_folder)})
    write_json(Path(output_dir) / METRICS, calibrated)  # last: its presence marks a finished calibration
    return calibrated
