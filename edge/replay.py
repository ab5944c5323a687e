"""Replay a recording through the full pipeline as fast as it decodes: alert timeline and signal plot.

For tuning thresholds before a deployment: the same detection, tracking, eye state, signals and rules
as the daemon, driven by the recording's own time, so the alerts match what the device would raise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.capture.sources import open_source
from edge.config import AppConfig, SignalsConfig
from edge.daemon import analysis_for

PLOTTED = ("eye_closed_prob", "perclos", "distress")


def replay(video: Path, profile: str, cfg: AppConfig | None = None, out_dir: Path | None = None,
           loop_for_s: float = 0.0) -> dict[str, Any]:
    """``loop_for_s`` > 0 plays the recording in a loop for that much input time (soak/false-alert runs)."""
    cfg = cfg or AppConfig()
    source_cfg = cfg.source.model_copy(update={"uri": str(video), "type": "auto", "loop": loop_for_s > 0,
                                               "realtime": False})
    alerts_cfg = cfg.alerts.model_copy(update={"profile": profile})
    cfg = cfg.model_copy(update={"source": source_cfg, "alerts": alerts_cfg})
    _, _, pipeline, monitor = analysis_for(cfg)
    source = open_source(cfg.source)
    source.open()
    samples: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    try:
        while (frame := source.read()) is not None:
            if loop_for_s and frame.timestamp > loop_for_s:
                break
            update = monitor.update(pipeline.process(frame))
            subject = next(iter(update.subjects.values()), {})
            samples.append({"t": round(frame.timestamp, 3), "face": bool(update.subjects),
                            "absent_s": update.monitor["absent_s"], **{k: subject.get(k) for k in PLOTTED},
                            "closure_s": subject.get("closure_s")})
            events.extend(update.events)
    finally:
        source.close()
    duration = samples[-1]["t"] if samples else 0.0
    raised = [e for e in events if e["action"] == "raised"]
    hours = max(duration, 1e-9) / 3600.0
    summary = {
        "video": str(video), "profile": profile, "frames": len(samples), "duration_s": duration,
        "alerts_raised": len(raised),
        "alerts_per_hour": {sev: round(sum(e["severity"] == sev for e in raised) / hours, 2)
                            for sev in ("info", "warning", "critical")},
        "rules": {name: rule.model_dump() for name, rule in monitor.engine.rules.items()},
        "alerts": events,
        "notes": panel_notes(samples, cfg.signals),
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = Path(video).stem
        (out_dir / f"{stem}.{profile}.alerts.json").write_text(json.dumps({**summary, "samples": samples}, indent=1))
        summary["plot"] = str(plot_timeline(samples, events, out_dir / f"{stem}.{profile}.signals.png",
                                            f"{stem}: {profile} profile", summary["notes"]))
        summary["timeline"] = str(out_dir / f"{stem}.{profile}.alerts.json")
    return summary


PANELS = (("eye_closed_prob", "eye closed p"), ("perclos", "PERCLOS"), ("distress", "distress"),
          ("absent_s", "face absent (s)"))
# BGR, matplotlib's tab: colours so the plot reads like the daemon's web page.
SEVERITY_BGR = {"info": (180, 119, 31), "warning": (14, 127, 255), "critical": (40, 39, 214)}
_W, _PANEL_H, _TOP, _BOTTOM, _LEFT, _RIGHT = 1000, 140, 44, 40, 60, 20
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def panel_notes(samples: list[dict[str, Any]], signals: SignalsConfig) -> dict[str, str]:
    """Why a panel has no line: PERCLOS needs a minimum of eye time before it is known."""
    notes: dict[str, str] = {}
    duration = samples[-1]["t"] if samples else 0.0
    step = duration / (len(samples) - 1) if len(samples) > 1 else 0.0
    eye_s = min(duration, step * sum(s["eye_closed_prob"] is not None for s in samples))
    if all(s["perclos"] is None for s in samples):
        notes["perclos"] = (f"PERCLOS unknown: it needs {signals.perclos_min_coverage_s:g} s of eye time in its "
                            f"{signals.perclos_window_s:g} s window; this recording has {eye_s:.1f} s of eye time "
                            f"in {duration:.1f} s")
    for key, label in PANELS:
        if key not in notes and all(s[key] is None for s in samples):
            notes[key] = f"{label}: no value (no face seen)"
    return notes


def plot_timeline(samples: list[dict[str, Any]], events: list[dict[str, Any]], path: Path, title: str,
                  notes: dict[str, str] | None = None) -> Path:
    """The signals against input time, one panel each, alert lines across all (OpenCV: runs on the device)."""
    notes = notes or {}
    height = _TOP + _PANEL_H * len(PANELS) + _BOTTOM
    img = np.full((height, _W, 3), 255, np.uint8)
    t_end = max((s["t"] for s in samples), default=0.0) or 1.0

    def x_of(t: float) -> int:
        return round(_LEFT + (_W - _LEFT - _RIGHT) * t / t_end)

    cv2.putText(img, title, (_LEFT, 28), _FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (key, label) in enumerate(PANELS):
        top, bottom = _TOP + i * _PANEL_H + 8, _TOP + (i + 1) * _PANEL_H - 8
        values = [s[key] for s in samples]
        known = [v for v in values if v is not None]
        y_max = 1.0 if key != "absent_s" else max(1.0, max(known, default=0.0) * 1.1)

        def y_of(v: float, top: int = top, bottom: int = bottom, y_max: float = y_max) -> int:
            return round(bottom - (bottom - top) * v / y_max)

        cv2.rectangle(img, (_LEFT, top), (_W - _RIGHT, bottom), (160, 160, 160), 1)
        for frac in (0.0, 0.5, 1.0):
            y = y_of(frac * y_max)
            cv2.line(img, (_LEFT, y), (_W - _RIGHT, y), (225, 225, 225), 1)
            tick = f"{frac * y_max:.3g}"
            width = cv2.getTextSize(tick, _FONT, 0.35, 1)[0][0]
            cv2.putText(img, tick, (_LEFT - 6 - width, y + 4), _FONT, 0.35, (90, 90, 90), 1, cv2.LINE_AA)
        cv2.putText(img, label, (_LEFT + 6, top + 16), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        run: list[tuple[int, int]] = []
        for sample, value in zip(samples, values, strict=True):
            if value is None:
                _polyline(img, run)
                run = []
            else:
                run.append((x_of(sample["t"]), y_of(min(value, y_max))))
        _polyline(img, run)
        for event in events:
            colour = SEVERITY_BGR.get(event["severity"], (0, 0, 0))
            if event["action"] in ("raised", "escalated"):
                _dashed_vline(img, x_of(event["t"]), top, bottom, colour, dash=6)
            elif event["action"] == "cleared":
                _dashed_vline(img, x_of(event["t"]), top, bottom, (128, 128, 128), dash=2)
        if key in notes:
            cv2.putText(img, notes[key], (_LEFT + 10, (top + bottom) // 2), _FONT, 0.42, (60, 60, 60), 1, cv2.LINE_AA)
    label_rows: dict[int, int] = {}
    for event in events:
        if event["action"] in ("raised", "escalated"):
            x = x_of(event["t"])
            row = label_rows[x // 120] = label_rows.get(x // 120, -1) + 1
            cv2.putText(img, f"{event['rule']} {event['severity']}", (x + 3, _TOP + 20 + 13 * row), _FONT, 0.38,
                        SEVERITY_BGR.get(event["severity"], (0, 0, 0)), 1, cv2.LINE_AA)
    axis_y = _TOP + _PANEL_H * len(PANELS)
    step = _tick_step(t_end)
    for k in range(int(t_end / step) + 1):
        x = x_of(k * step)
        cv2.line(img, (x, axis_y - 8), (x, axis_y - 2), (90, 90, 90), 1)
        cv2.putText(img, f"{k * step:g}", (x - 8, axis_y + 10), _FONT, 0.35, (90, 90, 90), 1, cv2.LINE_AA)
    cv2.putText(img, "input time (s)", (_W // 2 - 50, height - 10), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: could not write the plot")
    return path


def _polyline(img: np.ndarray, points: list[tuple[int, int]]) -> None:
    if len(points) == 1:
        cv2.circle(img, points[0], 1, (180, 90, 30), -1)
    elif points:
        cv2.polylines(img, [np.array(points, np.int32)], False, (180, 90, 30), 2, cv2.LINE_AA)


def _dashed_vline(img: np.ndarray, x: int, top: int, bottom: int, colour: tuple[int, int, int], dash: int) -> None:
    for y in range(top, bottom, 2 * dash):
        cv2.line(img, (x, y), (x, min(y + dash, bottom)), colour, 1)


def _tick_step(span: float) -> float:
    """A 1-2-5 step that gives about ten ticks."""
    raw = span / 10
    magnitude = 10 ** np.floor(np.log10(raw))
    return float(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))
