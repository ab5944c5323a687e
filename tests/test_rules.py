"""The rule engine on synthetic signal streams with a fake clock, at 5, 15 and 30 frames/s.

Signal steps and delays sit on multiples of 0.2 s, so every frame rate sees each change on a frame
and the event timings must come out identical.
"""

from collections.abc import Callable

import pytest

from edge.config import ConfigError, parse_config
from edge.monitor.profiles import PROFILES, RuleConfig
from edge.monitor.rules import RuleEngine
from edge.monitor.signals import PresenceSignal, SubjectSignals

RATES = (5, 15, 30)


def run(rules: dict[str, RuleConfig], signal: Callable[[float], float | None], fps: int, seconds: float,
        acks: dict[float, str] | None = None, extra: Callable[[float], dict] | None = None) -> list[tuple]:
    """Feed ``signal(t)`` to the engine for one subject; return (action, rule, severity, t) tuples."""
    engine = RuleEngine(rules, "test")
    out = []
    name = next(iter(rules.values())).signal
    track = None if name == "absent_s" else 1
    for i in range(int(seconds * fps) + 1):
        t = round(i / fps, 9)
        signals = {name: signal(t), **(extra(t) if extra else {})}
        events = engine.evaluate(t, signals, track)
        for at, which in (acks or {}).items():
            if abs(t - at) < 1e-9:
                target = next((a for a in engine.active() if a.rule == which), None)
                if target:
                    events += engine.acknowledge(target.id, t, by="test")
        out += [(e["action"], e["rule"], e["severity"], round(e["t"], 3)) for e in events]
    return out


def step(*changes: tuple[float, float | None]) -> Callable[[float], float | None]:
    """Piecewise-constant signal: [(from_t, value), ...]."""
    def value(t: float) -> float | None:
        current = 0.0
        for start, v in changes:
            if t >= start - 1e-9:
                current = v
        return current
    return value


def same_at_all_rates(rules, signal, seconds, **kwargs) -> list[tuple]:
    results = {fps: run(rules, signal, fps, seconds, **kwargs) for fps in RATES}
    assert results[5] == results[15] == results[30], results
    return results[5]


def rule(**kw) -> dict[str, RuleConfig]:
    base = {"signal": "distress", "raise_at": 0.6, "clear_at": 0.4}
    return {"r": RuleConfig(**{**base, **kw})}


def test_raise_after_onset_hold_and_clear():
    events = same_at_all_rates(rule(onset_s=2.0), step((1.0, 0.8), (6.0, 0.2)), 8)
    assert events == [("raised", "r", "warning", 3.0), ("cleared", "r", "warning", 6.0)]


def test_short_spike_below_onset_raises_nothing():
    assert same_at_all_rates(rule(onset_s=2.0), step((1.0, 0.8), (2.6, 0.0), (4.0, 0.9), (5.8, 0.1)), 8) == []


def test_hysteresis_holds_between_clear_and_raise_levels():
    # 0.5 is below raise (0.6) but above clear (0.4): the alert holds; it clears only below 0.4.
    signal = step((1.0, 0.7), (2.0, 0.5), (3.0, 0.65), (4.0, 0.45), (5.0, 0.39))
    assert same_at_all_rates(rule(), signal, 6) == [("raised", "r", "warning", 1.0), ("cleared", "r", "warning", 5.0)]


def test_clear_needs_the_signal_low_for_clear_s():
    signal = step((1.0, 0.8), (3.0, 0.1), (3.4, 0.8), (4.0, 0.1))
    events = same_at_all_rates(rule(clear_s=1.0), signal, 7)
    assert events == [("raised", "r", "warning", 1.0), ("cleared", "r", "warning", 5.0)]


def test_cooldown_blocks_a_new_alert():
    signal = step((1.0, 0.8), (2.0, 0.1), (2.4, 0.8))
    events = same_at_all_rates(rule(cooldown_s=3.0), signal, 8)
    assert events == [("raised", "r", "warning", 1.0), ("cleared", "r", "warning", 2.0),
                      ("raised", "r", "warning", 5.0)]


