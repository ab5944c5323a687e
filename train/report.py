"""Evaluation reports and PNG plots: confusion matrix, training curves, class counts, samples."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge.contract import ModelCard, card_path_for
from train.datasets import Dataset
from train.metrics import classification_metrics

log = logging.getLogger(__name__)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def load_model_with_card(path: Path) -> tuple[ModelCard, Any]:
    """A published .keras model and the card beside it, or an error naming the missing file."""
    import keras

    if not path.is_file():
        raise FileNotFoundError(f"{path}: model not found")
    card = ModelCard.load(card_path_for(path))
    return card, keras.models.load_model(path, compile=False)


def predict_probs(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    x = images.astype(np.float32)[..., None]
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)


def confusion_png(metrics: dict[str, Any], path: Path, title: str) -> Path:
    plt = _pyplot()
    cm = np.asarray(metrics["confusion_matrix"], dtype=np.float64)
    labels = metrics["labels"]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(labels), 0.8 + 0.8 * len(labels)), dpi=100)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    s = metrics["summary"]
    ax.set_title(f"{title}\naccuracy {s['accuracy']:.3f}, macro-F1 {s['macro_f1']:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def read_history(history_csv: Path) -> dict[str, list[float]]:
    with open(history_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    # A resumed run appends; a crash mid-epoch can repeat an epoch number, keep the last one.
    by_epoch: dict[int, dict[str, str]] = {int(r["epoch"]): r for r in rows}
    keys = [k for k in (rows[0].keys() if rows else []) if k != "epoch"]
    ordered = [by_epoch[e] for e in sorted(by_epoch)]
    out = {"epoch": [e + 1 for e in sorted(by_epoch)]}
    for key in keys:
        out[key] = [float(r[key]) if r.get(key) not in (None, "") else float("nan") for r in ordered]
    return out


def curves_png(history_csv: Path, path: Path, title: str) -> Path:
    plt = _pyplot()
    hist = read_history(history_csv)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    for key, style in (("loss", "-"), ("val_loss", "--")):
        if key in hist:
            ax1.plot(hist["epoch"], hist[key], style, label=key)
    for key, style in (("accuracy", "-"), ("val_accuracy", "--")):
        if key in hist:
            label = key.replace("val_", "PublicTest ").replace("accuracy", "acc")
            ax2.plot(hist["epoch"], hist[key], style, label=label)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def class_distribution_png(dataset: Dataset, path: Path) -> Path:
    plt = _pyplot()
    counts = dataset.class_counts()
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
    width = 0.8 / max(len(counts), 1)
    x = np.arange(len(dataset.labels))
    for k, (split, values) in enumerate(counts.items()):
        ax.bar(x + k * width, values, width, label=f"{split} ({sum(values)})")
    ax.set_xticks(x + width * (len(counts) - 1) / 2, dataset.labels)
    ax.set_ylabel("images")
    ax.set_title(f"{dataset.name}: images per class and split")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def sample_grid_png(dataset: Dataset, path: Path, per_class: int = 8, seed: int = 0) -> Path:
    plt = _pyplot()
    split = dataset.splits.get("Training") or next(iter(dataset.splits.values()))
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(dataset.labels), per_class, figsize=(per_class * 0.9, len(dataset.labels) * 0.95))
    axes = np.atleast_2d(axes)
    for i, label in enumerate(dataset.labels):
        idx = np.flatnonzero(split.labels == i)
        pick = rng.choice(idx, size=min(per_class, idx.size), replace=False) if idx.size else []
        for j in range(per_class):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(pick):
                ax.imshow(split.images[pick[j]], cmap="gray", vmin=0, vmax=255)
        axes[i, 0].set_title(label, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def evaluate_and_report(
    model,
    card: ModelCard,
    dataset: Dataset,
    model_path: Path,
    *,
    splits: tuple[str, ...] = ("PublicTest", "PrivateTest"),
    tta_flip: bool = False,
    history_csv: Path | None = None,
    out_dir: Path | None = None,
    update_card: bool = True,
) -> dict[str, Any]:
    """Evaluate on each split; write ``<name>.metrics.json``, confusion PNGs, curves; update the card."""
    if list(card.labels) != list(dataset.labels):
        raise ValueError(f"model labels {card.labels} differ from the data set's {list(dataset.labels)}")
    out_dir = Path(out_dir) if out_dir else model_path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = card.name
    results: dict[str, Any] = {}
    for split_name in splits:
        if split_name not in dataset.splits or len(dataset.splits[split_name]) == 0:
            continue
        split = dataset.splits[split_name]
        probs = predict_probs(model, split.images)
        metrics = classification_metrics(split.labels, probs.argmax(1), card.labels)
        if tta_flip:
            flipped = predict_probs(model, split.images[:, :, ::-1])
            tta = classification_metrics(split.labels, (probs + flipped).argmax(1), card.labels)
            metrics["tta_flip_summary"] = tta["summary"]
        results[split_name] = metrics
        png = confusion_png(metrics, out_dir / f"{stem}.confusion_{split_name}.png", f"{stem} on {split_name}")
        log.info("%s %s: accuracy %.4f, macro-F1 %.4f (%s)", stem, split_name, metrics["summary"]["accuracy"],
                 metrics["summary"]["macro_f1"], png.name)
    if not results:
        raise ValueError(f"{dataset.source}: none of the splits {splits} has data")
    metrics_path = out_dir / f"{stem}.metrics.json"
    # Evaluating one split in place must not drop the others (the card and report describe the same model).
    in_place = update_card and bool(card.metrics)  # an existing card, not a fresh one from export
    previous = json.loads(metrics_path.read_text()) if in_place and metrics_path.is_file() else {}
    metrics_path.write_text(json.dumps({**previous, **results}, indent=2) + "\n")
    if history_csv is not None and Path(history_csv).is_file():
        curves_png(Path(history_csv), out_dir / f"{stem}.curves.png", f"{stem} training curves")
        (out_dir / f"{stem}.history.json").write_text(json.dumps(read_history(Path(history_csv))) + "\n")
    if update_card:
        # Merge, so that re-evaluating a converted model keeps its parity results and its other splits.
        card.metrics.setdefault("keras", {}).update({s: r["summary"] for s, r in results.items()})
        for s, r in results.items():
            if "tta_flip_summary" in r:
                card.metrics.setdefault("keras_tta_flip", {})[s] = r["tta_flip_summary"]
        if model_path.is_file():
            card.add_artifact("keras", model_path)
        card.save(card_path_for(model_path))
    return results
