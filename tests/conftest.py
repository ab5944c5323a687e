"""Shared fixtures: small generated data sets (never dataset images)."""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")

SPLIT_ROWS = {"Training": 70, "PublicTest": 21, "PrivateTest": 21}


def pattern_face(label: int, rng: np.random.Generator, size: int = 48, num_classes: int = 7) -> np.ndarray:
    """A learnable synthetic image: a bright horizontal band whose height encodes the label."""
    image = rng.normal(90, 12, (size, size))
    band = size // num_classes
    image[label * band : (label + 1) * band, :] += 110
    return np.clip(image, 0, 255).astype(np.uint8)


def fer_rows(split_rows: dict[str, int] = SPLIT_ROWS, seed: int = 0) -> list[tuple[int, np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for usage, count in split_rows.items():
        for i in range(count):
            label = i % 7
            rows.append((label, pattern_face(label, rng), usage))
    return rows


def write_fer_csv(path: Path, rows=None, extra_lines: list[str] | None = None) -> Path:
    rows = fer_rows() if rows is None else rows
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["emotion", "pixels", "Usage"])
        for label, image, usage in rows:
            writer.writerow([label, " ".join(map(str, image.ravel())), usage])
        for line in extra_lines or []:
            fh.write(line + "\n")
    return path


@pytest.fixture
def fer_csv(tmp_path: Path) -> Path:
    return write_fer_csv(tmp_path / "fer2013.csv")


@pytest.fixture
def fer_csv_gz(tmp_path: Path) -> Path:
    return write_fer_csv(tmp_path / "fer2013.csv.gz")