def test_escalation_by_level_duration_and_missing_acknowledgement():
    by_level = same_at_all_rates(rule(critical_at=0.9), step((1.0, 0.7), (2.0, 0.95)), 3)
    assert by_level == [("raised", "r", "warning", 1.0), ("escalated", "r", "critical", 2.0)]
    straight_to_critical = same_at_all_rates(rule(critical_at=0.9), step((1.0, 0.95)), 2)
    assert straight_to_critical == [("raised", "r", "critical", 1.0)]
    by_duration = same_at_all_rates(rule(onset_s=1.0, critical_after_s=4.0), step((1.0, 0.8)), 6)
    assert by_duration == [("raised", "r", "warning", 2.0), ("escalated", "r", "critical", 5.0)]
    unacked = same_at_all_rates(rule(escalate_unacked_s=2.0), step((1.0, 0.8)), 4)
    assert unacked == [("raised", "r", "warning", 1.0), ("escalated", "r", "critical", 3.0)]
    acked = same_at_all_rates(rule(escalate_unacked_s=2.0), step((1.0, 0.8)), 4, acks={2.0: "r"})
    assert acked == [("raised", "r", "warning", 1.0), ("acknowledged", "r", "warning", 2.0)]


def test_unknown_signal_holds_state():
    signal = step((1.0, 0.8), (2.0, None), (4.0, 0.1))
    assert same_at_all_rates(rule(), signal, 5) == [("raised", "r", "warning", 1.0), ("cleared", "r", "warning", 4.0)]
    assert same_at_all_rates(rule(), step((1.0, None)), 3) == []


def test_unless_above_suppresses_and_clears():
    rules = {"asleep": RuleConfig(signal="closure_s", raise_at=60, clear_at=1, severity="info",
                                  unless_above={"distress": 0.4})}
    closure = lambda t: max(0.0, t - 1.0)  # noqa: E731 - eyes closed from t=1
    calm = same_at_all_rates(rules, closure, 70, extra=lambda t: {"distress": 0.1})
    assert calm == [("raised", "asleep", "info", 61.0)]
    distressed = same_at_all_rates(rules, closure, 70, extra=lambda t: {"distress": 0.1 if t < 65 else 0.5})
    assert distressed == [("raised", "asleep", "info", 61.0), ("cleared", "asleep", "info", 65.0)]


@pytest.mark.parametrize("fps", RATES)
def test_driver_profile_on_eye_signals(fps):
    """Eyes open 50 s, closed 2 s, open: exactly one microsleep alert, within one frame of 1.5 s closed.

    (2 s closed in a 52 s window is a PERCLOS of 0.04: no PERCLOS alert.)
    """
    subject = SubjectSignals()
    engine = RuleEngine(PROFILES["driver"], "driver")
    events = []
    for i in range(56 * fps + 1):
        t = round(i / fps, 9)
        closed = 50 * fps <= i < 52 * fps
        subject.update(t, 0.95 if closed else 0.05, {"happy": 1.0})
        events += engine.evaluate(t, subject.snapshot(t), 1)
    timeline = [(e["action"], e["rule"], e["severity"]) for e in events]
    assert timeline == [("raised", "microsleep", "critical"), ("cleared", "microsleep", "critical")]
    assert 51.5 - 1e-6 <= events[0]["t"] <= 51.5 + 1 / fps + 1e-3  # onset + at most one frame (target: +0.5 s)
    assert events[1]["t"] == pytest.approx(52.0)


