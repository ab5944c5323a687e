"""systemd integration: the unit verifies and is hardened, sd_notify, SIGHUP reload, status, installer."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from events import wait_for_event

from edge.config import parse_config
from edge.daemon import Daemon
from edge.delivery.sdnotify import SystemdNotifier

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "fer-edge.service"
SAMPLE = ROOT / "edge" / "samples" / "astronaut.mp4"
MODEL = ROOT / "models" / "fer_edge_int8.tflite"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed (scripts/test.sh installs it)")
        pytest.skip(f"{tool} is not installed")
    return path


def test_unit_verifies_with_empty_stderr(tmp_path: Path):
    analyze = need("systemd-analyze")
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    exec_start = re.search(r"^ExecStart=(\S+)", UNIT.read_text(), re.M).group(1)
    stub = root / exec_start.lstrip("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    (root / "bin").mkdir()
    shutil.copy("/bin/kill", root / "bin/kill")
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/fer-edge.service")
    result = subprocess.run([analyze, "verify", f"--root={root}", "fer-edge.service"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_unit_exposure_is_at_most_3(tmp_path: Path):
    analyze = need("systemd-analyze")
    result = subprocess.run([analyze, "security", "--offline=yes", str(UNIT)], capture_output=True, text=True)
    match = re.search(r"Overall exposure level for fer-edge\.service: ([0-9.]+)", result.stdout + result.stderr)
    assert match, result.stdout[-500:] + result.stderr
    assert float(match.group(1)) <= 3.0
    text = UNIT.read_text()
    for key in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "StartLimitBurst=", "StateDirectory=fer-edge",
                "ConfigurationDirectory=fer-edge", "LoadCredential=mqtt-password", "SupplementaryGroups=video gpio",
                "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=\n", "DevicePolicy=closed"):
        assert key in text, key


class NotifySocket:
    """A real AF_UNIX datagram socket as systemd binds it; records (time, message)."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.path = path
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.sock.close()

    def times(self, prefix: str) -> list[float]:
        return [t for t, m in self.messages if any(line.startswith(prefix) for line in m.splitlines())]


def test_sd_notify_ready_status_watchdog_and_a_hung_loop(tmp_path: Path, monkeypatch):
    listener = NotifySocket(tmp_path / "notify.sock")
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "200000"})
    cfg = parse_config({"source": {"uri": str(SAMPLE), "realtime": True},
                        "classifier": {"model": str(MODEL)},
                        "output": {"events": str(tmp_path / "events.jsonl")},
                        "run": {"max_frames": 60, "state_dir": str(tmp_path / "state")}})
    daemon = Daemon(cfg, notifier=notifier)
    real = daemon.pipeline.process
    hang: dict[str, float] = {}

    def sometimes_hangs(frame):
        if frame.index == 25:
            hang["start"] = time.monotonic()
            time.sleep(1.5)  # a stuck frame loop
            hang["end"] = time.monotonic()
        return real(frame)

    monkeypatch.setattr(daemon.pipeline, "process", sometimes_hangs)
    assert daemon.run() == 0
    time.sleep(0.3)
    listener.close()
    ready, pings, stopping = listener.times("READY=1"), listener.times("WATCHDOG=1"), listener.times("STOPPING=1")
    assert len(ready) == 1 and listener.times("STATUS=") and stopping
    assert ready[0] <= pings[0] and stopping[-1] >= pings[-1]
    assert any("fps" in m for _, m in listener.messages if m.startswith("STATUS="))
    assert len(pings) >= 6  # every 0.1 s (half of WATCHDOG_USEC) while frames flow
    during = [t for t in pings if hang["start"] + 0.05 < t < hang["end"]]
    assert during == []  # no frames, no pings: systemd would restart a hung daemon
    assert any(t > hang["end"] for t in pings)  # pings resume once frames flow again


def test_notifier_is_silent_without_systemd():
    notifier = SystemdNotifier({})
    assert not notifier.enabled and notifier.watchdog() is False
    notifier.ready()  # no socket: nothing happens, nothing raised


def _config_text(events: Path, state: Path, every: int = 15, extra: str = "") -> str:
    return (f"source:\n  uri: {SAMPLE}\n  realtime: true\n  loop: true\nclassifier:\n  model: {MODEL}\n"
            f"output:\n  events: {events}\n  every_n_frames: {every}\nrun:\n  state_dir: {state}\n{extra}")


