"""Replay a recording through the full pipeline as fast as it decodes: alert timeline and signal plot.

For tuning thresholds before a deployment: the same detection, tracking, eye state, signals and rules
as the daemon, driven by the recording's own time, so the alerts match what the device would raise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.capture.sources import open_source
from edge.config import AppConfig
from edge.daemon import load_classifier_for
from edge.monitor.monitor import Monitor
from edge.vision.pipeline import Pipeline

PLOTTED = ("eye_closed_prob", "perclos", "distress")


def replay(video: Path, profile: str, cfg: AppConfig | None = None, out_dir: Path | None = None,
           loop_for_s: float = 0.0) -> dict[str, Any]:
    """``loop_for_s`` > 0 plays the recording in a loop for that much input time (soak/false-alert runs)."""
    cfg = cfg or AppConfig()
    source_cfg = cfg.source.model_copy(update={"uri": str(video), "type": "auto", "loop": loop_for_s > 0,
                                               "realtime": False})
    alerts_cfg = cfg.alerts.model_copy(update={"profile": profile})
    cfg = cfg.model_copy(update={"source": source_cfg, "alerts": alerts_cfg})
    classifier, card = load_classifier_for(cfg)
    pipeline = Pipeline(cfg, classifier, card)
    monitor = Monitor(cfg, list(card.labels))
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
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = Path(video).stem
        (out_dir / f"{stem}.{profile}.alerts.json").write_text(json.dumps({**summary, "samples": samples}, indent=1))
        summary["plot"] = str(plot_timeline(samples, events, out_dir / f"{stem}.{profile}.signals.png",
                                            f"{stem}: {profile} profile"))
        summary["timeline"] = str(out_dir / f"{stem}.{profile}.alerts.json")
    return summary


def plot_timeline(samples: list[dict[str, Any]], events: list[dict[str, Any]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in samples]
    rows = [("eye_closed_prob", "eye closed p"), ("perclos", "PERCLOS"), ("distress", "distress"),
            ("absent_s", "face absent (s)")]
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 7), sharex=True, dpi=90)
    colours = {"info": "tab:blue", "warning": "tab:orange", "critical": "tab:red"}
    for ax, (key, label) in zip(axes, rows, strict=True):
        ax.plot(t, [s[key] if s[key] is not None else float("nan") for s in samples], lw=1.2)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        for e in events:
            if e["action"] in ("raised", "escalated"):
                ax.axvline(e["t"], color=colours[e["severity"]], ls="--", lw=1)
            elif e["action"] == "cleared":
                ax.axvline(e["t"], color="grey", ls=":", lw=1)
    for e in events:
        if e["action"] in ("raised", "escalated"):
            axes[0].annotate(f"{e['rule']} {e['severity']}", (e["t"], 1.0), fontsize=7, rotation=90, va="top",
                             color=colours[e["severity"]])
    axes[-1].set_xlabel("input time (s)")
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
