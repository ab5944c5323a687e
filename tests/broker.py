"""A real Mosquitto broker on loopback for tests, plus a recording subscriber."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def require_mosquitto() -> str:
    if MOSQUITTO is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed (scripts/test.sh installs it with apt)")
        pytest.skip("mosquitto is not installed (apt install mosquitto)")
    return MOSQUITTO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, workdir: Path, port: int | None = None, extra: str = "", anonymous: bool = True):
        self.binary = require_mosquitto()
        self.workdir = workdir
        self.port = port or free_port()
        self.extra = extra
        self.anonymous = anonymous
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 10.0) -> Broker:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if self.anonymous else 'false'}\n"
            f"persistence true\npersistence_location {self.workdir}/\nautosave_interval 1\n"
            # As root, mosquitto would switch to the 'mosquitto' user, which cannot write in pytest's
            # private tmp folders; stay as the invoking user so the persistence file (sessions) is saved.
            f"{'user root' if os.geteuid() == 0 else ''}\n"
            f"{self.extra}\n"
        )
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.workdir / "mosquitto.log", "a"))  # noqa: SIM115
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.proc.wait(10)
        self.proc = None


class Recorder:
    """Subscribes to a topic filter with a persistent QoS 1 session; records every message."""

    def __init__(self, port: int, topic: str = "#", client_id: str = "recorder", tls: dict | None = None,
                 auth: tuple[str, str] | None = None):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.redelivered = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        if tls:
            self.client.tls_set(**tls)
        if auth:
            self.client.username_pw_set(*auth)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            if msg.dup:
                # The broker re-sending to *this subscriber* after its own restart (its session was saved
                # before our PUBACKs). A duplicate from the publisher would arrive as a new message.
                self.redelivered += 1
                return
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def payloads(self, suffix: str) -> list:
        with self._lock:
            out = []
            for topic, payload, _ in self.messages:
                if topic.endswith(suffix):
                    try:
                        out.append(json.loads(payload))
                    except json.JSONDecodeError:
                        out.append(payload.decode())
            return out

    def wait_for(self, predicate, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return predicate(self)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
