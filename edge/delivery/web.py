"""Local status page for installers and caregivers: standard library only, no CDN assets.

``GET /`` the page (phone-sized, polls the JSON endpoints) · ``GET /api/status`` health, faces and
signals · ``GET /api/alerts`` active and recent alerts · ``POST /api/alerts/<id>/ack`` acknowledge
(the same path as MQTT acks) · ``GET /metrics`` Prometheus text · ``GET /preview.jpg`` the annotated
frame, only when ``web.preview`` is on (404 otherwise).

Bound to 127.0.0.1 by default. Bound anywhere but loopback (127.0.0.0/8, ::1, localhost) it requires the
token: ``Authorization: Bearer``, or ``?token=`` once on the page URL (then an HttpOnly cookie carries it).
On loopback, or when ``web.allowed_hosts`` is set, the ``Host`` header must be one of those names (a web page
that rebinds its own DNS name to 127.0.0.1 gets 403). A state-changing request (an acknowledgement) must
come from the page itself (``Origin`` equal to the ``Host``, or ``Sec-Fetch-Site: same-origin``) unless it
carries the token as ``Authorization: Bearer``.
"""

from __future__ import annotations

import errno
import hmac
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

from edge.config import WebConfig, is_loopback
from edge.delivery.secrets import SecretError, read_secret
from edge.errors import ResourceUnavailable, StartupError

log = logging.getLogger(__name__)
PAGE = Path(__file__).resolve().parent.parent / "static" / "status.html"
COOKIE = "fer_edge_token"


def read_token(cfg: WebConfig) -> str | None:
    key = "web.token_credential" if cfg.token_credential else "web.token_file"
    token = read_secret("web token", cfg.token_file, cfg.token_credential, key=key)
    if token is not None and len(token.strip()) < 16:
        raise SecretError(f"{key}: the web token must be at least 16 characters")
    return None if token is None else token.strip()


def prometheus(stats: dict[str, Any], active: list[dict[str, Any]]) -> str:
    lines = []

    def metric(name: str, kind: str, help_text: str, value: float | None, labels: str = "") -> None:
        if value is None:
            return
        lines.extend([f"# HELP fer_edge_{name} {help_text}", f"# TYPE fer_edge_{name} {kind}",
                      f"fer_edge_{name}{labels} {float(value)}"])

    metric("frames_total", "counter", "Frames processed.", stats.get("frames"))
    metric("fps", "gauge", "Frames per second (smoothed).", stats.get("fps"))
    metric("faces", "gauge", "Faces in view.", stats.get("faces"))
    metric("uptime_seconds", "gauge", "Seconds since start.", stats.get("uptime_s"))
    metric("last_frame_age_seconds", "gauge", "Seconds since the last frame.", stats.get("last_frame_age_s"))
    metric("frame_errors_total", "counter", "Frames that failed.", stats.get("frame_errors"))
    metric("source_failures_total", "counter", "Camera/source failures.", stats.get("source_failures"))
    metric("outbox_depth", "gauge", "Alert messages waiting for the broker.", stats.get("outbox_depth"))
    metric("outbox_oldest_age_seconds", "gauge", "Age of the oldest alert message not yet delivered (absent when "
           "none waits).", stats.get("outbox_oldest_age_s"))
    metric("mqtt_connected", "gauge", "1 when connected to the MQTT broker.",
           None if stats.get("mqtt_connected") is None else int(stats["mqtt_connected"]))
    lines += ["# HELP fer_edge_active_alerts Active alerts by severity.", "# TYPE fer_edge_active_alerts gauge"]
    for severity in ("info", "warning", "critical"):
        count = sum(a["severity"] == severity for a in active)
        lines.append(f'fer_edge_active_alerts{{severity="{severity}"}} {count}')
    lines.append(f'fer_edge_model_info{{model="{stats.get("model", "")}",backend="{stats.get("backend", "")}"}} 1')
    return "\n".join(lines) + "\n"


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
HALF_OPEN_LOG_INTERVAL_S = 10.0


