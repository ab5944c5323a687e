"""The local status page in a real headless browser (Debian's chromium via Playwright), and its API."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from broker import Broker, Recorder
from clips import render_drowsy_clip

from edge.config import ConfigError, parse_config
from edge.daemon import Daemon

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    # Eyes shut for 8 s: the microsleep alert stays active ~7 s, ample time for the page to show it and
    # for the click to land before the face leaves and the alert clears.
    return render_drowsy_clip(tmp_path_factory.mktemp("clip") / "drowsy.mp4", closed_s=8.0, gone_s=2.0)


def _green_box_pixels(jpeg: bytes) -> int:
    """Pixels of the annotation green (0, 200, 0) in the preview: the face rectangle and its label."""
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    b, g, r = (image[..., i].astype(int) for i in range(3))
    return int(((g > 150) & (r < 80) & (b < 80)).sum())


class RunningDaemon:
    def __init__(self, cfg):
        self.daemon = Daemon(cfg)
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while (self.daemon.web is None or self.daemon._latest is None) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.daemon.web.port}"

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def close(self) -> None:
        self.daemon.stop()
        self.thread.join(10)


def web_config(clip: Path, tmp_path: Path, **web) -> dict:
    # The rendered face smiles (happy ~0.9) with painted lids at 0.96-0.996 closed, right at the smile gate's
    # 0.99: this test is about the page and the acknowledgement, so the gate is off and the alert stays up.
    return {"source": {"uri": str(clip), "realtime": True, "loop": True}, "alerts": {"profile": "driver"},
            "eyes": {"smile_at": None},
            "web": {"enabled": True, "port": 0, **web}, "output": {"events": str(tmp_path / "events.jsonl")},
            "run": {"state_dir": str(tmp_path / "state")}}


def test_page_shows_face_and_alert_and_acknowledges_through_mqtt(clip: Path, tmp_path: Path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/test.sh installs it)")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    broker = Broker(tmp_path / "broker").start()
    recorder = Recorder(broker.port, "fer-edge/#")
    cfg = web_config(clip, tmp_path, preview=True)
    cfg["mqtt"] = {"enabled": True, "port": broker.port, "device": "cam1", "reconnect_min_s": 1, "reconnect_max_s": 1}
    running = RunningDaemon(parse_config(cfg))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 412, "height": 1000})  # a phone
            page.goto(running.url + "/")
            label = page.wait_for_selector(".face .label", timeout=15_000).inner_text()
            assert label in (*running.daemon.card.labels, "uncertain")
            # The watched face's eye state (open / closed / unknown, with the reason) is on the page.
            page.wait_for_function("[...document.querySelectorAll('.face td.muted')].some(td => td.textContent === "
                                   "'eyes' && /^(open|closed|unknown)/.test(td.nextElementSibling.textContent))",
                                   timeout=10_000)
            page.wait_for_function("document.getElementById('preview-img').naturalWidth > 0", timeout=10_000)
            assert _green_box_pixels(running.get("/preview.jpg")[1]) > 100  # the face box is drawn
            alert = page.wait_for_selector(".alert[data-id]", timeout=20_000)  # microsleep, 5.5 s into the clip
            alert_id = alert.get_attribute("data-id")
            rule = alert.inner_text()
            page.click(f"button.ack[data-id='{alert_id}']")
            deadline = time.monotonic() + 10
            acked = False
            while time.monotonic() < deadline and not acked:
                _, body, _ = running.get("/api/alerts")
                data = json.loads(body)
                acked = any(a["id"] == alert_id and a["acknowledged"] for a in data["active"]) or any(
                    e["id"] == alert_id and e["action"] == "acknowledged" for e in data["recent"])
                time.sleep(0.1)
            assert acked, data
            assert recorder.wait_for(lambda r: any(
                m["id"] == alert_id and m["action"] == "acknowledged" and m["by"] == "web"
                for m in r.payloads("/cam1/alerts")), 10)
            assert "microsleep" in rule or "face_absent" in rule
            browser.close()
    finally:
        running.close()
        recorder.close()
        broker.stop()


def test_api_metrics_and_preview_off_by_default(clip: Path, tmp_path: Path):
    running = RunningDaemon(parse_config(web_config(clip, tmp_path)))
    try:
        status, body, _ = running.get("/api/status")
        data = json.loads(body)
        assert status == 200 and data["health"]["model"] == "fer_edge" and data["preview"] is False
        status, body, headers = running.get("/metrics")
        text = body.decode()
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert "# TYPE fer_edge_fps gauge" in text and 'fer_edge_active_alerts{severity="critical"}' in text
        assert running.get("/preview.jpg")[0] == 404  # privacy: no preview unless enabled
        assert running.get("/nope")[0] == 404
        status, body, _ = running.get("/api/alerts")
        assert status == 200 and set(json.loads(body)) == {"active", "recent"}
        request = urllib.request.Request(running.url + "/api/alerts/unknown-1/ack", method="POST",
                                         headers={"Origin": running.url})  # what the page's fetch sends
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
        assert info.value.code == 404
    finally:
        running.close()


def test_token_required_beyond_loopback(clip: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="is not loopback: set token_file or token_credential"):
        parse_config({"web": {"enabled": True, "host": "0.0.0.0"}})
    token = "a-long-random-token-0123456789"
    (tmp_path / "token").write_text(token + "\n")
    running = RunningDaemon(parse_config(web_config(clip, tmp_path, host="0.0.0.0", token_file=str(tmp_path / "token"),
                                                    preview=True)))
    try:
        assert running.get("/api/status")[0] == 401
        assert running.get("/")[0] == 401
        assert running.get("/preview.jpg")[0] == 401
        assert running.get("/api/status", {"Authorization": "Bearer wrong-token-0123456789"})[0] == 401
        assert running.get("/api/status", {"Authorization": f"Bearer {token}"})[0] == 200
        status, _, headers = running.get(f"/?token={token}")
        assert status == 200 and "HttpOnly" in headers["Set-Cookie"]
        cookie = headers["Set-Cookie"].split(";")[0]
        assert running.get("/api/alerts", {"Cookie": cookie})[0] == 200
        status, body, headers = running.get("/preview.jpg", {"Cookie": cookie})
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    finally:
        running.close()


class FakeSnapshot:
    """Anything with the four read methods will do: the page has no other way into the monitor."""

    def web_status(self) -> dict:
        return {"state": "running", "faces": []}

    def web_alerts(self) -> dict:
        return {"active": [{"id": "a1", "rule": "microsleep", "severity": "critical"}], "recent": []}

    def stats(self) -> dict:
        return {"frames": 7}

    def preview_jpeg(self) -> bytes | None:
        return None


def test_status_page_reads_a_snapshot_and_acknowledges_through_the_callback_it_is_handed():
    from edge.config import WebConfig
    from edge.delivery.web import StatusServer

    acks: list[tuple[str, str]] = []
    server = StatusServer(FakeSnapshot(), lambda alert_id, by: acks.append((alert_id, by)),
                          WebConfig(enabled=True, port=0))
    server.start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        with urllib.request.urlopen(url + "/api/status", timeout=5) as r:
            assert json.loads(r.read()) == {"state": "running", "faces": []}
        with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
            assert "fer_edge_frames_total 7.0" in r.read().decode()

        def post(alert_id: str) -> int:
            request = urllib.request.Request(f"{url}/api/alerts/{alert_id}/ack", data=b"", method="POST",
                                             headers={"Origin": url})
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code

        assert post("nope") == 404
        assert post("a1") == 202
        assert acks == [("a1", "web")]
    finally:
        server.stop()
