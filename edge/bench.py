"""Timing of the device pipeline on this machine: per frame (detect+track+classify) and per face."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import load_config


def print_result(result: dict[str, Any], as_json: bool, width: int = 28) -> None:
    """Benchmarks print JSON (for scripts) or aligned ``key value`` lines (for people)."""
    import json

    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:{width}s} {value}")


def _percentile_ms(samples: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(samples) * 1e3, q)), 3)


def run_bench(config_path: Path, frames: int = 300) -> dict[str, Any]:
    """Loop the configured (file/folder) source, timing each stage with the configured thread count."""
    from edge.capture.sources import open_source
    from edge.daemon import load_classifier_for
    from edge.vision.pipeline import Pipeline

    started = time.perf_counter()
    cfg = load_config(config_path)
    cfg = cfg.model_copy(update={"source": cfg.source.model_copy(update={"loop": True, "realtime": False})})
    classifier, card = load_classifier_for(cfg)
    pipeline = Pipeline(cfg, classifier, card)
    source = open_source(cfg.source)
    source.open()
    first = source.read()
    startup_s = time.perf_counter() - started
    decoded = [first]
    while len(decoded) < min(frames, 200):
        frame = source.read()
        if frame is None:
            break
        decoded.append(frame)
    source.close()
    per_frame, detect_frames = [], []
    faces_seen = 0
    for i in range(frames):
        frame = decoded[i % len(decoded)]
        frame.timestamp = i / cfg.source.fps
        t0 = time.perf_counter()
        result = pipeline.process(frame)
        dt = time.perf_counter() - t0
        per_frame.append(dt)
        if result.detected:
            detect_frames.append(dt)
        faces_seen += len(result.faces)
    crop = np.random.default_rng(0).integers(0, 256, classifier.input_size, dtype=np.uint8)
    for _ in range(50):
        classifier.predict(crop)
    face_times = []
    for _ in range(500):
        t0 = time.perf_counter()
        classifier.predict(crop)
        face_times.append(time.perf_counter() - t0)
    h, w = decoded[0].grey.shape
    return {
        "frames": frames,
        "frame_size": f"{w}x{h}",
        "detect_every_n_frames": cfg.detector.every_n_frames,
        "analysis_width": cfg.detector.analysis_width,
        "threads": cfg.classifier.threads,
        "backend": classifier.backend,
        "model": Path(cfg.classifier.model).name,
        "faces_per_frame": round(faces_seen / frames, 2),
        "frame_ms_median": _percentile_ms(per_frame, 50),
        "frame_ms_p95": _percentile_ms(per_frame, 95),
        "detect_frame_ms_median": _percentile_ms(detect_frames, 50) if detect_frames else None,
        "fps_equivalent": round(1.0 / float(np.mean(per_frame)), 1),
        "classifier_us_per_face_median": round(float(np.median(face_times)) * 1e6, 1),
        "model_load_to_first_frame_s": round(startup_s, 3),
        "cpu_count": os.cpu_count(),
    }
