"""The frame loop: source -> pipeline -> events, surviving what it can, reporting the rest."""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from edge import PROCESS_START, preflight
from edge.capture.sources import Frame, SourceError, open_source
from edge.config import AppConfig
from edge.contract import ModelCardError, sha256_file
from edge.delivery.sdnotify import SystemdNotifier
from edge.errors import StartupError
from edge.monitor.monitor import Monitor, MonitorUpdate
from edge.vision.classifier import ModelLoadError, load_model_with_card
from edge.vision.pipeline import FrameResult, Pipeline

log = logging.getLogger(__name__)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class EventWriter:
    """JSON lines to stdout or an appended file, flushed per event."""

    def __init__(self, target: str):
        self.target = target
        self._fh: IO[str] = sys.stdout if target == "-" else open(target, "a", buffering=1)  # noqa: SIM115
        self._lock = threading.Lock()

    def write(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":"))
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not sys.stdout:
            self._fh.close()


class RateMeter:
    """Frames per second over wall time, smoothed with a 2 s time constant."""

    def __init__(self, tau: float = 2.0):
        self.tau, self.fps, self._last = tau, 0.0, None

    def tick(self, now: float) -> float:
        if self._last is not None:
            dt_ = max(now - self._last, 1e-6)
            alpha = 1.0 - np.exp(-dt_ / self.tau)
            self.fps = (1 - alpha) * self.fps + alpha / dt_ if self.fps else 1.0 / dt_
        self._last = now
        return self.fps


def load_classifier_for(cfg: AppConfig):
    """The expression model, checked against its card's SHA-256 before it is parsed (unless opted out)."""
    return load_model_with_card(Path(cfg.classifier.model), cfg.classifier.threads, cfg.classifier.backend,
                                verify=cfg.classifier.verify_hash)


def analysis_for(cfg: AppConfig) -> tuple[Any, Any, Pipeline, Monitor]:
    """Classifier, card, pipeline and monitor for ``cfg``; raises on a bad model or a key the monitor refuses."""
    classifier, card = load_classifier_for(cfg)
    return classifier, card, Pipeline(cfg, classifier, card), Monitor(cfg, list(card.labels))


def expression_event(face, result: FrameResult, labels: list[str], fps: float,
                     update: MonitorUpdate | None = None) -> dict[str, Any]:
    event = {
        "event": "expression",
        "time": iso_now(),
        "t": round(result.frame.timestamp, 3),
        "frame": result.frame.index,
        "track": face.track_id,
        "box": [int(v) for v in face.box],
        "label": face.label,
        "score": round(face.score, 4),
        "probs": {label: round(float(p), 4) for label, p in zip(labels, face.probs, strict=True)},
        "fps": round(fps, 1),
    }
    if update is not None and face.track_id in update.subjects:
        event["signals"] = update.subjects[face.track_id]
    return event


