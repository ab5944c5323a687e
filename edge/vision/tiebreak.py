"""Tie-break head: pairwise logit margins that settle exact ties of int8 probabilities.

An int8 softmax output has 256 levels and its logits input is itself int8, so two classes whose
float logits differ by less than one logit step (about 0.05 for our models) come out *equal*; the
runtime's argmax then picks the lower index, a coin flip against the float model. Measured on the
shipped model, such ties were 40 of the 58 int8/float disagreements on PrivateTest.

The converter therefore adds a second output: for every class pair (i, j), i < j, in
``itertools.combinations`` order, ``clip(scale * (z_i - z_j), -1, 1)`` computed by one fully
connected layer from the same penultimate features. In int8 its accumulation is int32 and its output
range is only +-1/scale logits, so the sign of a near-tie survives quantization (a step of
2 / (255 * scale) logits instead of ~0.05). The float model is unchanged: the head is an exact
linear function of the features it already has.
"""

from __future__ import annotations

import itertools

import numpy as np

DEFAULT_MARGIN_SCALE = 8.0


def class_pairs(num_classes: int) -> list[tuple[int, int]]:
    """The order of the margin outputs: (0, 1), (0, 2), ..., (C-2, C-1)."""
    return list(itertools.combinations(range(num_classes), 2))


def margin_count(num_classes: int) -> int:
    return num_classes * (num_classes - 1) // 2


def pairwise_weights(kernel: np.ndarray, bias: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights of the margin layer from the logits layer's ``kernel`` (F, C) and ``bias`` (C,)."""
    pairs = class_pairs(kernel.shape[1])
    w = np.stack([kernel[:, i] - kernel[:, j] for i, j in pairs], axis=1) * scale
    b = np.array([bias[i] - bias[j] for i, j in pairs], dtype=np.float32) * scale
    return w.astype(np.float32), b


def break_ties(probs: np.ndarray, margins: np.ndarray, step: float) -> tuple[np.ndarray, int]:
    """Settle exact top-1 ties in ``probs`` (N, C) with ``margins`` (N, C(C-1)/2).

    Among the tied classes the one that beats most of the others on the margins wins and gets half a
    quantization ``step`` added, the smallest change that makes every argmax downstream pick it
    without reordering any other pair. Returns the adjusted copy and the number of tied rows.
    """
    probs = np.array(probs, dtype=np.float32, copy=True)
    top = probs.max(axis=1, keepdims=True)
    tied_rows = np.flatnonzero((probs == top).sum(axis=1) > 1)
    if tied_rows.size == 0:
        return probs, 0
    index = {pair: n for n, pair in enumerate(class_pairs(probs.shape[1]))}
    for row in tied_rows:
        tied = np.flatnonzero(probs[row] == top[row, 0])

        def wins(c: int, row: int = row, tied: np.ndarray = tied) -> int:
            return sum(
                (margins[row, index[(c, o)]] if c < o else -margins[row, index[(o, c)]]) > 0 for o in tied if o != c
            )

        winner = max(tied, key=lambda c: (wins(int(c)), -int(c)))  # all equal: keep argmax's lowest index
        probs[row, winner] += step / 2
    return probs, int(tied_rows.size)
