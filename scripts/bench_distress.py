#!/usr/bin/env python3
"""The distress signal on real faces: its distribution per true FER2013 class, under several definitions.

Runs the shipped int8 expression model (the edge runtime) on one FER2013 split and, for each true class,
prints the distress value's quartiles and how often it reaches the patient rule's raise and clear levels,
for each candidate definition:

- ``sum``: angry + disgust + fear + sad (the definition before calibration was checked);
- ``top``: the same sum, but 0 unless the top class is a distress class;
- ``top_weighted``: ``top`` with each class weighted by its precision on the split (how often a face the
  model calls that class really is it), so the classes the model confuses with calm faces count less.

Choose on PublicTest; report on PrivateTest. ``--weights-from PublicTest`` takes the precision weights
from the selection split when reporting on another.

    python scripts/bench_distress.py --split PublicTest [--temperature 0.55] [--json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.bench import print_result  # noqa: E402
from edge.config import AppConfig  # noqa: E402
from edge.contract import DISTRESS_LABELS  # noqa: E402
from edge.daemon import load_classifier_for  # noqa: E402
from edge.monitor.signals import distress_score  # noqa: E402
from train.probability_metrics import softmax  # noqa: E402

DISTRESS = DISTRESS_LABELS


def predict(split: str, data: Path, temperature: float | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from train.datasets import load_fer2013_csv

    fer = load_fer2013_csv(data / "fer2013" / "fer2013.csv.gz").split(split)
    classifier, card = load_classifier_for(AppConfig())
    probs = np.concatenate([classifier.predict(fer.images[i : i + 1]) for i in range(len(fer))])
    if temperature:
        probs = softmax(np.log(np.clip(probs, 1e-4, 1.0)) / temperature)
    return probs, fer.labels, list(card.labels)


def precision_weights(probs: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, float]:
    pred = probs.argmax(1)
    out = {}
    for c in DISTRESS:
        k = names.index(c)
        called = pred == k
        out[c] = round(float((labels[called] == k).mean()) if called.any() else 0.0, 3)
    return out


def table(probs: np.ndarray, labels: np.ndarray, names: list[str], weights: dict[str, float],
          raise_at: float, clear_at: float) -> dict[str, Any]:
    defs = {"sum": (dict.fromkeys(DISTRESS, 1.0), False), "top": (dict.fromkeys(DISTRESS, 1.0), True),
            "top_weighted": (weights, True)}
    result: dict[str, Any] = {}
    for name, (w, top) in defs.items():
        values = np.array([distress_score(dict(zip(names, map(float, p), strict=True)), w, top) for p in probs])
        rows = {}
        for k, label in enumerate(names):
            v = values[labels == k]
            rows[label] = {"n": int(v.size), "q25_50_75": [round(float(q), 3) for q in np.percentile(v, (25, 50, 75))],
                           f">={raise_at}": round(float((v >= raise_at).mean()), 4),
                           f">={clear_at}": round(float((v >= clear_at).mean()), 4)}
        distress = np.isin(labels, [names.index(c) for c in DISTRESS])
        rows["all distress classes: recall"] = round(float((values[distress] >= raise_at).mean()), 4)
        rows["happy+surprise+neutral: false"] = round(float((values[~distress] >= raise_at).mean()), 4)
        result[name] = rows
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("PublicTest", "PrivateTest"), default="PublicTest")
    parser.add_argument("--weights-from", choices=("PublicTest", "PrivateTest"), default="PublicTest")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--temperature", type=float, default=None,
                        help="divide the logits by this (for a model shipped without a fitted temperature)")
    parser.add_argument("--raise-at", type=float, default=None, help="default: the patient rule's raise_at")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (args.data / "fer2013" / "fer2013.csv.gz").is_file():
        print(f"{args.data}: no fer2013/fer2013.csv.gz (use --data)", file=sys.stderr)
        return 2
    rule = AppConfig(alerts={"profile": "patient"}).alerts.effective_rules()["distress"]
    raise_at = args.raise_at if args.raise_at is not None else rule.raise_at
    probs, labels, names = predict(args.split, args.data, args.temperature)
    wprobs, wlabels, _ = (probs, labels, names) if args.weights_from == args.split \
        else predict(args.weights_from, args.data, args.temperature)
    weights = precision_weights(wprobs, wlabels, names)
    result = {"split": args.split, "temperature": args.temperature, "raise_at": raise_at, "clear_at": rule.clear_at,
              "precision_weights": weights, "mean_top_prob": round(float(probs.max(1).mean()), 3),
              **table(probs, labels, names, weights, raise_at, rule.clear_at)}
    print_result(result, args.json, 18)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
