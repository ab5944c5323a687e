"""Golden outputs: fixed synthetic inputs and the int8 model's expected answers.

The inputs are drawn in code (no dataset images), so the check runs anywhere, including on the
device (``fer-edge selftest``): a runtime or converter upgrade that changes results shows up as a
mismatch, as in TensorFlow's Raspberry Pi classification example.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GOLDEN_SUFFIX = ".golden.csv"


def golden_inputs(size: int = 48) -> dict[str, np.ndarray]:
    """Deterministic grey test images: flat fields, gradients, stripes, and drawn cartoon faces."""
    import cv2

    images: dict[str, np.ndarray] = {}
    images["black"] = np.zeros((size, size), np.uint8)
    images["white"] = np.full((size, size), 255, np.uint8)
    images["mid_grey"] = np.full((size, size), 128, np.uint8)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    images["ramp_x"] = np.tile(ramp, (size, 1)).astype(np.uint8)
    images["ramp_y"] = np.tile(ramp[:, None], (1, size)).astype(np.uint8)
    checker = (np.indices((size, size)).sum(0) // 6) % 2
    images["checker"] = (checker * 255).astype(np.uint8)
    rng = np.random.default_rng(2024)
    images["noise"] = rng.integers(0, 256, (size, size), dtype=np.uint8)
    for mouth in ("smile", "frown", "open", "flat"):
        face = np.full((size, size), 60, np.uint8)
        c = size // 2
        cv2.ellipse(face, (c, c), (int(size * 0.38), int(size * 0.46)), 0, 0, 360, 170, -1)
        for dx in (-1, 1):
            cv2.circle(face, (c + dx * size // 6, int(size * 0.4)), max(2, size // 16), 40, -1)
        y = int(size * 0.7)
        w = size // 5
        if mouth == "smile":
            cv2.ellipse(face, (c, y - 3), (w, w // 2 + 2), 0, 20, 160, 30, 2)
        elif mouth == "frown":
            cv2.ellipse(face, (c, y + 4), (w, w // 2 + 2), 0, 200, 340, 30, 2)
        elif mouth == "open":
            cv2.ellipse(face, (c, y), (w // 2, w // 2 + 2), 0, 0, 360, 20, -1)
        else:
            cv2.line(face, (c - w, y), (c + w, y), 30, 2)
        images[f"face_{mouth}"] = face
    return images


@dataclass
class GoldenRow:
    name: str
    expected_class: int
    raw: list[int]  # the quantized output tensor, as stored


def write_golden(path: Path, names: list[str], raw_outputs: np.ndarray, classes: list[int] | None = None) -> Path:
    """``classes``: the classifier's answers (ties settled by the margins head); default argmax of raw."""
    classes = classes if classes is not None else [int(np.argmax(raw)) for raw in raw_outputs]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["input", "expected_class", "raw_scores"])
        for name, raw, cls in zip(names, raw_outputs, classes, strict=True):
            writer.writerow([name, int(cls), " ".join(str(int(v)) for v in raw)])
    return path


def read_golden(path: Path) -> list[GoldenRow]:
    rows = []
    with open(path, newline="") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            try:
                rows.append(GoldenRow(row["input"], int(row["expected_class"]),
                                      [int(v) for v in row["raw_scores"].split()]))
            except (KeyError, ValueError, AttributeError) as exc:
                raise ValueError(f"{path}: row {i}: malformed golden row ({exc})") from None
    return rows


def check_golden(classifier, golden_csv: Path, tolerance: int = 1) -> list[str]:
    """Compare a quantized classifier with the golden file; returns a list of mismatches (empty = pass).

    ``tolerance`` is in quantization steps: the same runtime reproduces outputs exactly, a different
    kernel path (XNNPACK vs reference) may round one step differently.
    """
    rows = read_golden(golden_csv)
    inputs = golden_inputs(classifier.input_size[0])
    problems = []
    for row in rows:
        if row.name not in inputs:
            problems.append(f"{row.name}: unknown golden input")
            continue
        raw = classifier.raw_predict(inputs[row.name])[0].astype(int)
        diff = int(np.max(np.abs(raw - np.asarray(row.raw))))
        top = int(np.argmax(classifier.predict(inputs[row.name])[0]))
        second = np.sort(np.asarray(row.raw))[-2] if len(row.raw) > 1 else -1
        clear_winner = max(row.raw) - second > 2 * tolerance
        if diff > tolerance or (clear_winner and top != row.expected_class):
            problems.append(f"{row.name}: got class {top} scores {raw.tolist()}, expected class "
                            f"{row.expected_class} scores {row.raw} (max diff {diff} > {tolerance})")
    return problems
