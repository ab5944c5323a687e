"""Alert outputs on GPIO through gpiozero: a buzzer and up to three LEDs, a pattern per severity.

The highest severity among active alerts decides the pattern:

| severity | LED                         | buzzer                                   |
|----------|-----------------------------|------------------------------------------|
| critical | critical LED on             | 0.25 s on / 0.25 s off until cleared     |
| warning  | warning LED on              | 0.1 s beep every 2 s until cleared       |
| info     | info LED blinks 0.5/1.5 s   | silent                                   |

Acknowledging an alert silences its buzzer; the LED stays until the alert clears. Off a Pi, set
``GPIOZERO_PIN_FACTORY=mock`` (the tests do).
"""

from __future__ import annotations

import logging
from typing import Any

from edge.config import GpioConfig
from edge.monitor.profiles import SEVERITY_RANK

log = logging.getLogger(__name__)

BUZZ = {"critical": (0.25, 0.25), "warning": (0.1, 1.9)}


class GpioAlerts:
    def __init__(self, cfg: GpioConfig, pin_factory=None):
        from gpiozero import LED, Buzzer

        self.cfg = cfg
        kw: dict[str, Any] = {"active_high": cfg.active_high}
        if pin_factory is not None:
            kw["pin_factory"] = pin_factory
        self.buzzer = Buzzer(cfg.buzzer_pin, **kw) if cfg.buzzer_pin is not None else None
        self.leds = {
            sev: LED(pin, **kw)
            for sev, pin in (("info", cfg.info_led_pin), ("warning", cfg.warning_led_pin),
                             ("critical", cfg.critical_led_pin)) if pin is not None
        }
        self._active: dict[str, dict[str, Any]] = {}  # alert id -> {"severity", "acked"}
        self.pattern: tuple[str | None, bool] = (None, False)

    def handle(self, event: dict[str, Any]) -> None:
        if event.get("event") != "alert":
            return
        action, alert_id = event["action"], event["id"]
        if action in ("raised", "escalated"):
            entry = self._active.setdefault(alert_id, {"acked": False})
            entry["severity"] = event["severity"]
        elif action == "acknowledged" and alert_id in self._active:
            self._active[alert_id]["acked"] = True
        elif action == "cleared":
            self._active.pop(alert_id, None)
        self._apply()

    def _apply(self) -> None:
        top = max(self._active.values(), key=lambda a: SEVERITY_RANK[a["severity"]], default=None)
        severity = top["severity"] if top else None
        sound = bool(top) and any(not a["acked"] and a["severity"] == severity for a in self._active.values())
        if (severity, sound) == self.pattern:
            return
        self.pattern = (severity, sound)
        for sev, led in self.leds.items():
            if sev != severity:
                led.off()
            elif sev == "info":
                led.blink(on_time=0.5, off_time=1.5, background=True)
            else:
                led.on()
        if self.buzzer is not None:
            if sound and severity in BUZZ:
                on, off = BUZZ[severity]
                self.buzzer.beep(on_time=on, off_time=off, background=True)
            else:
                self.buzzer.off()
        log.info("GPIO pattern: %s%s", severity or "idle", "" if sound or not severity else " (silenced)")

    def close(self) -> None:
        for device in [*self.leds.values(), self.buzzer]:
            if device is not None:
                device.close()
