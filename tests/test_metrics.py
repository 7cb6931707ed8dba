import numpy as np
import pytest

from hwlib.metrics import compute_metrics, save_confusion_png, to_names

# Hand-computed example: 6 rows, one invalid prediction.
Y_TRUE = [0, 0, 1, 1, 2, 2]
Y_PRED = ["negative", "neutral", "neutral", "", "positive", "negative"]


def test_hand_computed_values():
    m = compute_metrics(Y_TRUE, Y_PRED)
    # negative: tp 1, fp 1, fn 1 -> p 0.5 r 0.5 f1 0.5; neutral: tp 1, fp 1, fn 1 -> 0.5; positive: tp 1, fp 0, fn 1
    # -> p 1, r 0.5, f1 2/3
    assert m["per_class"]["negative"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_class"]["positive"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.5 + 2 / 3) / 3)
    assert m["macro_recall"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["invalid_rate"] == pytest.approx(1 / 6)
    assert m["confusion"]["columns"] == ["negative", "neutral", "positive", "invalid"]
    assert m["confusion"]["counts"] == [[1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 1, 0]]
    assert np.allclose(m["confusion"]["normalised"], [[0.5, 0.5, 0, 0], [0, 0.5, 0, 0.5], [0.5, 0, 0.5, 0]])


def test_ids_and_names_mix():
    assert to_names([0, "Neutral", 2, ""]) == ["negative", "neutral", "positive", ""]
    assert compute_metrics([0, 1, 2], [0, 1, 2])["macro_f1"] == 1.0


@pytest.mark.parametrize("y_true, y_pred", [([0, 1], [0]), ([], []), ([0, ""], [0, 0]), ([0, 3], [0, 0])])
def test_bad_input(y_true, y_pred):
    with pytest.raises(ValueError):
        compute_metrics(y_true, y_pred)


def test_confusion_png(tmp_path):
    m = compute_metrics(Y_TRUE, Y_PRED)
    path = save_confusion_png({"before": m, "after": m}, tmp_path / "cm.png", normalised=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_bootstrap_interval_brackets_the_figure_and_shrinks_with_more_rows():
    from hwlib.metrics import bootstrap_interval, compute_metrics

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 3000)
    y_pred = np.where(rng.random(3000) < 0.7, y_true, rng.integers(0, 3, 3000))
    full = compute_metrics(y_true.tolist(), y_pred.tolist())
    wide = bootstrap_interval(y_true[:300].tolist(), y_pred[:300].tolist(), resamples=300)
    narrow = bootstrap_interval(y_true.tolist(), y_pred.tolist(), resamples=300)
    low, high = narrow["macro_f1"]
    assert low < full["macro_f1"] < high
    assert high - low < wide["macro_f1"][1] - wide["macro_f1"][0]
    assert bootstrap_interval(y_true.tolist(), y_pred.tolist(), resamples=50) == \
        bootstrap_interval(y_true.tolist(), y_pred.tolist(), resamples=50)  # seeded
