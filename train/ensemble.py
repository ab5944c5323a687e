"""Accuracy of several trained models and of their softmax average: what a distilled student could learn.

The edge runs one network, so an ensemble is only ever a teacher (``fer-train fit --teacher A --teacher B``).
This module measures how much it knows beyond its members, on the selection and the report split alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from train.datasets import Dataset
from train.metrics import classification_metrics
from train.report import load_model_with_card, predict_probs


@dataclass(frozen=True)
class EnsembleRow:
    """One line of the comparison: a single model or the ensemble, on one split."""

    split: str
    name: str
    tta_flip: bool
    accuracy: float
    macro_f1: float


def average_probs(probs: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of (N, classes) probability arrays of equal shape."""
    if not probs:
        raise ValueError("an ensemble needs at least one model")
    shapes = {p.shape for p in probs}
    if len(shapes) != 1:
        raise ValueError(f"members disagree on the output shape: {sorted(shapes)}")
    return np.mean(np.stack(probs), axis=0)


def _row(split_name: str, labels: np.ndarray, class_names: Sequence[str], name: str, flipped: bool,
         probs: np.ndarray) -> EnsembleRow:
    summary = classification_metrics(labels, probs.argmax(1), class_names)["summary"]
    return EnsembleRow(split_name, name, flipped, summary["accuracy"], summary["macro_f1"])


def compare_ensemble(
    models: Sequence[tuple[str, object]],
    dataset: Dataset,
    splits: Sequence[str] = ("PublicTest", "PrivateTest"),
    tta_flip: bool = False,
) -> list[EnsembleRow]:
    """Each member's and the ensemble's accuracy and macro-F1 per split (members are (name, keras model))."""
    rows: list[EnsembleRow] = []
    for split_name in splits:
        split = dataset.split(split_name)
        row = partial(_row, split_name, split.labels, dataset.labels)
        plain, mirrored = [], []
        for name, model in models:
            plain.append(predict_probs(model, split.images))
            rows.append(row(name, False, plain[-1]))
            if tta_flip:
                mirrored.append(predict_probs(model, split.images[:, :, ::-1]))
                rows.append(row(name, True, (plain[-1] + mirrored[-1]) / 2))
        if len(models) > 1:
            rows.append(row("ensemble", False, average_probs(plain)))
            if tta_flip:
                rows.append(row("ensemble", True, average_probs(plain + mirrored)))
    return rows


def load_members(paths: Sequence[Path]) -> list[tuple[str, object]]:
    """Load .keras models that share one label set (read from each model's card)."""
    members, labels = [], None
    for path in paths:
        card, model = load_model_with_card(path)
        if labels is not None and list(card.labels) != labels:
            raise ValueError(f"{path}: labels {list(card.labels)} differ from the first model's {labels}")
        labels = list(card.labels)
        members.append((str(path), model))
    return members


def markdown_table(rows: Sequence[EnsembleRow]) -> str:
    lines = ["| split | model | flip | accuracy | macro-F1 |", "|---|---|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.split} | {r.name} | {'+ flip' if r.tta_flip else ''} | {r.accuracy * 100:.2f}% "
                     f"| {r.macro_f1:.4f} |")
    return "\n".join(lines)
