#!/usr/bin/env python3
"""Does the device's face crop match the training geometry? Measured on FER2013 PrivateTest.

Each 48x48 face is upscaled 4x and padded, Haar (as on the device) finds the face again, and the
device's crop (`crop_face`, square around the box centre, side x scale) is classified by the
shipped int8 model. Reports the Haar box size relative to the FER2013 frame and the accuracy of the
re-crops at several scales against the original images.

    python scripts/bench_crop_geometry.py [--n 1500] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.config import DetectorConfig  # noqa: E402
from edge.vision.classifier import load_classifier  # noqa: E402
from edge.vision.detect import HaarFaceDetector, crop_face  # noqa: E402
from train.datasets import default_cache_dir, load_dataset  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "fer_edge_int8.tflite")
    args = parser.parse_args()
    split = load_dataset("fer2013", args.data, cache_dir=default_cache_dir()).splits["PrivateTest"]
    detector = HaarFaceDetector(DetectorConfig(analysis_width=4096, min_size=60, min_neighbors=3, scale_factor=1.05))
    classifier = load_classifier(args.model)
    scales = (0.9, 1.0, 1.1, 1.2)
    hits = {s: [] for s in scales}
    base, sides = [], []
    for image, label in zip(split.images[: args.n], split.labels[: args.n], strict=True):
        big = cv2.copyMakeBorder(cv2.resize(image, (192, 192), interpolation=cv2.INTER_CUBIC), 64, 64, 64, 64,
                                 cv2.BORDER_REPLICATE)
        boxes = detector.detect(big)
        if not boxes:
            continue
        sides.append(boxes[0][2] / 192)
        base.append(classifier.predict(image)[0].argmax() == label)
        for s in scales:
            hits[s].append(classifier.predict(crop_face(big, boxes[0], 48, s))[0].argmax() == label)
    print(f"faces found again by Haar: {len(base)} of {min(args.n, len(split))}")
    print(f"Haar box side / FER2013 frame side: median {np.median(sides):.3f}")
    print(f"accuracy on the original crops: {np.mean(base):.4f}")
    for s in scales:
        print(f"accuracy on device re-crops, crop_scale {s}: {np.mean(hits[s]):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