def host_name(header: str) -> str:
    """The name in a ``Host`` header: ``example:8080`` -> ``example``, ``[::1]:8080`` -> ``::1``."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def token_matches(offered: bytes | None, token: str) -> bool:
    """Constant-time, on bytes: a str compare_digest raises TypeError for non-ASCII input."""
    return offered is not None and hmac.compare_digest(offered, token.encode("utf-8"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    _went_away = 0
    _logged_at = float("-inf")

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            log.exception("web: request from %s failed", client_address[0])
            return
        # A client that hangs up mid-request (half-open, reset) is the client's business: one line, not a
        # traceback, and at most one every few seconds when many do it.
        self._went_away += 1
        now = time.monotonic()
        if now - self._logged_at >= HALF_OPEN_LOG_INTERVAL_S:
            log.info("web: client %s closed the connection mid-request (%s); %d such since start",
                     client_address[0], type(exc).__name__, self._went_away)
            self._logged_at = now


class _Server6(_Server):
    address_family = socket.AF_INET6


def _bind(cfg: WebConfig, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """The server on ``web.host:web.port``; a port in use or an address this host lacks is named, not a traceback."""
    try:
        return (_Server6 if ":" in cfg.host else _Server)((cfg.host.strip("[]"), cfg.port), handler)
    except OSError as exc:
        where = f"{cfg.host}:{cfg.port}"
        if exc.errno == errno.EADDRINUSE:
            raise ResourceUnavailable(f"web.port: {where} is already in use (another fer-edge, or another "
                                      "service; pick another web.port)") from None
        raise StartupError(f"web.host: cannot listen on {where} ({exc.strerror or exc})") from None


class StatusSnapshot(Protocol):
    """What the page reads from the running monitor. Called from the web threads: each call returns a copy."""

    def web_status(self) -> dict[str, Any]: ...

    def web_alerts(self) -> dict[str, Any]: ...

    def stats(self) -> dict[str, Any]: ...

    def preview_jpeg(self) -> bytes | None: ...


Acknowledge = Callable[[str, str], None]
"""``acknowledge(alert_id, by)`` queues an acknowledgement for the rules; safe to call from any thread."""


class StatusServer:
    """Reads ``snapshot`` and calls the ``acknowledge`` it is handed; it never imports the daemon."""

    def __init__(self, snapshot: StatusSnapshot, acknowledge: Acknowledge, cfg: WebConfig):
        self.snapshot = snapshot
        self.acknowledge = acknowledge
        self.cfg = cfg
        try:
            self.token = read_token(cfg)
        except SecretError as exc:  # e.g. a credential missing from the service's $CREDENTIALS_DIRECTORY
            raise StartupError(str(exc)) from None
        self._preview: tuple[float, bytes] | None = None
        self._preview_lock = threading.Lock()
        self.page = PAGE.read_bytes()  # once: the page is package data and does not change while we run
        self.check_host = is_loopback(cfg.host) or bool(cfg.allowed_hosts)
        self.allowed_hosts = {*LOOPBACK_NAMES, cfg.host.strip("[]").lower(), *(h.lower() for h in cfg.allowed_hosts)}
        self.httpd = _bind(cfg, self._handler())
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="status-page", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("status page on http://%s:%d/%s", self.cfg.host, self.port, " (token required)" if self.token else "")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def preview_jpeg(self) -> bytes | None:
        with self._preview_lock:
            now = time.monotonic()
            if self._preview and now - self._preview[0] < 1.0 / self.cfg.preview_fps:
                return self._preview[1]
            jpeg = self.snapshot.preview_jpeg()
            if jpeg is not None:
                self._preview = (now, jpeg)
            return jpeg

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "fer-edge"

            def log_message(self, fmt: str, *args: Any) -> None:
                if log.isEnabledFor(logging.DEBUG):  # formatting every request's line costs the frame loop
                    log.debug("web %s %s", self.address_string(), fmt % args)

            timeout = 10  # seconds: a client that never finishes its request is dropped

            def _host_ok(self) -> bool:
                if not server.check_host:
                    return True
                host = self.headers.get("Host")
                return host is not None and host_name(host) in server.allowed_hosts

            def _same_origin(self) -> bool:
                origin = self.headers.get("Origin")
                if origin is None or origin == "null":
                    return self.headers.get("Sec-Fetch-Site") == "same-origin"
                parsed = urlparse(origin)
                return parsed.scheme == "http" and parsed.netloc.lower() == self.headers.get("Host", "").strip().lower()

            def _authorized(self, query: dict[str, list[str]]) -> tuple[bool, str | None, bool]:
                """(token accepted, token to set as cookie, it came as a bearer header)."""
                if server.token is None:
                    return True, None, False
                # Headers reach us decoded as Latin-1, the query as UTF-8: compare the bytes that were sent.
                header = self.headers.get("Authorization", "")
                if header.startswith("Bearer "):
                    return token_matches(header[7:].encode("latin-1"), server.token), None, True
                offered = None
                for part in self.headers.get("Cookie", "").split(";"):
                    name, _, value = part.strip().partition("=")
                    if name == COOKIE:
                        offered = value.encode("latin-1")
                from_query = query.get("token", [None])[0]
                if offered is None and from_query is not None:
                    offered = from_query.encode("utf-8", "surrogateescape")
                ok = token_matches(offered, server.token)
                return ok, (from_query if ok and from_query else None), False

            def _refuse_host(self) -> bool:
                if self._host_ok():
                    return False
                self._json({"error": "Host not allowed (add the name to web.allowed_hosts)"}, HTTPStatus.FORBIDDEN)
                return True

            def _send(self, status: int, body: bytes, ctype: str, cookie: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                if cookie:
                    self.send_header("Set-Cookie", f"{COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/")
                self.end_headers()
                self.wfile.write(body)

            def _json(self, data: Any, status: int = 200) -> None:
                self._send(status, json.dumps(data).encode(), "application/json")

            def _admit(self) -> tuple[Any, str | None, bool] | None:
                """(URL, cookie to set, token came as bearer) of a request past the Host and token checks;
                None once the refusal is sent."""
                url = urlparse(self.path)
                if self._refuse_host():
                    return None
                ok, cookie, bearer = self._authorized(parse_qs(url.query))
                if not ok:
                    self._json({"error": "token required"}, HTTPStatus.UNAUTHORIZED)
                    return None
                return url, cookie, bearer

            def do_GET(self) -> None:
                if (admitted := self._admit()) is None:
                    return
                url, cookie, _ = admitted
                if url.path in ("/", "/index.html"):
                    self._send(200, server.page, "text/html; charset=utf-8", cookie)
                elif url.path == "/api/status":
                    self._json(server.snapshot.web_status())
                elif url.path == "/api/alerts":
                    self._json(server.snapshot.web_alerts())
                elif url.path == "/metrics":
                    body = prometheus(server.snapshot.stats(), server.snapshot.web_alerts()["active"])
                    self._send(200, body.encode(), "text/plain; version=0.0.4")
                elif url.path == "/preview.jpg":
                    jpeg = server.preview_jpeg() if server.cfg.preview else None
                    if jpeg is None:
                        self._json({"error": "preview disabled" if not server.cfg.preview else "no frame yet"},
                                   HTTPStatus.NOT_FOUND)
                    else:
                        self._send(200, jpeg, "image/jpeg")
                else:
                    self._json({"error": "not found"}, HTTPStatus.NOT_FOUND)

            def do_POST(self) -> None:
                if (admitted := self._admit()) is None:
                    return
                url, _, bearer = admitted
                if not (bearer or self._same_origin()):
                    self._json({"error": "cross-origin request refused: send an Origin equal to the Host, or the "
                                "token as Authorization: Bearer"}, HTTPStatus.FORBIDDEN)
                    return
                parts = url.path.strip("/").split("/")
                if len(parts) == 4 and parts[:2] == ["api", "alerts"] and parts[3] == "ack":
                    known = {a["id"] for a in server.snapshot.web_alerts()["active"]}
                    if parts[2] not in known:
                        self._json({"error": f"no active alert {parts[2]!r}"}, HTTPStatus.NOT_FOUND)
                        return
                    server.acknowledge(parts[2], "web")
                    self._json({"id": parts[2], "queued": True}, HTTPStatus.ACCEPTED)
                else:
                    self._json({"error": "not found"}, HTTPStatus.NOT_FOUND)

        return Handler