def annotate(frame_image: np.ndarray, result: FrameResult) -> np.ndarray:
    image = frame_image if frame_image.ndim == 3 else cv2.cvtColor(frame_image, cv2.COLOR_GRAY2BGR)
    image = image.copy()
    for face in result.faces:
        x, y, w, h = face.box
        colour = (0, 200, 0) if face.label != "uncertain" else (0, 200, 255)
        cv2.rectangle(image, (x, y), (x + w, y + h), colour, 2)
        cv2.putText(image, f"#{face.track_id} {face.label} {face.score:.2f}", (x, max(12, y - 6)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return image


class Daemon:
    """The frame loop and its sinks. ``config_path`` enables SIGHUP reload of that file."""

    def __init__(self, cfg: AppConfig, events: EventWriter | None = None, config_path: Path | None = None,
                 notifier: SystemdNotifier | None = None):
        self.cfg = cfg
        self.config_path = config_path
        self.notifier = notifier or SystemdNotifier()
        self.events = events or EventWriter(cfg.output.events)
        self.stop_event = threading.Event()
        self.reload_requested = threading.Event()
        self.started = time.monotonic()
        self.frames = 0
        self.frame_errors = 0
        self.faces_now = 0
        self.last_frame_wall: float | None = None
        self.rate = RateMeter()
        self._acks: queue.Queue[tuple[str, str]] = queue.Queue()
        self.last_t = 0.0
        self._writer: cv2.VideoWriter | None = None
        self.mqtt = None
        self.outbox = None
        self.gpio = None
        self._next_mqtt_stats = 0.0
        self.recent_alerts: collections.deque[dict[str, Any]] = collections.deque(maxlen=50)
        self._latest: tuple[Any, FrameResult, MonitorUpdate] | None = None  # swapped whole, read by the web thread
        self.web = None
        self._first_frame_s: float | None = None
        self._build_analysis(cfg)
        self.source = open_source(cfg.source, on_state=self._source_state)
        self._build_sinks(cfg)

    def _build_analysis(self, cfg: AppConfig) -> None:
        self._use_analysis(cfg, analysis_for(cfg))

    def _use_analysis(self, cfg: AppConfig, analysis: tuple[Any, Any, Pipeline, Monitor]) -> None:
        self.classifier, self.card, self.pipeline, self.monitor = analysis
        self.model_sha256 = sha256_file(cfg.classifier.model)

    def _build_sinks(self, cfg: AppConfig) -> None:
        if cfg.mqtt.enabled:
            from edge.delivery.mqtt import MqttPublisher
            from edge.delivery.outbox import Outbox

            self.outbox = self.outbox or Outbox(cfg.run.resolved_state_dir() / "outbox.sqlite", cfg.mqtt.outbox_max)
            self.outbox.max_rows = cfg.mqtt.outbox_max
            self.mqtt = MqttPublisher(cfg.mqtt, self.outbox, on_ack=self.acknowledge)
            self.mqtt.known_rules([n for n, r in self.monitor.engine.rules.items() if r.enabled])
            self.mqtt.seed_active({a.rule: a.id for a in self.monitor.engine.active()})
        if cfg.gpio.enabled:
            from edge.delivery.gpio import GpioAlerts

            self.gpio = GpioAlerts(cfg.gpio)

    def _source_state(self, state: str, detail: str) -> None:
        self.events.write({"event": "source", "time": iso_now(), "state": state, "detail": detail})

    def install_signal_handlers(self) -> None:
        def stop(signum, _frame):
            log.info("received %s, stopping", signal.Signals(signum).name)
            self.stop()

        def reload(_signum, _frame):
            self.reload_requested.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def reload(self) -> bool:
        """Re-read the config file. A bad file is rejected and the running config stays."""
        from edge.config import ConfigError, load_config

        self.reload_requested.clear()
        if self.config_path is None:
            return False
        self.notifier.reloading()
        old = self.cfg
        new_source = None
        try:
            new = load_config(self.config_path)
            problems = preflight.check(new)
            if problems:
                raise ConfigError(f"{self.config_path}: {problems[0]}")
            analysis_changed = any(getattr(new, k) != getattr(old, k)
                                   for k in ("classifier", "detector", "tracker", "eyes", "signals", "alerts"))
            # Built before anything is touched: a bad model or a key the monitor refuses rejects the reload.
            analysis = analysis_for(new) if analysis_changed else None
            if new.source != old.source:
                new_source = open_source(new.source, on_state=self._source_state)
                if not new_source.live:  # a file or folder that cannot be opened rejects the reload
                    new_source.open()
        except (ConfigError, ModelLoadError, ModelCardError, ValueError, SourceError) as exc:
            if new_source is not None:
                new_source.close()
            error = f"source.uri: {exc}" if isinstance(exc, SourceError) else str(exc)
            log.error("reload rejected, keeping the running config: %s", error)
            self.events.write({"event": "reload", "time": iso_now(), "ok": False, "error": error})
            self.notifier.ready("reload rejected: " + error.splitlines()[0])
            return False
        if analysis is not None:
            for event in self.monitor.engine.clear_all(self.last_t, reason="config reloaded"):
                self._alert(event)
            self._use_analysis(new, analysis)
        if new_source is not None:
            self.source.close()
            self.source = new_source
            if new_source.live:
                self._open_source()  # a camera or stream reconnects with backoff, as at start
        if new.mqtt != old.mqtt or new.gpio != old.gpio:
            if self.mqtt is not None:
                self.mqtt.stop(flush_timeout=1.0)
                self.mqtt = None
            if self.gpio is not None:
                self.gpio.close()
                self.gpio = None
            self._build_sinks(new)
            if self.mqtt is not None:
                self.mqtt.start()
        if new.output.events != old.output.events:
            self.events.close()
            self.events = EventWriter(new.output.events)
        self.cfg = new
        log.info("config reloaded from %s", self.config_path)
        self.events.write({"event": "reload", "time": iso_now(), "ok": True, "analysis_rebuilt": analysis_changed})
        self.notifier.ready("config reloaded")
        return True

    def acknowledge(self, alert_id: str, by: str = "local") -> None:
        """Thread-safe: MQTT or the status page queue an acknowledgement; the frame loop applies it."""
        self._acks.put((alert_id, by))

    def _apply_acks(self) -> None:
        while True:
            try:
                alert_id, by = self._acks.get_nowait()
            except queue.Empty:
                return
            for event in self.monitor.engine.acknowledge(alert_id, self.last_t, by):
                self._alert(event)

    def _alert(self, event: dict[str, Any]) -> None:
        """An alert lifecycle event goes to every sink: the MQTT outbox (first: durable), JSON lines, GPIO."""
        if self.mqtt is not None:
            self.mqtt.publish_alert(event)
        self.events.write(event)
        self.recent_alerts.append(event)
        if self.gpio is not None:
            self.gpio.handle(event)

    def stop(self) -> None:
        self.stop_event.set()
        self.source.stop()

    def last_frame_age(self) -> float | None:
        return None if self.last_frame_wall is None else round(time.monotonic() - self.last_frame_wall, 3)

    def stats(self) -> dict[str, Any]:
        return {
            "event": "stats",
            "time": iso_now(),
            "frames": self.frames,
            "fps": round(self.rate.fps, 2),
            "faces": self.faces_now,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "last_frame_age_s": self.last_frame_age(),
            "frame_errors": self.frame_errors,
            "source_failures": self.source.failures,
            "model": self.card.name,
            "backend": self.classifier.backend,
            "profile": self.cfg.alerts.profile,
            "active_alerts": len(self.monitor.engine.active()),
            "outbox_depth": None if self.outbox is None else self.outbox.depth(),
            "outbox_dropped": None if self.outbox is None else self.outbox.dropped,
            "outbox_oldest_age_s": None if self.outbox is None else _rounded(self.outbox.oldest_age()),
            "mqtt_connected": None if self.mqtt is None else self.mqtt.connected.is_set(),
        }

    # -- read by the status page's threads: only whole-object reads of state swapped by the frame loop --
    def web_status(self) -> dict[str, Any]:
        latest = self._latest
        faces = []
        monitor: dict[str, Any] = {"absent_s": None}
        if latest is not None:
            _, result, update = latest
            monitor = update.monitor
            for face in result.faces:
                eyes = update.eyes.get(face.track_id)
                faces.append({"track": face.track_id, "box": [int(v) for v in face.box], "label": face.label,
                              "score": round(face.score, 4), "signals": update.subjects.get(face.track_id),
                              "eyes_found": None if eyes is None else eyes.eyes_found,
                              "probs": {lb: round(float(p), 4) for lb, p in zip(self.pipeline.labels, face.probs,
                                                                                  strict=True)}})
        return {"health": self.stats(), "faces": faces, "monitor": monitor,
                "preview": bool(self.web and self.web.cfg.preview), "labels": list(self.card.labels)}

    def web_alerts(self) -> dict[str, Any]:
        active = [{"id": a.id, "rule": a.rule, "track": a.track, "severity": a.severity, "raised_t": a.raised_t,
                   "acknowledged": a.acknowledged_t is not None, "values": a.values}
                  for a in list(self.monitor.engine.active())]
        return {"active": active, "recent": list(self.recent_alerts)}

    def preview_jpeg(self) -> bytes | None:
        latest = self._latest
        if latest is None:
            return None
        frame, result, update = latest
        image = annotate(frame.colour if frame.colour is not None else frame.grey, result)
        for readings in update.eyes.values():
            for x, y, w, h in readings.boxes:
                cv2.rectangle(image, (x, y), (x + w, y + h), (255, 200, 0), 1)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])
        return jpeg.tobytes() if ok else None

    def write_status(self, state: str) -> None:
        """``<state_dir>/status.json`` for ``fer-edge status`` (health without a network endpoint)."""
        path = self.cfg.run.resolved_state_dir() / "status.json"
        data = {**self.stats(), "event": "status", "state": state, "pid": os.getpid(), "updated": time.time(),
                "model_sha256": self.model_sha256[:12],
                "model_created": self.card.created,
                "active": [{"id": a.id, "rule": a.rule, "severity": a.severity, "track": a.track}
                           for a in self.monitor.engine.active()]}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(path)
        except OSError as exc:
            log.debug("cannot write %s: %s", path, exc)

    def run(self) -> int:
        """The frame loop until the source ends, ``max_frames``, or stop(). A start-up problem (a port in
        use, a video that cannot be read) raises :class:`StartupError` after the stop event is written."""
        self.events.write({"event": "start", "time": iso_now(), "source": self.source.description,
                           "model": self.card.name, "labels": list(self.card.labels),
                           "backend": self.classifier.backend})
        error: StartupError | None = None
        try:
            self._loop()
        except StartupError as exc:
            error = exc
            raise
        finally:
            self._shutdown(error)
        return 0

    def _open_source(self) -> None:
        try:
            self.source.open()
        except SourceError as exc:
            raise StartupError(f"source.uri: {exc}") from None

    def _read(self) -> Frame | None:
        try:
            frame = self.source.read()
        except SourceError as exc:  # only a file or folder raises here; live sources reconnect
            raise StartupError(f"source.uri: {exc}") from None
        if frame is None and self.frames == 0 and self.frame_errors == 0 and not self.stop_event.is_set():
            raise StartupError(f"source.uri: {self.source.description}: no frame could be read")
        return frame

    def _loop(self) -> None:
        cfg = self.cfg
        if self.mqtt is not None:
            self.mqtt.reconcile([n for n, r in self.monitor.engine.rules.items() if r.enabled])
            self.mqtt.start()
        if cfg.web.enabled:
            from edge.delivery.web import StatusServer

            self.web = StatusServer(self, self.acknowledge, cfg.web)
            self.web.start()
        self._open_source()
        next_stats = time.monotonic() + cfg.output.stats_interval_s
        next_status = 0.0
        self.write_status("starting")
        while not self.stop_event.is_set():
            if self.reload_requested.is_set():
                self.reload()
                cfg = self.cfg
            frame = self._read()
            if frame is None:
                if not self.stop_event.is_set():
                    self._source_state("ended", self.source.description)
                break
            now = time.monotonic()
            if self._first_frame_s is None:
                self._first_frame_s = now - PROCESS_START
                log.info("first frame after %.2f s", self._first_frame_s)
                self.notifier.ready(f"first frame after {self._first_frame_s:.2f} s")
            try:
                result = self.pipeline.process(frame)
            except Exception:
                # One bad frame (odd size, a runtime hiccup) must not stop a monitor.
                self.frame_errors += 1
                log.exception("frame %d failed; continuing", frame.index)
                continue
            self.frames += 1
            self.notifier.watchdog(now)  # only here: a hung loop or a silent camera stops the pings
            self.last_frame_wall = now
            self.last_t = frame.timestamp
            self.faces_now = len(result.faces)
            fps = self.rate.tick(now)
            self._apply_acks()
            update = self.monitor.update(result)
            for event in update.events:
                self._alert(event)
            self._latest = (frame, result, update)
            if frame.index % cfg.output.every_n_frames == 0:
                for face in result.faces:
                    self.events.write(expression_event(face, result, self.pipeline.labels, fps, update))
            self._write_video(frame, result)
            if now >= next_stats:
                self.events.write(self.stats())
                next_stats = now + cfg.output.stats_interval_s
            if now >= next_status:
                self.notifier.status(f"{self.rate.fps:.1f} fps, {self.faces_now} face(s), "
                                     f"{len(self.monitor.engine.active())} active alert(s)")
                self.write_status("running")
                next_status = now + 1.0
            if self.mqtt is not None and now >= self._next_mqtt_stats:
                self.mqtt.publish_stats(self.stats())
                self._next_mqtt_stats = now + cfg.mqtt.stats_interval_s
            if cfg.run.max_frames and self.frames >= cfg.run.max_frames:
                break

    def _shutdown(self, error: StartupError | None) -> None:
        cfg = self.cfg
        self.notifier.stopping()
        self.source.close()
        if self._writer is not None:
            self._writer.release()
        if self.mqtt is not None:
            self.mqtt.mark_offline()
            delivered = self.mqtt.flush(cfg.run.shutdown_flush_s) if self.mqtt.connected.is_set() else False
            self.mqtt.stop(flush_timeout=0.0)
            if not delivered:
                log.warning("%d alert message(s) stay queued for the next start", self.outbox.depth())
        if self.gpio is not None:
            self.gpio.close()
        if self.web is not None:
            self.web.stop()
        final = self.stats()
        final["event"] = "stop"
        final["startup_to_first_frame_s"] = None if self._first_frame_s is None else round(self._first_frame_s, 3)
        if error is not None:
            final["error"] = str(error)
            final["exit_code"] = error.exit_code
        self.events.write(final)
        self.write_status("failed" if error is not None else "stopped")

    def _write_video(self, frame, result: FrameResult) -> None:
        path = self.cfg.output.annotated_video
        if path is None:
            return
        image = annotate(frame.colour if frame.colour is not None else frame.grey, result)
        if self._writer is None:
            h, w = image.shape[:2]
            self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), self.cfg.source.fps, (w, h))
        self._writer.write(image)
