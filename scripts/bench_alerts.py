#!/usr/bin/env python3
"""Alert benchmarks: false alerts on calm input, and alert latency on a rendered drowsy clip.

1. False alerts: the bundled sample clip (a calm, smiling face that briefly leaves the frame) looped
   for 10 minutes of input time through the full pipeline, under both profiles. Target: zero warnings
   and criticals; the script reports alerts per hour by severity.
2. Latency: a clip rendered from the astronaut photo (eyes open 4 s, painted shut 2 s, face gone 5 s),
   driver profile. Target: each alert no later than its onset + 0.5 s of input time.

    python scripts/bench_alerts.py [--minutes 10] [--json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from clips import render_drowsy_clip  # noqa: E402

from edge.bench import print_result  # noqa: E402
from edge.config import AppConfig  # noqa: E402
from edge.replay import replay  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict = {}
    sample = ROOT / "edge" / "samples" / "astronaut.mp4"
    for profile in ("driver", "patient"):
        start = time.perf_counter()
        summary = replay(sample, profile, AppConfig(), loop_for_s=args.minutes * 60)
        result[f"calm_{profile}"] = {
            "input_minutes": round(summary["duration_s"] / 60, 2), "frames": summary["frames"],
            "alerts_per_hour": summary["alerts_per_hour"],
            "warnings_and_criticals": sum(e["severity"] in ("warning", "critical") for e in summary["alerts"]
                                          if e["action"] == "raised"),
            "replay_speed_x_realtime": round(summary["duration_s"] / (time.perf_counter() - start), 1),
        }
    with tempfile.TemporaryDirectory() as tmp:
        open_s, closed_s = 4.0, 2.0
        clip = render_drowsy_clip(Path(tmp) / "drowsy.mp4", open_s=open_s, closed_s=closed_s)
        summary = replay(clip, "driver", AppConfig())
    raised = {e["rule"]: e["t"] for e in summary["alerts"] if e["action"] == "raised"}
    expected = {"microsleep": open_s + 1.5, "face_absent": open_s + closed_s + 3.0}
    result["latency_driver"] = {
        rule: {"expected_t": expected[rule], "raised_t": raised.get(rule),
               "latency_s": None if rule not in raised else round(raised[rule] - expected[rule], 3)}
        for rule in expected
    }
    result["latency_driver"]["sequence"] = [f"{e['action']} {e['rule']} {e['severity']} @{e['t']}"
                                            for e in summary["alerts"]]
    print_result(result, args.json, 18)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
