import numpy as np
import pytest

from train.metrics import classification_metrics, confusion_matrix


def test_confusion_matrix_by_hand():
    y_true = [0, 0, 1, 1, 1, 2]
    y_pred = [0, 1, 1, 1, 2, 2]
    assert confusion_matrix(np.array(y_true), np.array(y_pred), 3).tolist() == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]


def test_metrics_by_hand():
    # class 0: tp1 fp0 fn1 -> P 1, R .5, F1 2/3 ; class 1: tp2 fp1 fn1 -> P 2/3 R 2/3 F1 2/3
    # class 2: tp1 fp1 fn0 -> P .5 R 1 F1 2/3
    m = classification_metrics(np.array([0, 0, 1, 1, 1, 2]), np.array([0, 1, 1, 1, 2, 2]), ["a", "b", "c"])
    assert m["summary"]["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["recall"] == pytest.approx(1.0)
    assert m["summary"]["macro_f1"] == pytest.approx(2 / 3)
    assert m["summary"]["weighted_f1"] == pytest.approx((2 * 2 / 3 + 3 * 2 / 3 + 1 * 2 / 3) / 6)


def test_never_predicted_class_has_zero_precision():
    m = classification_metrics(np.array([0, 1, 1]), np.array([0, 0, 0]), ["a", "b"])
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert m["per_class"]["a"]["precision"] == pytest.approx(1 / 3)


def test_labels_out_of_range_rejected():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
