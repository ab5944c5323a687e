#!/usr/bin/env python3
"""Soak benchmark: the daemon over many frames of the looping sample clip; resident memory over time.

Runs `fer-edge run` (driver profile, eye state on, JSON events to a file) for --frames frames and
samples the process's VmRSS from /proc every second. Memory growth is measured from the end of
warm-up (the first 10% of frames) to the end. Target: < 5 MB over 100,000 frames.

    python scripts/bench_soak.py [--frames 100000] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from edge.bench import print_result  # noqa: E402


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        events = Path(tmp) / "events.jsonl"
        config = Path(tmp) / "soak.yaml"
        config.write_text(
            f"source:\n  uri: {ROOT / 'edge/samples/astronaut.mp4'}\n  loop: true\n"
            f"classifier:\n  model: {ROOT / 'models/fer_edge_int8.tflite'}\n"
            f"eyes:\n  model: {ROOT / 'models/eye_state_int8.tflite'}\n"
            f"alerts:\n  profile: driver\n"
            f"output:\n  events: {events}\n  every_n_frames: 1000\n  stats_interval_s: 5\n"
            f"run:\n  max_frames: {args.frames}\n  state_dir: {tmp}/state\n"
        )
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples: list[tuple[float, int, float]] = []  # (seconds, frames, rss)
        while proc.poll() is None:
            time.sleep(1.0)
            rss = rss_mb(proc.pid)
            frames = 0
            if events.exists():
                for line in reversed(events.read_text().splitlines()[-20:]):
                    event = json.loads(line)
                    if event["event"] == "stats":
                        frames = event["frames"]
                        break
            if rss is not None:
                samples.append((time.monotonic() - start, frames, rss))
        stop = json.loads(events.read_text().splitlines()[-1])
    warm = [s for s in samples if s[1] >= args.frames * 0.1]
    base = warm[0][2] if warm else samples[0][2]
    result = {
        "frames": stop["frames"], "seconds": round(time.monotonic() - start, 1), "fps": stop["fps"],
        "rss_start_mb": round(samples[0][2], 1), "rss_after_warmup_mb": round(base, 1),
        "rss_end_mb": round(samples[-1][2], 1), "rss_max_mb": round(max(s[2] for s in samples), 1),
        "rss_growth_after_warmup_mb": round(samples[-1][2] - base, 2),
        "frame_errors": stop["frame_errors"], "exit_code": proc.returncode,
    }
    print_result(result, args.json, 28)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
