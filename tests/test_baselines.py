import json

import pytest

from hwlib.baselines import TFIDF_C_GRID, evaluate_tfidf, fit_tfidf
from hwlib.config import ConfigError


def test_tfidf_baseline_on_real_data(tmp_path, data_dir):
    """Fitted on train, C chosen on validation; the test score is a real, well-above-chance figure."""
    metrics = evaluate_tfidf(tmp_path / "tfidf", "test", data_dir)
    assert metrics["C"] in TFIDF_C_GRID and set(metrics["validation_macro_f1"]) == {str(c) for c in TFIDF_C_GRID}
    assert metrics["rows"] == 12284 and metrics["invalid_rate"] == 0.0
    assert 0.5 < metrics["macro_f1"] < 0.7  # published TF-IDF baselines on this split: 0.57–0.59
    written = json.loads((tmp_path / "tfidf" / "metrics.json").read_text())
    assert written["macro_f1"] == metrics["macro_f1"]
    assert (tmp_path / "tfidf" / "predictions.csv").stat().st_size > 100_000


def test_empty_grid_is_refused(data_dir):
    with pytest.raises(ConfigError, match="C"):
        fit_tfidf(data_dir, c_grid=())
