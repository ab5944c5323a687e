"""Reliability diagram (PNG): accuracy against top-1 confidence per bin, before and after calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from train.probability_metrics import ECE_BINS, ece, reliability_bins


def reliability_diagram(path: Path, before: np.ndarray, after: np.ndarray, labels: np.ndarray,
                        bins: int = ECE_BINS, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), sharey=True)
    for ax, probs, name in ((axes[0], before, "before"), (axes[1], after, "after")):
        r = reliability_bins(probs, labels, bins)
        centers = 0.5 * (r["edges"][:-1] + r["edges"][1:])
        width = 1.0 / bins
        filled = r["count"] > 0
        ax.bar(centers[filled], r["accuracy"][filled], width=width * 0.95, color="#4c72b0", label="accuracy")
        ax.scatter(centers[filled], r["confidence"][filled], marker="_", s=220, color="#c44e52", linewidths=2.5,
                   label="mean confidence", zorder=3)
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        share = ax.twinx()
        share.step(r["edges"][:-1], r["count"] / r["count"].sum(), where="post", color="0.4", lw=1)
        share.set_ylim(0, 1)
        share.set_yticks([])
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("top-1 confidence")
        ax.set_title(f"{name}: ECE {ece(probs, labels, bins):.3f}, mean top p {np.max(probs, axis=1).mean():.3f}")
    axes[0].set_ylabel("accuracy (grey line: share of faces per bin)")
    axes[0].legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
