import json

import numpy as np
import pandas as pd
import pytest

from hwlib.calibration import CalibrationError, _macro_f1, apply_offsets, calibrate, fit_offsets, log_probs
from hwlib.data import LABELS
from hwlib.metrics import compute_metrics


def biased_scores(n: int, seed: int, bias=(0.0, 0.0, -2.5)):
    """Log-probabilities that know the answer (+1.5 for the true class) but are pushed away from `positive`."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[truth] + np.asarray(bias)
    scores = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return scores, [LABELS[i] for i in truth]


def test_fast_macro_f1_equals_sklearn():
    rng = np.random.default_rng(0)
    truth, predicted = rng.integers(0, 3, 500), rng.integers(0, 3, 500)
    predicted[:200] = 0  # skewed, so the classes' F1 differ
    expected = compute_metrics([LABELS[i] for i in truth], [LABELS[i] for i in predicted])["macro_f1"]
    assert _macro_f1(truth, predicted) == pytest.approx(expected, abs=1e-12)


def test_offsets_undo_a_class_bias_and_generalise():
    fit_scores, fit_truth = biased_scores(1500, seed=1)
    offsets = fit_offsets(fit_scores, fit_truth)
    assert offsets[0] == 0.0 and 1.5 < offsets[2] - offsets[1] < 3.5
    held_scores, held_truth = biased_scores(1500, seed=2)  # fresh rows: the gain is not overfitting
    raw = compute_metrics(held_truth, apply_offsets(held_scores, (0, 0, 0)))["macro_f1"]
    calibrated = compute_metrics(held_truth, apply_offsets(held_scores, offsets))["macro_f1"]
    assert calibrated > raw + 0.05


def test_unbiased_scores_keep_small_offsets():
    scores, truth = biased_scores(3000, seed=3, bias=(0.0, 0.0, 0.0))
    assert max(abs(o) for o in fit_offsets(scores, truth)) <= 0.5


def test_generate_predictions_cannot_be_calibrated():
    with pytest.raises(CalibrationError, match="score"):
        log_probs(pd.DataFrame({"predicted": ["positive"], "raw_output": ["..."]}))


def _write_eval(folder, scores, truth):
    folder.mkdir()
    probs = np.exp(scores)
    table = pd.DataFrame({"row": range(len(truth)), "gold": truth, "predicted": apply_offsets(scores, (0, 0, 0))})
    for j, label in enumerate(LABELS):
        table[f"p_{label}"] = probs[:, j].round(6)
    table.to_csv(folder / "predictions.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps({"method": "score", "split": "x", "model": "m"}))


def test_calibrate_fits_on_validation_and_reports_on_test(tmp_path):
    _write_eval(tmp_path / "validation", *biased_scores(1200, seed=4))
    _write_eval(tmp_path / "test", *biased_scores(1200, seed=5))
    metrics = calibrate(tmp_path / "validation", tmp_path / "test", tmp_path / "calibrated")
    assert metrics["method"] == "score+calibrated" and metrics["rows"] == 1200
    assert metrics["validation_macro_f1"]["calibrated"] > metrics["validation_macro_f1"]["raw"]
    assert json.loads((tmp_path / "calibrated" / "calibration.json").read_text())["offsets"] == metrics["offsets"]