@pytest.mark.parametrize("fps", RATES)
def test_perclos_and_blinks_are_time_weighted(fps):
    subject = SubjectSignals(window_s=60.0, min_coverage_s=20.0)
    for i in range(60 * fps):
        t = i / fps
        closed = (i % (4 * fps)) < round(0.4 * fps)  # a 0.4 s blink every 4 s: 10% closed
        subject.update(t, 0.9 if closed else 0.1, None)
    t_end = 60 - 1 / fps
    assert subject.perclos(t_end) == pytest.approx(0.10, abs=0.01)
    assert subject.blink_rate_per_min(t_end) == pytest.approx(15, abs=1)
    early = SubjectSignals(min_coverage_s=20.0)
    early.update(0.0, 0.9, None)
    early.update(1.0, 0.9, None)
    assert early.perclos(1.0) is None  # too little eye time yet to judge


def test_unknown_eyes_are_never_closed():
    subject = SubjectSignals()
    subject.update(0.0, 0.9, None)
    subject.update(1.0, None, None)  # eyes not found
    assert subject.closure_s(1.0) == 0.0 and subject.closed is None
    subject.update(2.0, 0.9, None)
    assert subject.closure_s(2.5) == pytest.approx(0.5)
    # With a gap, an unknown reading holds the closure without growing it, and a spell longer than the gap
    # ends it even when the next reading is already closed again (a slow or stalled feed).
    bridged = SubjectSignals(closure_gap_s=0.2)
    bridged.update(0.0, 0.9, None)
    bridged.update(0.1, None, None)
    assert bridged.closed is None and bridged.closure_s(0.15) == 0.0  # held at the last closed reading
    bridged.update(0.2, 0.9, None)
    assert bridged.closure_s(0.2) == pytest.approx(0.2)
    bridged.update(0.3, None, None)
    bridged.update(0.6, 0.9, None)
    assert bridged.closure_s(0.6) == 0.0


def test_a_blink_is_counted_when_the_eyes_open_inside_the_gap():
    """Closed 0.2 s, then open and unknown readings: the closure ends at the gap and counts as a blink when an
    open reading was seen; unknown readings alone end it without a blink."""
    def blinks(after: list[float | None]) -> float:
        subject = SubjectSignals(closure_gap_s=0.2)
        readings = [0.1] * 10 + [0.9] * 3 + after + [0.1] * 10
        for i, prob in enumerate(readings):
            subject.update(i / 15, prob, None)
        return subject.blink_rate_per_min(len(readings) / 15)
    assert blinks([0.1, None, None, None]) > 0
    assert blinks([None, None, 0.1, 0.1]) > 0
    assert blinks([None] * 4) == 0


