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
    """A learnable synthetic image: horizontal stripes whose period encodes the label.

    Texture, not position, carries the class, so a global-average-pooling network can learn it.
    """
    periods = (3, 4, 6, 8, 12, 16, 24, 32)
    rows = np.arange(size)[:, None]
    phase = rng.uniform(0, 2 * np.pi)
    stripes = np.sin(2 * np.pi * rows / periods[label % len(periods)] + phase)
    image = 110 + 70 * stripes + rng.normal(0, 10, (size, size))
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


TINY_ARCH = {"stem": 8, "widths": [16, 16], "convs": [1, 1]}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny edgefer trained on the stripe task, exported with its card, plus the data root it used."""
    from train.augment import AugmentConfig
    from train.datasets import load_fer2013_csv
    from train.fit import FitConfig, card_for_run, export_model, train
    from train.report import evaluate_and_report

    root = tmp_path_factory.mktemp("tiny")
    data = root / "data" / "fer2013"
    data.mkdir(parents=True)
    csv_path = write_fer_csv(data / "fer2013.csv.gz", rows=fer_rows({"Training": 280, "PublicTest": 70,
                                                                     "PrivateTest": 140}))
    dataset = load_fer2013_csv(csv_path)
    cfg = FitConfig(name="tiny", epochs=6, batch_size=16, lr=0.02, warmup_epochs=0, label_smoothing=0.0,
                    augment=AugmentConfig(max_rotation_deg=5, max_shift=0.02, erase_prob=0.0, flip=False),
                    arch_kwargs=TINY_ARCH)
    run_dir = train(cfg, dataset, root / "run", verbose=0)
    out = root / "models"
    model = export_model(run_dir, out / "tiny.keras")
    evaluate_and_report(model, card_for_run(run_dir, model, dataset), dataset, out / "tiny.keras")
    return root
