"""The real daemon process with MQTT: killed mid-outage, SIGTERM during an outage, acks from MQTT."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from broker import Broker, Recorder, free_port
from clips import render_drowsy_clip
from events import wait_for_event

from edge.delivery.outbox import Outbox

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    # Eyes shut 6 s: the microsleep alert stays active ~5 s, ample time for an acknowledgement to arrive.
    return render_drowsy_clip(tmp_path_factory.mktemp("clip") / "drowsy.mp4", closed_s=6.0, gone_s=4.0)


def write_config(path: Path, clip: Path, port: int, state: Path, events: Path, **run) -> Path:
    lines = [
        "source:", f"  uri: {clip}", "  realtime: true",
        "alerts:", "  profile: driver",
        "mqtt:", "  enabled: true", f"  port: {port}", "  device: cam1", "  keepalive: 5",
        "  reconnect_min_s: 1", "  reconnect_max_s: 1",
        "output:", f"  events: {events}", "  every_n_frames: 15",
        "run:", f"  state_dir: {state}", *[f"  {k}: {v}" for k, v in run.items()],
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def start_daemon(config: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def alert_events(events: Path) -> list[dict]:
    return [e for e in map(json.loads, events.read_text().splitlines()) if e["event"] == "alert"]


def test_killed_mid_outage_then_restarted_delivers_everything_in_order(tmp_path: Path, clip: Path):
    port = free_port()
    state, events = tmp_path / "state", tmp_path / "events.jsonl"
    daemon = start_daemon(write_config(tmp_path / "c.yaml", clip, port, state, events))
    try:
        wait_for_event(events, lambda e: e["event"] == "alert" and e["action"] == "raised")
        time.sleep(0.3)
    finally:
        daemon.kill()  # no clean shutdown, broker never reachable
        daemon.wait()
    raised_before = alert_events(events)
    queued = Outbox(state / "outbox.sqlite")
    assert queued.depth() >= 2 * len(raised_before)
    queued.close()

    broker = Broker(tmp_path / "broker", port=port).start()
    recorder = Recorder(port, "fer-edge/#")
    time.sleep(0.5)
    events2 = tmp_path / "events2.jsonl"
    daemon = start_daemon(write_config(tmp_path / "c2.yaml", ROOT / "edge" / "samples" / "astronaut.mp4", port, state,
                                       events2, max_frames=60))
    try:
        assert daemon.wait(30) == 0, daemon.stderr.read()
        delivered = recorder.payloads("/cam1/alerts")
        ids = [p["id"] for p in delivered]
        expected = [e["id"] + ":" + e["action"] for e in raised_before]
        got = [p["id"] + ":" + p["action"] for p in delivered]
        assert got[: len(expected)] == expected and len(got) <= len(expected) + 1, (got, expected)
        assert len(set(zip(ids, [p["action"] for p in delivered], strict=True))) == len(delivered)  # no duplicates
        assert delivered[0]["t"] == raised_before[0]["t"]  # original input time kept
        assert Outbox(state / "outbox.sqlite").depth() == 0
    finally:
        daemon.kill()
        recorder.close()
        broker.stop()


def test_sigterm_during_an_outage_exits_fast_and_keeps_the_queue(tmp_path: Path, clip: Path):
    state, events = tmp_path / "state", tmp_path / "events.jsonl"
    daemon = start_daemon(write_config(tmp_path / "c.yaml", clip, free_port(), state, events, shutdown_flush_s=3))
    wait_for_event(events, lambda e: e["event"] == "alert" and e["action"] == "raised")
    start = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    code = daemon.wait(10)
    elapsed = time.monotonic() - start
    assert code == 0 and elapsed < 5.0, (code, elapsed)
    stop = json.loads(events.read_text().splitlines()[-1])
    assert stop["event"] == "stop" and stop["outbox_depth"] >= 2
    assert Outbox(state / "outbox.sqlite").depth() == stop["outbox_depth"]


def test_acknowledgement_over_mqtt_reaches_the_rule_engine(tmp_path: Path, clip: Path):
    broker = Broker(tmp_path / "broker").start()
    recorder = Recorder(broker.port, "fer-edge/#")
    state, events = tmp_path / "state", tmp_path / "events.jsonl"
    daemon = start_daemon(write_config(tmp_path / "c.yaml", clip, broker.port, state, events))
    try:
        raised = wait_for_event(events, lambda e: e["event"] == "alert" and e["action"] == "raised")
        recorder.client.publish("fer-edge/cam1/ack", json.dumps({"id": raised["id"], "by": "nurse"}), qos=1)
        acked = wait_for_event(events, lambda e: e.get("action") == "acknowledged", timeout=10)
        assert acked["id"] == raised["id"] and acked["by"] == "nurse"
        assert recorder.wait_for(lambda r: any(p["action"] == "acknowledged" for p in r.payloads("/cam1/alerts")))
        assert daemon.wait(30) == 0
        assert recorder.wait_for(lambda r: r.payloads("/cam1/availability")[-1:] == ["offline"], 5)  # clean stop
    finally:
        daemon.kill()
        recorder.close()
        broker.stop()