@pytest.mark.parametrize("fps", (15, 30))
def test_an_unreadable_frame_inside_a_closure_does_not_restart_it(fps):
    """Closed 1 s, one frame unknown (a gate, a glare), closed 1 s more: one closure of 2 s with closure_gap_s;
    unknown readings longer than the gap end it, and unknown alone never starts one."""
    def run(unknown: set[int], gap: float = 0.2) -> list[tuple[str, float]]:
        subject = SubjectSignals(closure_gap_s=gap)
        engine = RuleEngine({"microsleep": PROFILES["driver"]["microsleep"]}, "driver")
        events, held = [], 0.0
        for i in range(6 * fps + 1):
            t = round(i / fps, 9)
            prob = None if i in unknown else 0.95 if fps <= i < 3 * fps else 0.05
            subject.update(t, prob, None)
            assert subject.closed is (None if prob is None else prob >= 0.5)
            if prob is None:  # the closure holds, never grows, on a frame not read closed
                assert subject.closure_s(t) <= held + 1e-9
            held = subject.closure_s(t)
            new = [(e["action"], e["t"]) for e in engine.evaluate(t, subject.snapshot(t), 1)]
            assert prob is not None or not any(action == "raised" for action, _ in new)
            events += new
        return events
    raised, cleared = run({2 * fps})
    assert raised[0] == "raised" and 2.5 - 1e-6 <= raised[1] <= 2.5 + 1 / fps + 1e-6
    assert cleared[0] == "cleared"
    assert run({2 * fps}, gap=0.0) == []
    assert run(set(range(2 * fps, 2 * fps + fps // 2))) == []  # half a second unreadable: two 1-s closures
    assert run(set(range(fps, 3 * fps))) == []  # unknown throughout: never closed
    # An unknown frame where the closure reaches 1.5 s does not raise; the next closed frame does.
    due = -(-5 * fps // 2)  # the first frame at or after 2.5 s
    late = run({due})
    assert late[0][0] == "raised" and late[0][1] == pytest.approx((due + 1) / fps, abs=1e-3)


@pytest.mark.parametrize("fps", RATES)
def test_face_absent_rule_on_presence(fps):
    presence = PresenceSignal()
    engine = RuleEngine(PROFILES["driver"], "driver")
    events = []
    for i in range(int(10 * fps) + 1):
        t = round(i / fps, 9)
        presence.update(t, not (2.0 <= t < 7.0))
        events += engine.evaluate(t, {"absent_s": presence.absent_s(t)}, None)
    timeline = [(e["action"], e["rule"], e["t"]) for e in events]
    # Last seen at 2.0 - 1/fps; absent >= 3 s at 5.0 - 1/fps: within one frame of the 3 s onset.
    assert timeline[0][:2] == ("raised", "face_absent") and timeline[0][2] == pytest.approx(5.0 - 1 / fps, abs=1e-3)
    assert timeline[1] == ("cleared", "face_absent", 7.0)


def test_profile_defaults_and_override_errors():
    assert PROFILES["driver"]["microsleep"].raise_at == 1.5
    assert PROFILES["patient"]["distress"].onset_s == 10.0
    assert not PROFILES["driver"]["distress"].enabled
    cfg = parse_config({"alerts": {"profile": "patient", "rules": {"distress": {"onset_s": 20}}}})
    assert cfg.alerts.effective_rules()["distress"].onset_s == 20
    with pytest.raises(ConfigError, match=r"rules\.distress\.onset_s: Input should be greater than or equal to 0"):
        parse_config({"alerts": {"profile": "patient", "rules": {"distress": {"onset_s": -1}}}})
    with pytest.raises(ConfigError, match=r"rules\.perclos\.raiseat: Extra inputs are not permitted"):
        parse_config({"alerts": {"profile": "driver", "rules": {"perclos": {"raiseat": 1}}}})
    with pytest.raises(ConfigError, match=r"clear_at \(2\.0\) must be <= raise_at"):
        parse_config({"alerts": {"profile": "driver", "rules": {"microsleep": {"clear_at": 2.0}}}})


def test_track_lost_clears_its_alerts():
    engine = RuleEngine(rule(), "test")
    engine.evaluate(0.0, {"distress": 0.9}, 7)
    assert len(engine.active()) == 1
    events = engine.drop_track(7, 1.0)
    assert events[0]["action"] == "cleared" and events[0]["reason"] == "track lost" and engine.active() == []


@pytest.mark.parametrize("fps", (15, 30))
def test_a_misread_open_frame_does_not_restart_a_closure(fps):
    """Closed 1 s, one frame read open, closed 1 s more: one closure of 2 s with closure_gap_s, none of
    1.5 s without; a real opening still ends the closure after the gap."""
    def run(gap: float) -> list[tuple[str, float]]:
        subject = SubjectSignals(closure_gap_s=gap)
        engine = RuleEngine({"microsleep": PROFILES["driver"]["microsleep"]}, "driver")
        events = []
        for i in range(6 * fps + 1):
            t = round(i / fps, 9)
            closed = fps <= i < 3 * fps and i != 2 * fps
            subject.update(t, 0.95 if closed else 0.05, None)
            events += [(e["action"], e["t"]) for e in engine.evaluate(t, subject.snapshot(t), 1)]
        return events
    assert run(0.0) == []
    raised, cleared = run(0.2)
    assert raised[0] == "raised" and 2.5 - 1e-6 <= raised[1] <= 2.5 + 1 / fps + 1e-6
    assert cleared[0] == "cleared" and 3.2 - 1e-6 <= cleared[1] <= 3.2 + 1 / fps + 1e-6
