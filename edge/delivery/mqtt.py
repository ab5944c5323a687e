"""MQTT delivery (paho-mqtt 2): alerts through the durable outbox, availability, state, stats, acks.

Topics under ``<topic_prefix>/<device>``:

- ``availability``   retained ``online`` / ``offline`` (``offline`` is the last will, so a crash shows).
                     A ``state/<rule>`` is live only while this says ``online``.
- ``alerts``         alert lifecycle events, QoS 1, not retained, in order, each with its ``id``
- ``state/<rule>``   retained ``{"state": "active"|"clear"|"unknown", "daemon": "online"|"offline", ...}``:
                     every rule is reconciled at start (``clear`` unless active), and a clean stop turns an
                     active rule into ``unknown`` with ``daemon: offline`` (nobody is watching any more)
- ``stats``          periodic fps, faces, uptime, model, outbox depth (QoS 0)
- ``ack``            publish an alert id here (plain text or ``{"id": ...}``) to acknowledge it

Delivery is at least once: an outbox row is deleted only after the broker's PUBACK, one message in
flight at a time so order holds across outages and restarts. Consumers can deduplicate by ``id``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge.config import MqttConfig
from edge.delivery.outbox import Outbox
from edge.delivery.secrets import SecretError, read_secret
from edge.errors import StartupError

log = logging.getLogger(__name__)


MqttConfigError = SecretError
FAILURE_LOG_INTERVAL_S = 60.0  # the same connection failure is logged at most this often


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
        self._active: dict[str, str] = {}  # rule -> id of this run's active alert (what state/<rule> says)
        self._refused = False
        self._fail_reason: str | None = None
        self._fail_logged = float("-inf")
        self._fail_count = 0
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
        self.client.on_connect_fail = self._on_connect_fail
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

    def _report_failure(self, reason: str, level: int = logging.WARNING) -> None:
        """Log a connection failure with its reason: at once when the reason changes, else once a minute."""
        self.last_error = reason
        self._fail_count += 1
        now = time.monotonic()
        if reason != self._fail_reason or now - self._fail_logged >= FAILURE_LOG_INTERVAL_S:
            again = f" ({self._fail_count} attempts so far)" if self._fail_count > 1 else ""
            log.log(level, "%s; retrying%s", reason, again)
            self._fail_reason, self._fail_logged = reason, now

    def _on_connect_fail(self, client, userdata) -> None:
        # paho calls this inside its `except OSError` block: the exception is the reason.
        exc = sys.exc_info()[1]
        why = f"{exc.strerror or exc}" if isinstance(exc, OSError) else "unknown error"
        if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
            why = f"[Errno {exc.errno}] {exc.strerror}"
        self._report_failure(f"cannot connect to MQTT broker {self.cfg.host}:{self.cfg.port}: {why}")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = True
            self._report_failure(f"broker {self.cfg.host}:{self.cfg.port} refused the connection: {reason_code} "
                                 "(check mqtt.username and the password file)", logging.ERROR)
            return
        self.last_error = None
        self._refused = False
        self._fail_reason, self._fail_count = None, 0
        log.info("connected to MQTT broker %s:%d as %s", self.cfg.host, self.cfg.port, self.base)
        client.publish(f"{self.base}/availability", "online", qos=1, retain=True)
        client.subscribe([(f"{self.base}/ack", 1), (f"{self.base}/state/+", 1)])
        if self.cfg.ha_discovery:
            self._publish_discovery()
        self.connected.set()
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self._stop.is_set() and not self._refused:
            self._report_failure(f"disconnected from {self.cfg.host}:{self.cfg.port}: {reason_code}")

    def _on_message(self, client, userdata, message) -> None:
        if message.topic.startswith(f"{self.base}/state/"):
            self._on_retained_state(message)
            return
        text = message.payload.decode("utf-8", "replace").strip()
        try:
            data = json.loads(text)
            alert_id = str(data["id"]) if isinstance(data, dict) else str(data)
            by = str(data.get("by", "mqtt")) if isinstance(data, dict) else "mqtt"
        except (json.JSONDecodeError, KeyError):
            alert_id, by = text, "mqtt"
        if alert_id and self.on_ack:
            self.on_ack(alert_id, by)

    def _on_retained_state(self, message) -> None:
        """A retained ``active`` left by an earlier run (a crash, another profile) for a rule that is not
        active now is cleared, so a dashboard does not show a stale alarm as live."""
        if not message.retain:
            return  # our own publications, echoed back
        rule = message.topic.rsplit("/", 1)[-1]
        try:
            state = json.loads(message.payload).get("state")
        except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
            state = None
        topic = f"{self.base}/state/{rule}"
        if state == "clear" or rule in self._active or topic in self.outbox.topics(topic):
            return
        log.info("retained %s says %r from an earlier run: clearing it", topic, state)
        self.outbox.put(topic, self._state_payload("clear", reason="reconciled at start"))
        self._wake.set()

    # -- publishing -------------------------------------------------------------------------------
    def publish_alert(self, event: dict[str, Any]) -> None:
        """Queue an alert event durably (returns once it is on disk), plus its rule's retained state."""
        self.outbox.put(f"{self.base}/alerts", event)
        state = "clear" if event["action"] == "cleared" else "active"
        if state == "active":
            self._active[event["rule"]] = event["id"]
        elif self._active.get(event["rule"]) == event["id"]:
            del self._active[event["rule"]]
        self.outbox.put(f"{self.base}/state/{event['rule']}",
                        self._state_payload(state, severity=event["severity"], id=event["id"], t=event["t"],
                                            time=event["time"], track=event["track"]))
        if self.cfg.ha_discovery and event["rule"] not in self._rules:
            self._rules.add(event["rule"])
            if self.connected.is_set():
                self._publish_discovery()
        self._wake.set()

    @staticmethod
    def _state_payload(state: str, daemon: str = "online", **fields: Any) -> dict[str, Any]:
        base = {"state": state, "severity": None, "id": None, "t": None, "track": None,
                "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")}
        return {**base, **fields, "daemon": daemon}

    def seed_active(self, active: dict[str, str]) -> None:
        """Alerts already active when this publisher is created (a config reload): rule -> id."""
        self._active.update(active)

    def reconcile(self, rules: list[str]) -> None:
        """At start: every known rule, and every rule still queued from an earlier run, gets its current
        retained state (``clear``: a new run has no active alert), queued behind any backlog."""
        prefix = f"{self.base}/state/"
        queued = {topic.removeprefix(prefix) for topic in self.outbox.topics(prefix)}
        for rule in sorted(set(rules) | queued):
            if rule not in self._active:
                self.outbox.put(prefix + rule, self._state_payload("clear", reason="daemon started"))
        self._wake.set()

    def mark_offline(self) -> None:
        """On a clean stop: an active rule's retained state becomes ``unknown``, daemon ``offline``."""
        for rule, alert_id in sorted(self._active.items()):
            self.outbox.put(f"{self.base}/state/{rule}",
                            self._state_payload("unknown", daemon="offline", id=alert_id, last_state="active",
                                                reason="daemon stopped"))
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
