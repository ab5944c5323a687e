"""The rule engine: alert lifecycle raised -> (escalated) -> (acknowledged) -> cleared, driven by time.

Every decision uses the timestamps passed in (input time), never the wall clock, so a recording
replays with the same alerts at any speed and any frame rate.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from edge.monitor.profiles import MONITOR_SIGNALS, SEVERITY_RANK, RuleConfig

EPS = 1e-6


@dataclass
class Alert:
    id: str
    rule: str
    track: int | None
    severity: str
    raised_t: float
    values: dict[str, Any]
    acknowledged_t: float | None = None


@dataclass
class _RuleState:
    cond_since: float | None = None
    below_since: float | None = None
    cooldown_until: float = float("-inf")
    alert: Alert | None = None


@dataclass
class RuleEngine:
    rules: dict[str, RuleConfig]
    profile: str = "custom"
    _states: dict[tuple[str, int | None], _RuleState] = field(default_factory=dict)
    _counter: itertools.count = field(default_factory=lambda: itertools.count(1))
    _run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def active(self) -> list[Alert]:
        return [s.alert for s in self._states.values() if s.alert is not None]

    def _event(self, action: str, alert: Alert, t: float, **extra: Any) -> dict[str, Any]:
        return {
            "event": "alert", "action": action, "id": alert.id, "rule": alert.rule, "profile": self.profile,
            "track": alert.track, "severity": alert.severity, "t": round(t, 3), "raised_t": round(alert.raised_t, 3),
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), "values": alert.values, **extra,
        }

    def evaluate(self, t: float, signals: dict[str, Any], track: int | None) -> list[dict[str, Any]]:
        """Evaluate every rule of the right scope for one subject (track) or the monitor (track=None)."""
        events: list[dict[str, Any]] = []
        for name, rule in self.rules.items():
            if not rule.enabled or (rule.signal in MONITOR_SIGNALS) != (track is None):
                continue
            events.extend(self._evaluate_rule(name, rule, t, signals, track))
        return events

    def _evaluate_rule(self, name: str, rule: RuleConfig, t: float, signals: dict[str, Any],
                       track: int | None) -> list[dict[str, Any]]:
        state = self._states.setdefault((name, track), _RuleState())
        value = signals.get(rule.signal)
        suppressed = any((signals.get(k) or 0.0) >= v for k, v in rule.unless_above.items())
        values = {rule.signal: value, **{k: signals.get(k) for k in rule.unless_above}}
        events: list[dict[str, Any]] = []
        alert = state.alert
        if alert is None:
            if value is not None and value >= rule.raise_at and not suppressed:
                if state.cond_since is None:
                    state.cond_since = t
                if t - state.cond_since >= rule.onset_s - EPS and t >= state.cooldown_until - EPS:
                    severity = rule.severity
                    if rule.critical_at is not None and value >= rule.critical_at:
                        severity = "critical"
                    alert = Alert(f"{self._run_id}-{next(self._counter)}", name, track, severity, t, values)
                    state.alert, state.below_since = alert, None
                    events.append(self._event("raised", alert, t, description=rule.description))
            else:
                state.cond_since = None
            return events

        # Active: hysteresis decides clearing; unknown (None) holds the current state.
        if value is not None and (value < rule.clear_at or suppressed):
            if state.below_since is None:
                state.below_since = t
            if t - state.below_since >= rule.clear_s - EPS:
                alert.values = values
                events.append(self._event("cleared", alert, t, duration_s=round(t - alert.raised_t, 3)))
                state.alert, state.cond_since, state.below_since = None, None, None
                state.cooldown_until = t + rule.cooldown_s
            return events
        state.below_since = None
        if SEVERITY_RANK[alert.severity] < SEVERITY_RANK["critical"]:
            reason = None
            if rule.critical_at is not None and value is not None and value >= rule.critical_at:
                reason = "level"
            elif rule.critical_after_s is not None and state.cond_since is not None \
                    and t - state.cond_since >= rule.critical_after_s - EPS:
                reason = "duration"
            elif rule.escalate_unacked_s is not None and alert.acknowledged_t is None \
                    and t - alert.raised_t >= rule.escalate_unacked_s - EPS:
                reason = "unacknowledged"
            if reason:
                alert.severity = "critical"
                alert.values = values
                events.append(self._event("escalated", alert, t, reason=reason))
        return events

    def acknowledge(self, alert_id: str, t: float, by: str = "local") -> list[dict[str, Any]]:
        """Acknowledge an active alert (from MQTT, the status page or the CLI). Unknown ids are ignored."""
        for alert in self.active():
            if alert.id == alert_id and alert.acknowledged_t is None:
                alert.acknowledged_t = t
                return [self._event("acknowledged", alert, t, by=by)]
        return []

    def clear_all(self, t: float, reason: str) -> list[dict[str, Any]]:
        """Clear every active alert (e.g. before the rules are replaced on a config reload)."""
        events = [self._event("cleared", s.alert, t, reason=reason, duration_s=round(t - s.alert.raised_t, 3))
                  for s in self._states.values() if s.alert is not None]
        self._states.clear()
        return events

    def drop_track(self, track: int, t: float) -> list[dict[str, Any]]:
        """A subject left for good (its track expired): clear its active alerts."""
        events = []
        for (name, tr), state in list(self._states.items()):
            if tr == track:
                if state.alert is not None:
                    events.append(self._event("cleared", state.alert, t, reason="track lost",
                                              duration_s=round(t - state.alert.raised_t, 3)))
                del self._states[(name, tr)]
        return events
