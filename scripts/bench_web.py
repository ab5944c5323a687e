#!/usr/bin/env python3
"""What the status page costs the frame loop: fps with no page, with one client watching, and under abuse.

The daemon runs the looping sample clip as fast as it decodes, on one core, for --seconds each:
(a) page off; (b) page on with one client doing what the page does: /api/status and /api/alerts
every second, and the preview JPEG at the page's rate; (c) page on, --malformed requests (1,000 by
default: garbage, oversized lines and headers, bad versions, non-ASCII tokens and Host names, resets
mid-request) sent by another process on another core. (c) alternates 1 s windows with and without the
requests in one daemon and compares the median fps of each kind, so the load other programs put on a
shared machine cancels out. Targets: (b) and (c) lose < 5% of fps, and after (c) the daemon still
serves /api/status and its frame count still grows.

    python scripts/bench_web.py [--seconds 20] [--malformed 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import struct
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.config import parse_config  # noqa: E402
from edge.daemon import Daemon  # noqa: E402

MALFORMED = [b"\x00\xff\xfe garbage\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
             b"BREW /pot HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
             b"GET / HTTP/1.1\r\nX-Long: " + b"b" * 70000 + b"\r\n\r\n",
             b"GET / HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(200)) + b"\r\n",
             "GET /api/status?token=\u00e9 HTTP/1.1\r\nHost: \u00e9\r\n\r\n".encode(),
             b"POST /api/alerts/%00/ack HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
             b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"]  # the last one is cut off by a reset


def send_malformed(port: int, request: bytes, reset: bool) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(request)
            if reset:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            while s.recv(65536):
                pass
        except OSError:
            pass  # the server may reset an oversized request


def abuse(port: int, count: int, rate: float, on, sent) -> None:
    """Send ``count`` malformed requests at ``rate`` per second, only while ``on`` is set."""
    cores = sorted(os.sched_getaffinity(0) | set(range(os.cpu_count() or 1)))
    if len(cores) > 1:
        os.sched_setaffinity(0, {cores[-1]})
    while sent.value < count:
        if not on.wait(0.1):
            continue
        request = MALFORMED[sent.value % len(MALFORMED)]
        send_malformed(port, request, reset=request is MALFORMED[-1])
        sent.value += 1
        time.sleep(1.0 / rate)


def run_malformed(seconds: float, tmp: Path, count: int, window: float = 1.0) -> dict:
    """One daemon with the page on; 1 s windows alternate quiet / under malformed requests."""
    daemon, thread = start_daemon(True, tmp)
    on, sent = multiprocessing.Event(), multiprocessing.Value("i", 0)
    proc = multiprocessing.Process(target=abuse, args=(daemon.web.port, count, count / (seconds / 2), on, sent),
                                   daemon=True)
    proc.start()
    time.sleep(2.0)  # warm-up
    quiet: list[float] = []
    abused: list[float] = []
    i = 0
    while sent.value < count and i < 10 * seconds / window:
        if i % 2:
            on.set()
        else:
            on.clear()
        frames, began = daemon.frames, time.monotonic()
        time.sleep(window)
        (abused if i % 2 else quiet).append((daemon.frames - frames) / (time.monotonic() - began))
        i += 1
    on.clear()
    proc.join(5)
    frames = daemon.frames
    time.sleep(0.5)
    body = urllib.request.urlopen(f"http://127.0.0.1:{daemon.web.port}/api/status", timeout=5).read()
    alive = thread.is_alive() and daemon.frames > frames and b'"health"' in body
    daemon.stop()
    thread.join(10)
    return {"fps_quiet": statistics.median(quiet), "fps_malformed": statistics.median(abused),
            "sent": sent.value, "quiet": quiet, "abused": abused, "alive_after": alive}


def start_daemon(web: bool, tmp: Path):
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
    return daemon, thread


def run(seconds: float, web: bool, tmp: Path) -> float:
    daemon, thread = start_daemon(web, tmp)
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
    parser.add_argument("--malformed", type=int, default=1000, help="malformed requests in run (c); 0 skips it")
    parser.add_argument("--only-malformed", action="store_true", help="skip runs (a) and (b)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import tempfile

    import cv2

    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        base = 0.0 if args.only_malformed else run(args.seconds, False, Path(tmp))
        watched = 0.0 if args.only_malformed else run(args.seconds, True, Path(tmp))
        abused = run_malformed(args.seconds, Path(tmp), args.malformed) if args.malformed else None
    result = {} if args.only_malformed else {"fps_page_off": round(base, 1), "fps_one_client": round(watched, 1),
                                             "cost_percent": round(100 * (base - watched) / base, 1)}
    if abused is not None:
        result.update({"malformed_requests": abused["sent"], "fps_quiet_windows": round(abused["fps_quiet"], 1),
                       "fps_malformed_windows": round(abused["fps_malformed"], 1),
                       "malformed_cost_percent": round(100 * (1 - abused["fps_malformed"] / abused["fps_quiet"]), 1),
                       "alive_after_malformed": abused["alive_after"],
                       "fps_per_window": {"quiet": [round(v) for v in abused["quiet"]],
                                          "malformed": [round(v) for v in abused["abused"]]}})
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k:16s} {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
