#!/usr/bin/env python3
"""What the status page costs the frame loop: fps with no page, then with one client watching.

The daemon runs the looping sample clip as fast as it decodes, on one core, for --seconds each:
(a) page off; (b) page on with one client doing what the page does: /api/status and /api/alerts
every second, and the preview JPEG at the page's rate. Target: (b) loses < 5% of (a)'s fps.

    python scripts/bench_web.py [--seconds 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.config import parse_config  # noqa: E402
from edge.daemon import Daemon  # noqa: E402


def run(seconds: float, web: bool, tmp: Path) -> float:
    cfg = parse_config({
        "source": {"uri": str(ROOT / "edge/samples/astronaut.mp4"), "loop": True},
        "alerts": {"profile": "driver"},
        "web": {"enabled": web, "port": 0, "preview": web, "preview_fps": 4},
        "output": {"events": str(tmp / f"events_{web}.jsonl"), "every_n_frames": 1000, "stats_interval_s": 1000},
        "run": {"state_dir": str(tmp / "state")},
    })
    daemon = Daemon(cfg)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    while daemon._latest is None:
        time.sleep(0.05)
    stop = threading.Event()

    def client() -> None:
        url = f"http://127.0.0.1:{daemon.web.port}"
        next_json = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_json:
                for path in ("/api/status", "/api/alerts"):
                    urllib.request.urlopen(url + path, timeout=5).read()
                next_json = now + 1.0
            urllib.request.urlopen(url + "/preview.jpg", timeout=5).read()
            time.sleep(0.25)

    watcher = threading.Thread(target=client, daemon=True) if web else None
    time.sleep(2.0)  # warm-up
    if watcher:
        watcher.start()
    start_frames, start = daemon.frames, time.monotonic()
    time.sleep(seconds)
    fps = (daemon.frames - start_frames) / (time.monotonic() - start)
    stop.set()
    daemon.stop()
    thread.join(10)
    return fps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import tempfile

    import cv2

    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        base = run(args.seconds, False, Path(tmp))
        watched = run(args.seconds, True, Path(tmp))
    result = {"fps_page_off": round(base, 1), "fps_one_client": round(watched, 1),
              "cost_percent": round(100 * (base - watched) / base, 1)}
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k:16s} {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