def test_sighup_reload_accepts_good_and_rejects_bad_config_and_status_reports(tmp_path: Path):
    events, state, config = tmp_path / "events.jsonl", tmp_path / "state", tmp_path / "config.yaml"
    config.write_text(_config_text(events, state))
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_event(events, lambda e: e["event"] == "expression")
        status = subprocess.run([sys.executable, "-m", "edge.cli", "status", "--state-dir", str(state), "--json"],
                                cwd=ROOT, capture_output=True, text=True)
        assert status.returncode == 0, status.stdout + status.stderr
        health = json.loads(status.stdout)
        assert health["state"] == "running" and health["healthy"] and health["model"] == "fer_edge"
        assert health["last_frame_age_s"] is not None and "outbox_depth" in health

        config.write_text(_config_text(events, state, every=3, extra="alerts:\n  profile: patient\n"))
        proc.send_signal(signal.SIGHUP)
        ok = wait_for_event(events, lambda e: e["event"] == "reload")
        assert ok["ok"] is True and ok["analysis_rebuilt"] is True

        config.write_text(_config_text(events, state, extra="detector:\n  scale_factor: 0.5\n"))
        proc.send_signal(signal.SIGHUP)
        bad = wait_for_event(events, lambda e: e["event"] == "reload" and not e["ok"])
        assert "detector.scale_factor" in bad["error"]
        time.sleep(0.5)
        assert proc.poll() is None  # still running on the previous config
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        proc.kill()
    stopped = subprocess.run([sys.executable, "-m", "edge.cli", "status", "--state-dir", str(state)], cwd=ROOT,
                             capture_output=True, text=True)
    assert stopped.returncode == 1 and "stopped" in stopped.stdout
    missing = subprocess.run([sys.executable, "-m", "edge.cli", "status", "--state-dir", str(tmp_path / "none")],
                             cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 2 and "no status" in missing.stderr


def test_install_script_dry_run_and_shellcheck():
    result = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), "--dry-run"], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for step in ("python3 -m venv --system-site-packages /opt/fer-edge/venv", "systemctl enable fer-edge.service",
                 "fer-edge selftest", "/etc/systemd/system/fer-edge.service", "fer_edge_int8.tflite"):
        assert step in out, step
    commands = [line for line in out.splitlines() if line.startswith("+ ")]
    assert commands and not any("tensorflow" in c.lower() or "[train]" in c for c in commands)
    uninstall = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), "--dry-run", "--uninstall"],
                               capture_output=True, text=True)
    assert uninstall.returncode == 0 and "systemctl daemon-reload" in uninstall.stdout
    bad = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option" in bad.stderr
    shellcheck = need("shellcheck")
    scripts = [str(p) for p in (ROOT / "scripts").glob("*.sh")] + [str(ROOT / ".ci" / "run")]
    check = subprocess.run([shellcheck, *scripts], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_installed_config_is_valid():
    from edge.config import load_config

    cfg = load_config(ROOT / "systemd" / "config.yaml")
    assert str(cfg.classifier.model).startswith("/usr/local/share/fer-edge/models/")
    assert cfg.alerts.profile == "driver" and cfg.logging.format == "json"


def test_reload_rejects_a_config_the_monitor_refuses_and_keeps_running(tmp_path: Path):
    events, state, config = tmp_path / "events.jsonl", tmp_path / "state", tmp_path / "config.yaml"
    config.write_text(_config_text(events, state))
    cfg = parse_config(yaml.safe_load(config.read_text()))
    daemon = Daemon(cfg, config_path=config)
    monitor = daemon.monitor
    config.write_text(_config_text(events, state, extra="signals:\n  distress_weights: {bored: 1.0}\n"))
    assert daemon.reload() is False  # checked before anything is touched, not raised from the frame loop
    assert daemon.monitor is monitor and daemon.cfg is cfg
    rejected = [json.loads(line) for line in events.read_text().splitlines()][-1]
    assert rejected["event"] == "reload" and not rejected["ok"] and "signals.distress_weights" in rejected["error"]


def test_reload_to_an_unreadable_video_is_rejected_and_the_old_source_stays(tmp_path: Path):
    events, state, config = tmp_path / "events.jsonl", tmp_path / "state", tmp_path / "config.yaml"
    config.write_text(_config_text(events, state))
    cfg = parse_config(yaml.safe_load(config.read_text()))
    daemon = Daemon(cfg, config_path=config)
    daemon._open_source()
    source = daemon.source
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")  # exists, so the config check passes; only opening it can tell
    config.write_text(_config_text(events, state).replace(str(SAMPLE), str(broken)))
    assert daemon.reload() is False
    assert daemon.source is source and daemon.cfg is cfg and daemon._read() is not None  # still reading the clip
    rejected = [json.loads(line) for line in events.read_text().splitlines()][-1]
    assert rejected["event"] == "reload" and not rejected["ok"]
    assert rejected["error"].startswith("source.uri: ") and "broken.mp4" in rejected["error"]
    daemon.source.close()
