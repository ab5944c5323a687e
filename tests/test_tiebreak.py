"""The tie-break head's decision rule and output detection (no TensorFlow needed)."""

from pathlib import Path

import numpy as np
import pytest

from edge.vision.classifier import ModelLoadError, split_outputs
from edge.vision.tiebreak import break_ties, class_pairs, margin_count, pairwise_weights

STEP = 1 / 256


def margins_from_logits(logits: np.ndarray) -> np.ndarray:
    return np.array([[row[i] - row[j] for i, j in class_pairs(len(row))] for row in logits])


def test_pairs_order_and_count():
    assert class_pairs(3) == [(0, 1), (0, 2), (1, 2)]
    assert margin_count(7) == len(class_pairs(7)) == 21
    assert margin_count(2) == 1


def test_pairwise_weights_reproduce_logit_differences():
    rng = np.random.default_rng(0)
    kernel, bias, features = rng.normal(size=(5, 4)), rng.normal(size=4), rng.normal(size=(3, 5))
    w, b = pairwise_weights(kernel, bias, scale=2.0)
    logits = features @ kernel + bias
    assert np.allclose(features @ w + b, 2.0 * margins_from_logits(logits), atol=1e-5)


def test_a_tie_goes_to_the_class_the_margins_prefer():
    probs = np.array([[0.40, 0.10, 0.40, 0.10], [0.40, 0.10, 0.40, 0.10]], np.float32)
    logits = np.array([[1.0, -1.0, 1.01, -1.0], [1.01, -1.0, 1.0, -1.0]])
    settled, ties = break_ties(probs, margins_from_logits(logits), STEP)
    assert ties == 2
    assert settled.argmax(1).tolist() == [2, 0]
    assert np.max(np.abs(settled - probs)) == pytest.approx(STEP / 2)


def test_three_way_tie_and_rows_without_ties():
    probs = np.array([[0.3, 0.3, 0.3, 0.1], [0.7, 0.1, 0.1, 0.1]], np.float32)
    logits = np.array([[0.0, 0.02, 0.01, -3.0], [2.0, 0.0, 0.0, 0.0]])
    settled, ties = break_ties(probs, margins_from_logits(logits), STEP)
    assert ties == 1 and settled.argmax(1).tolist() == [1, 0]
    assert np.array_equal(settled[1], probs[1])  # untouched, including its tied runners-up


def test_exactly_equal_margins_keep_the_lowest_index():
    probs = np.array([[0.1, 0.45, 0.45]], np.float32)
    settled, _ = break_ties(probs, np.zeros((1, 3)), STEP)
    assert settled.argmax(1).tolist() == [1]


def test_output_detection():
    assert split_outputs([7], Path("m")) == (0, None)
    assert split_outputs([7, 21], Path("m")) == (0, 1)
    assert split_outputs([21, 7], Path("m")) == (1, 0)
    assert split_outputs([2, 1], Path("m")) == (0, 1)
    with pytest.raises(ModelLoadError, match="m: expected a probability output"):
        split_outputs([7, 5], Path("m"))
