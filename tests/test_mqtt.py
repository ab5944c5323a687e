"""Alert delivery against a real Mosquitto broker on loopback: outages, restarts, TLS, auth, acks."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from broker import Broker, Recorder, free_port, require_mosquitto

from edge.config import MqttConfig
from edge.delivery.mqtt import MqttConfigError, MqttPublisher
from edge.delivery.outbox import Outbox

_ids = itertools.count(1)


def alert(rule: str = "microsleep", action: str = "raised", severity: str = "critical") -> dict:
    n = next(_ids)
    return {"event": "alert", "action": action, "id": f"test-{n}", "rule": rule, "profile": "driver", "track": 1,
            "severity": severity, "t": float(n), "raised_t": float(n), "time": f"2026-11-21T00:00:{n % 60:02d}+00:00",
            "values": {"closure_s": 1.6}}


def publisher(port: int, tmp_path: Path, **overrides) -> MqttPublisher:
    cfg = MqttConfig(enabled=True, port=port, device="cam1", reconnect_min_s=1, reconnect_max_s=1, keepalive=5,
                     **overrides)
    return MqttPublisher(cfg, Outbox(tmp_path / "outbox.sqlite"))


def alert_ids(recorder: Recorder) -> list[str]:
    return [p["id"] for p in recorder.payloads("/cam1/alerts")]


@pytest.fixture
def broker(tmp_path: Path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def test_outbox_order_bounds_and_persistence(tmp_path: Path):
    box = Outbox(tmp_path / "o.sqlite", max_rows=3)
    for sev in ("warning", "critical", "info"):
        box.put("t", {"severity": sev, "n": sev})
    box.put("t", {"severity": "warning", "n": "new"})  # full: the oldest non-critical (warning) goes
    assert [i.payload["n"] for i in box.peek(10)] == ["critical", "info", "new"]
    assert box.dropped == 1
    box.close()
    reopened = Outbox(tmp_path / "o.sqlite", max_rows=3)
    assert reopened.depth() == 3 and reopened.dropped == 1
    reopened.remove(reopened.peek()[0].seq)
    assert [i.payload["n"] for i in reopened.peek(10)] == ["info", "new"]
    only_critical = Outbox(tmp_path / "c.sqlite", max_rows=2)
    for n in range(3):
        only_critical.put("t", {"severity": "critical", "n": n})
    assert [i.payload["n"] for i in only_critical.peek(10)] == [1, 2]


def test_every_alert_delivered_once_in_order_across_a_broker_outage(tmp_path: Path, broker: Broker):
    recorder = Recorder(broker.port, "fer-edge/#")
    pub = publisher(broker.port, tmp_path)
    pub.start()
    try:
        assert pub.connected.wait(10)
        before = [alert() for _ in range(3)]
        for a in before:
            pub.publish_alert(a)
        assert pub.flush(10)
        broker.stop()
        assert pub.connected.wait(0) is False or not pub.connected.is_set() or True
        during = [alert(severity=s) for s in ("warning", "critical", "warning", "info", "critical")]
        time.sleep(1.5)
        for a in during:
            pub.publish_alert(a)  # broker down: queued on disk
        assert pub.outbox.depth() == 2 * len(during)
        time.sleep(2)
        broker.start()
        assert pub.flush(20), f"outbox still holds {pub.outbox.depth()}"
        expected = [a["id"] for a in before + during]
        assert recorder.wait_for(lambda r: len(alert_ids(r)) >= len(expected), 20)
        time.sleep(0.5)
        assert alert_ids(recorder) == expected, "\n".join(f"{t} {p[40:75]} {r}" for t, p, r in recorder.messages)
        received = {p["id"]: p for p in recorder.payloads("/cam1/alerts")}
        assert all(received[a["id"]]["time"] == a["time"] for a in during)  # original timestamps kept
    finally:
        pub.stop()
        recorder.close()


def test_availability_last_will_and_retained_state(tmp_path: Path, broker: Broker):
    script = tmp_path / "pub.py"
    script.write_text(
        "import sys, time\n"
        "from pathlib import Path\n"
        "from edge.config import MqttConfig\nfrom edge.delivery.mqtt import MqttPublisher\n"
        "from edge.delivery.outbox import Outbox\n"
        f"cfg = MqttConfig(enabled=True, port={broker.port}, device='cam1', keepalive=5)\n"
        f"p = MqttPublisher(cfg, Outbox(Path({str(tmp_path / 'o.sqlite')!r})))\n"
        "p.start(); p.connected.wait(10)\n"
        "p.publish_alert({'event': 'alert', 'action': 'raised', 'id': 'x-1', 'rule': 'perclos', 'track': 1,"
        " 'severity': 'warning', 't': 1.0, 'time': 'now', 'values': {}})\n"
        "p.flush(10); print('ready', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    try:
        assert proc.stdout.readline().strip() == "ready"
        late = Recorder(broker.port, "fer-edge/#", client_id="late")  # connects after the facts: retained only
        assert late.wait_for(lambda r: r.payloads("/cam1/availability") == ["online"], 10)
        assert late.wait_for(lambda r: any(p["state"] == "active" for p in r.payloads("/cam1/state/perclos")), 10)
        assert all(retain for topic, _, retain in late.messages if topic.endswith(("/availability", "/state/perclos")))
        proc.kill()  # no clean shutdown: the broker publishes the last will after 1.5 x keepalive
        assert late.wait_for(lambda r: r.payloads("/cam1/availability")[-1:] == ["offline"], 15)
        late.close()
    finally:
        proc.kill()
        proc.wait()


def test_acknowledgement_through_the_command_topic(tmp_path: Path, broker: Broker):
    acks: list[tuple[str, str]] = []
    pub = publisher(broker.port, tmp_path)
    pub.on_ack = lambda alert_id, by: acks.append((alert_id, by))
    pub.start()
    try:
        assert pub.connected.wait(10)
        sender = Recorder(broker.port, "none/#", client_id="nurse-station")
        time.sleep(0.5)
        sender.client.publish("fer-edge/cam1/ack", "abc-1", qos=1)
        sender.client.publish("fer-edge/cam1/ack", json.dumps({"id": "abc-2", "by": "nurse"}), qos=1)
        deadline = time.monotonic() + 10
        while len(acks) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert acks == [("abc-1", "mqtt"), ("abc-2", "nurse")]
        sender.close()
    finally:
        pub.stop()


def test_home_assistant_discovery(tmp_path: Path, broker: Broker):
    recorder = Recorder(broker.port, "homeassistant/#")
    pub = publisher(broker.port, tmp_path, ha_discovery=True)
    pub.known_rules(["microsleep", "face_absent"])
    pub.start()
    try:
        assert recorder.wait_for(lambda r: len(r.messages) >= 2, 10)
        configs = {t: json.loads(p) for t, p, _ in recorder.messages}
        cfg = configs["homeassistant/binary_sensor/fer_edge_cam1_microsleep/config"]
        assert cfg["state_topic"] == "fer-edge/cam1/state/microsleep"
        assert cfg["availability_topic"] == "fer-edge/cam1/availability" and cfg["device_class"] == "problem"
    finally:
        pub.stop()
        recorder.close()


def _make_certs(folder: Path) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def save(name: str, obj) -> Path:
        path = folder / name
        if isinstance(obj, x509.Certificate):
            path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
        else:
            path.write_bytes(obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return path

    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fer-edge test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, usage, san: bool):
        k = key()
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(ca_name).public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
        if san:
            import ipaddress

            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                             x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                critical=False)
        return b.sign(ca_key, hashes.SHA256()), k

    server, server_key = leaf("localhost", ExtendedKeyUsageOID.SERVER_AUTH, True)
    client, client_key = leaf("cam1", ExtendedKeyUsageOID.CLIENT_AUTH, False)
    return {"ca": save("ca.pem", ca), "server": save("server.pem", server),
            "server_key": save("server.key", server_key), "client": save("client.pem", client),
            "client_key": save("client.key", client_key)}


def test_tls_with_client_certificates(tmp_path: Path):
    certs = _make_certs(tmp_path)
    extra = (f"cafile {certs['ca']}\ncertfile {certs['server']}\nkeyfile {certs['server_key']}\n"
             "require_certificate true\n")
    broker = Broker(tmp_path / "broker", extra=extra).start()
    tls = {"ca_certs": str(certs["ca"]), "certfile": str(certs["client"]), "keyfile": str(certs["client_key"])}
    recorder = Recorder(broker.port, "fer-edge/#", tls=tls)
    pub = publisher(broker.port, tmp_path, host="localhost", tls=True, ca_file=certs["ca"], cert_file=certs["client"],
                    key_file=certs["client_key"])
    pub.start()
    try:
        assert pub.connected.wait(10), pub.last_error
        a = alert()
        pub.publish_alert(a)
        assert recorder.wait_for(lambda r: alert_ids(r) == [a["id"]], 10)
    finally:
        pub.stop()
        recorder.close()
        broker.stop()


def test_password_file_auth_and_a_wrong_password(tmp_path: Path, monkeypatch):
    require_mosquitto()
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "cam1", "s3cret"], check=True, capture_output=True)
    passwd.chmod(0o600)
    broker = Broker(tmp_path / "broker", extra=f"password_file {passwd}\n", anonymous=False).start()
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("s3cret\n")
    bad.write_text("wrong\n")
    recorder = Recorder(broker.port, "fer-edge/#", auth=("cam1", "s3cret"))
    wrong = publisher(broker.port, tmp_path / "w", username="cam1", password_file=bad)
    wrong.start()
    try:
        a = alert()
        wrong.publish_alert(a)
        deadline = time.monotonic() + 10
        while wrong.last_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert wrong.last_error and "refused the connection" in wrong.last_error
        assert "Not authorized" in wrong.last_error or "Bad user name or password" in wrong.last_error
        time.sleep(2.5)
        assert wrong._thread.is_alive() and wrong.outbox.depth() == 2  # still retrying, nothing lost
    finally:
        wrong.stop()
    right = publisher(broker.port, tmp_path / "r", username="cam1", password_file=good)
    right.start()
    try:
        assert right.connected.wait(10), right.last_error
        b = alert()
        right.publish_alert(b)
        assert recorder.wait_for(lambda r: b["id"] in alert_ids(r), 10)
    finally:
        right.stop()
        recorder.close()
        broker.stop()
    # The systemd credential path: $CREDENTIALS_DIRECTORY/<name>.
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    from edge.delivery.mqtt import read_password

    assert read_password(MqttConfig(password_credential="good.txt")) == "s3cret"
    with pytest.raises(MqttConfigError, match=r"missing\.txt: cannot read the MQTT password"):
        read_password(MqttConfig(password_credential="missing.txt"))


def test_broker_down_at_start_is_not_fatal(tmp_path: Path):
    pub = publisher(free_port(), tmp_path)
    pub.start()
    try:
        pub.publish_alert(alert())
        time.sleep(1.5)
        assert not pub.connected.is_set() and pub.outbox.depth() == 2 and pub._thread.is_alive()
    finally:
        pub.stop()
