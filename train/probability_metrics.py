"""Probability quality in plain NumPy: NLL, Brier, reliability bins and expected calibration error (top-1)."""

from __future__ import annotations

import numpy as np

ECE_BINS = 15


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (probabilities clipped at 1e-12)."""
    p = np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]
    return float(-np.mean(np.log(np.clip(p, 1e-12, 1.0))))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over samples of the squared distance between the probability vector and the one-hot label."""
    p = np.asarray(probs, dtype=np.float64)
    onehot = np.eye(p.shape[1])[np.asarray(labels, dtype=np.int64)]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Top-1 confidence in ``bins`` equal-width bins (lo, hi]: count, mean confidence, accuracy per bin.

    A confidence of exactly 0 falls into the first bin. Empty bins have NaN confidence and accuracy.
    """
    p = np.asarray(probs, dtype=np.float64)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    index = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=conf, minlength=bins) / count
        accuracy = np.bincount(index, weights=correct, minlength=bins) / count
    return {"edges": np.linspace(0.0, 1.0, bins + 1), "count": count, "confidence": mean_conf,
            "accuracy": accuracy}


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top-1 class: sum over bins of |accuracy - confidence| * share."""
    r = reliability_bins(probs, labels, bins)
    filled = r["count"] > 0
    gap = np.abs(r["accuracy"][filled] - r["confidence"][filled])
    return float(np.sum(gap * r["count"][filled]) / r["count"].sum())


def calibration_metrics(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict[str, float]:
    p = np.asarray(probs, dtype=np.float64)
    return {
        "ece": ece(p, labels, bins),
        "nll": nll(p, labels),
        "brier": brier(p, labels),
        "mean_top_probability": float(p.max(axis=1).mean()),
        "accuracy": float(np.mean(p.argmax(axis=1) == np.asarray(labels))),
        "samples": len(p),
    }
