#!/usr/bin/env python3
"""MQTT delivery benchmark on a loopback Mosquitto: raise -> broker -> subscriber latency, outbox drain rate.

Starts its own mosquitto on a free loopback port (Debian: apt install mosquitto).

1. Latency: N alerts raised one at a time (each waits for the previous to arrive); the time from
   ``publish_alert`` (which returns once the alert is on disk in the outbox) to a subscriber
   receiving it. Median and p99.
2. Throughput: M alerts queued while the broker is down, then the broker starts; alerts per second
   until the outbox is empty (one message in flight at a time, each waits for its PUBACK).

    python scripts/bench_mqtt.py [--alerts 300] [--backlog 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from broker import Broker, Recorder, free_port  # noqa: E402

from edge.bench import print_result  # noqa: E402
from edge.config import MqttConfig  # noqa: E402
from edge.delivery.mqtt import MqttPublisher  # noqa: E402
from edge.delivery.outbox import Outbox  # noqa: E402


def alert(n: int) -> dict:
    return {"event": "alert", "action": "raised", "id": f"bench-{n}", "rule": "perclos", "track": 1,
            "severity": "warning", "t": float(n), "time": "now", "values": {"perclos": 0.2}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=300)
    parser.add_argument("--backlog", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        port = free_port()
        broker = Broker(tmp / "broker", port=port).start()
        arrived: dict[str, float] = {}
        got = threading.Event()
        recorder = Recorder(port, "fer-edge/bench/alerts")
        recorder.client.on_message = lambda c, u, m: (arrived.__setitem__(json.loads(m.payload)["id"],
                                                                          time.perf_counter()), got.set())
        cfg = MqttConfig(enabled=True, port=port, device="bench", reconnect_min_s=1, reconnect_max_s=1)
        pub = MqttPublisher(cfg, Outbox(tmp / "outbox.sqlite", max_rows=100_000))
        pub.start()
        pub.connected.wait(10)
        time.sleep(0.5)
        latencies = []
        for n in range(args.alerts):
            got.clear()
            start = time.perf_counter()
            pub.publish_alert(alert(n))
            got.wait(5)
            latencies.append(arrived[f"bench-{n}"] - start)
        ms = np.array(latencies) * 1e3
        result["latency_ms"] = {"median": round(float(np.median(ms)), 2), "p99": round(float(np.percentile(ms, 99)), 2),
                                "n": len(ms)}
        broker.stop()
        time.sleep(1.5)
        base = args.alerts
        for n in range(base, base + args.backlog):
            pub.publish_alert(alert(n))
        depth = pub.outbox.depth()
        broker.start()
        start = time.perf_counter()
        pub.flush(600)
        elapsed = time.perf_counter() - start
        result["outbox_drain"] = {"queued_messages": depth, "seconds": round(elapsed, 2),
                                  "messages_per_s": round(depth / elapsed, 1),
                                  "note": "each alert is two messages (event + retained rule state)"}
        pub.stop()
        recorder.close()
        broker.stop()
    print_result(result, args.json, 14)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
