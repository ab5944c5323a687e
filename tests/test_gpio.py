"""GPIO alert patterns on gpiozero's mock pin factory."""

import time

import pytest
from gpiozero.pins.mock import MockFactory

from edge.config import GpioConfig
from edge.delivery.gpio import GpioAlerts

PINS = {"buzzer_pin": 18, "info_led_pin": 22, "warning_led_pin": 23, "critical_led_pin": 24}


@pytest.fixture
def factory():
    return MockFactory()


def event(action: str, alert_id: str, severity: str) -> dict:
    return {"event": "alert", "action": action, "id": alert_id, "severity": severity}


def toggles(pin, seconds: float) -> int:
    pin.clear_states()
    time.sleep(seconds)
    return sum(1 for _ in pin.states) - 1


def test_patterns_per_severity(factory):
    gpio = GpioAlerts(GpioConfig(enabled=True, **PINS), pin_factory=factory)
    buzzer, info, warning, critical = (factory.pin(PINS[k]) for k in PINS)
    assert not any(p.state for p in (buzzer, info, warning, critical))

    gpio.handle(event("raised", "a", "warning"))
    assert warning.state and not critical.state and not info.state
    assert 1 <= toggles(buzzer, 0.5) <= 3  # 0.1 s beep every 2 s: at most one beep (2 edges) in 0.5 s

    gpio.handle(event("raised", "b", "critical"))  # the highest severity wins
    assert critical.state and not warning.state
    assert toggles(buzzer, 1.05) >= 3  # 0.25 s on / 0.25 s off

    gpio.handle(event("acknowledged", "b", "critical"))  # silenced, LED stays
    time.sleep(0.05)
    assert not buzzer.state and critical.state and toggles(buzzer, 0.6) == 0

    gpio.handle(event("cleared", "b", "critical"))  # back to the warning, which is not acknowledged
    assert warning.state and not critical.state
    gpio.handle(event("cleared", "a", "warning"))
    time.sleep(0.05)
    assert not any(p.state for p in (buzzer, info, warning, critical))
    gpio.close()


def test_info_blinks_and_never_buzzes(factory):
    gpio = GpioAlerts(GpioConfig(enabled=True, **PINS), pin_factory=factory)
    gpio.handle(event("raised", "s", "info"))
    assert toggles(factory.pin(PINS["info_led_pin"]), 2.1) >= 2
    assert toggles(factory.pin(PINS["buzzer_pin"]), 0.3) == 0
    gpio.close()


def test_active_low_parts(factory):
    gpio = GpioAlerts(GpioConfig(enabled=True, critical_led_pin=5, active_high=False), pin_factory=factory)
    assert factory.pin(5).state  # off = high for an active-low LED
    gpio.handle(event("raised", "x", "critical"))
    assert not factory.pin(5).state
    gpio.close()


def test_escalation_switches_pattern(factory):
    gpio = GpioAlerts(GpioConfig(enabled=True, **PINS), pin_factory=factory)
    gpio.handle(event("raised", "p", "warning"))
    gpio.handle(event("escalated", "p", "critical"))
    assert factory.pin(PINS["critical_led_pin"]).state and not factory.pin(PINS["warning_led_pin"]).state
    assert gpio.pattern == ("critical", True)
    gpio.close()
