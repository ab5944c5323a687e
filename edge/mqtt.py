"""MQTT delivery (paho-mqtt 2): alerts through the durable outbox, availability, state, stats, acks.

Topics under ``<topic_prefix>/<device>``:

- ``availability``   retained ``online`` / ``offline`` (``offline`` is the last will, so a crash shows)
- ``alerts``         alert lifecycle events, QoS 1, not retained, in order, each with its ``id``
- ``state/<rule>``   retained ``{"state": "active"|"clear", ...}`` so a late dashboard sees the truth
- ``stats``          periodic fps, faces, uptime, model, outbox depth (QoS 0)
- ``ack``            publish an alert id here (plain text or ``{"id": ...}``) to acknowledge it

Delivery is at least once: an outbox row is deleted only after the broker's PUBACK, one message in
flight at a time so order holds across outages and restarts. Consumers can deduplicate by ``id``.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge.config import MqttConfig
from edge.errors import StartupError
from edge.outbox import Outbox
from edge.secrets import SecretError, read_secret

log = logging.getLogger(__name__)


MqttConfigError = SecretError


def read_password(cfg: MqttConfig) -> str | None:
    """The broker password from a file or a systemd credential, never from the config itself."""
    key = "mqtt.password_credential" if cfg.password_credential else "mqtt.password_file"
    return read_secret("MQTT password", cfg.password_file, cfg.password_credential, key=key)


class MqttPublisher:
    def __init__(self, cfg: MqttConfig, outbox: Outbox, on_ack: Callable[[str, str], None] | None = None,
                 device: str | None = None):
        self.cfg = cfg
        self.outbox = outbox
        self.device = device or cfg.device or socket.gethostname()
        self.base = f"{cfg.topic_prefix.rstrip('/')}/{self.device}"
        self.on_ack = on_ack
        self.connected = threading.Event()
        self.last_error: str | None = None
        self.delivered = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rules: set[str] = set()
        self._refused = False
        client_id = cfg.client_id or f"fer-edge-{self.device}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        self.client.will_set(f"{self.base}/availability", "offline", qos=1, retain=True)
        password = read_password(cfg)
        if cfg.username:
            self.client.username_pw_set(cfg.username, password)
        if cfg.tls:
            self._set_tls(cfg)
        self.client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def _set_tls(self, cfg: MqttConfig) -> None:
        files = {"mqtt.ca_file": cfg.ca_file, "mqtt.cert_file": cfg.cert_file, "mqtt.key_file": cfg.key_file}
        for key, path in files.items():
            if path is not None and not Path(path).is_file():
                raise StartupError(f"{key}: {path}: file not found")
        try:
            self.client.tls_set(ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                                keyfile=str(cfg.key_file) if cfg.key_file else None,
                                cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            named = ", ".join(f"{k} {p}" for k, p in files.items() if p is not None) or "the system CA store"
            raise StartupError(f"mqtt.tls: cannot load {named} ({exc})") from None

    # -- connection -------------------------------------------------------------------------------
    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._deliver_loop, name="mqtt-outbox", daemon=True)
        self._thread.start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = True
            self.last_error = f"broker {self.cfg.host}:{self.cfg.port} refused the connection: {reason_code}"
            log.error("%s (check mqtt.username and the password file); retrying", self.last_error)
            return
        self.last_error = None
        self._refused = False
        log.info("connected to MQTT broker %s:%d as %s", self.cfg.host, self.cfg.port, self.base)
        client.publish(f"{self.base}/availability", "online", qos=1, retain=True)
        client.subscribe(f"{self.base}/ack", qos=1)
        if self.cfg.ha_discovery:
            self._publish_discovery()
        self.connected.set()
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self._stop.is_set() and not self._refused:
            self.last_error = f"disconnected from {self.cfg.host}:{self.cfg.port}: {reason_code}"
            log.warning("%s; reconnecting", self.last_error)

    def _on_message(self, client, userdata, message) -> None:
        text = message.payload.decode("utf-8", "replace").strip()
        try:
            data = json.loads(text)
            alert_id = str(data["id"]) if isinstance(data, dict) else str(data)
            by = str(data.get("by", "mqtt")) if isinstance(data, dict) else "mqtt"
        except (json.JSONDecodeError, KeyError):
            alert_id, by = text, "mqtt"
        if alert_id and self.on_ack:
            self.on_ack(alert_id, by)

    # -- publishing -------------------------------------------------------------------------------
    def publish_alert(self, event: dict[str, Any]) -> None:
        """Queue an alert event durably (returns once it is on disk), plus its rule's retained state."""
        self.outbox.put(f"{self.base}/alerts", event)
        state = "clear" if event["action"] == "cleared" else "active"
        self.outbox.put(f"{self.base}/state/{event['rule']}",
                        {"state": state, "severity": event["severity"], "id": event["id"], "t": event["t"],
                         "time": event["time"], "track": event["track"]})
        if self.cfg.ha_discovery and event["rule"] not in self._rules:
            self._rules.add(event["rule"])
            if self.connected.is_set():
                self._publish_discovery()
        self._wake.set()

    def publish_stats(self, stats: dict[str, Any]) -> None:
        if self.connected.is_set():
            self.client.publish(f"{self.base}/stats", json.dumps({**stats, "outbox_depth": self.outbox.depth()}),
                                qos=0, retain=False)

    def known_rules(self, rules: list[str]) -> None:
        self._rules.update(rules)

    def _publish_discovery(self) -> None:
        device = {"identifiers": [f"fer-edge-{self.device}"], "name": f"fer-edge {self.device}",
                  "manufacturer": "fer-edge", "model": "expression monitor"}
        for rule in sorted(self._rules):
            unique = f"fer_edge_{self.device}_{rule}".replace("-", "_")
            config = {
                "name": rule.replace("_", " "), "unique_id": unique, "device_class": "problem",
                "state_topic": f"{self.base}/state/{rule}",
                "value_template": "{{ 'ON' if value_json.state == 'active' else 'OFF' }}",
                "json_attributes_topic": f"{self.base}/state/{rule}",
                "availability_topic": f"{self.base}/availability", "device": device,
            }
            self.client.publish(f"{self.cfg.ha_prefix}/binary_sensor/{unique}/config", json.dumps(config),
                                qos=1, retain=True)

    def _deliver_loop(self) -> None:
        while not self._stop.is_set():
            if not self.connected.is_set():
                self.connected.wait(0.5)
                continue
            items = self.outbox.peek(1)
            if not items:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            item = items[0]
            retain = "/state/" in item.topic
            info = self.client.publish(item.topic, json.dumps(item.payload, separators=(",", ":")), qos=1,
                                       retain=retain)
            # paho re-sends an unacknowledged QoS 1 message itself after a reconnect, so wait for this
            # one rather than publishing it again (which would duplicate it).
            while not info.is_published() and not self._stop.is_set():
                info.wait_for_publish(0.5) if info.rc == mqtt.MQTT_ERR_SUCCESS else time.sleep(0.5)
                if info.rc != mqtt.MQTT_ERR_SUCCESS and self.connected.is_set():
                    break  # it was never queued (not connected at the time): publish again
            if info.is_published():
                self.outbox.remove(item.seq)
                self.delivered += 1

    def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.outbox.depth() == 0:
                return True
            time.sleep(0.05)
        return self.outbox.depth() == 0

    def stop(self, flush_timeout: float = 2.0) -> None:
        """Deliver what can be delivered within ``flush_timeout``, say offline, disconnect cleanly."""
        if self.connected.is_set():
            self.flush(flush_timeout)
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(2.0)
        if self.connected.is_set():
            self.client.publish(f"{self.base}/availability", "offline", qos=1, retain=True).wait_for_publish(1.0)
        self.client.disconnect()
        self.client.loop_stop()
