"""Alert rule definitions and the two monitoring profiles, with where each default comes from.

A rule watches one signal. It raises when the signal has been at or above ``raise_at`` for
``onset_s`` seconds, clears when it has been below ``clear_at`` (hysteresis) for ``clear_s``, then
stays quiet for ``cooldown_s``. Severity rises to critical when the signal reaches ``critical_at``,
when the condition has lasted ``critical_after_s``, or when a raised alert is not acknowledged
within ``escalate_unacked_s``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}

# Signals a rule can watch. Subject signals belong to the monitored face, monitor signals to the camera.
SUBJECT_SIGNALS = ("eye_closed_prob", "closure_s", "perclos", "blink_rate_per_min", "distress")
MONITOR_SIGNALS = ("absent_s",)


class RuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    signal: Literal["eye_closed_prob", "closure_s", "perclos", "blink_rate_per_min", "distress", "absent_s"]
    raise_at: float = Field(description="raise when the signal is >= this")
    clear_at: float = Field(description="clear when the signal is < this (<= raise_at: hysteresis)")
    onset_s: float = Field(0.0, ge=0, description="the condition must hold this long before raising")
    clear_s: float = Field(0.0, ge=0, description="the signal must stay below clear_at this long to clear")
    cooldown_s: float = Field(0.0, ge=0, description="after clearing, no new alert of this rule for this long")
    severity: Severity = "warning"
    critical_at: float | None = Field(None, description="severity becomes critical at this signal level")
    critical_after_s: float | None = Field(None, gt=0, description="critical once the condition lasted this long")
    escalate_unacked_s: float | None = Field(None, gt=0, description="critical if not acknowledged in this time")
    unless_above: dict[str, float] = Field(default_factory=dict,
                                           description="suppress while any of these signals is >= its value")
    description: str = ""

    @model_validator(mode="after")
    def _hysteresis(self) -> RuleConfig:
        if self.clear_at > self.raise_at:
            raise ValueError(f"clear_at ({self.clear_at}) must be <= raise_at ({self.raise_at})")
        if self.critical_at is not None and self.critical_at < self.raise_at:
            raise ValueError(f"critical_at ({self.critical_at}) must be >= raise_at ({self.raise_at})")
        return self


def _rule(**kwargs) -> RuleConfig:
    return RuleConfig(**kwargs)


PROFILES: dict[str, dict[str, RuleConfig]] = {
    # In-vehicle driver monitor. Sources: Wierwille et al. / NHTSA PERCLOS studies (share of a minute
    # with the eyes >= 80% closed; ~0.15 marks impaired alertness, >= 0.25 drowsy); microsleeps are
    # closures of about a second or more; Euro NCAP's driver-monitoring protocol wants a warning
    # immediately on detection, so the acute rules have no onset delay.
    "driver": {
        "microsleep": _rule(
            signal="closure_s", raise_at=1.5, clear_at=0.2, severity="critical", cooldown_s=2.0,
            description="eyes closed continuously >= 1.5 s (microsleep); critical at once"),
        "perclos": _rule(
            signal="perclos", raise_at=0.15, clear_at=0.10, critical_at=0.25, cooldown_s=30.0, clear_s=5.0,
            escalate_unacked_s=60.0,
            description="PERCLOS over 60 s >= 0.15 warning, >= 0.25 critical (NHTSA/Wierwille)"),
        "face_absent": _rule(
            signal="absent_s", raise_at=3.0, clear_at=0.5, severity="warning", escalate_unacked_s=10.0,
            description="no face in view for >= 3 s (driver looking away or camera blocked)"),
        "distress": _rule(
            enabled=False, signal="distress", raise_at=0.8, clear_at=0.4, onset_s=10.0, cooldown_s=60.0,
            description="sustained distress (off by default for drivers)"),
    },
    # Bedside patient monitor. Clinical alarm studies report 72-99% of alarms as false; alarm fatigue
    # is the failure mode, so every rule has an onset delay, hysteresis and a cooldown.
    "patient": {
        "distress": _rule(
            signal="distress", raise_at=0.9, clear_at=0.3, onset_s=10.0, critical_after_s=60.0, clear_s=5.0,
            cooldown_s=120.0, escalate_unacked_s=120.0,
            description="distress (fear+sad+angry+disgust, a distress class on top) >= 0.9 for 10 s warning, "
                        "for 60 s critical"),
        "out_of_view": _rule(
            signal="absent_s", raise_at=30.0, clear_at=1.0, severity="warning", escalate_unacked_s=120.0,
            description="patient out of view for >= 30 s"),
        "asleep": _rule(
            signal="closure_s", raise_at=60.0, clear_at=1.0, severity="info", unless_above={"distress": 0.3},
            description="eyes closed >= 60 s with low distress: sleep, reported as info, never an alarm"),
    },
    "none": {},
}
