"""Daemon configuration: YAML -> pydantic models (one per concern, unknown keys rejected).

Every field has a safe default, so a minimal config names only the source. Errors name the key
path and the problem, e.g. ``detector.scale_factor: Input should be greater than 1``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.monitor.profiles import PROFILES, RuleConfig
from edge.shipped import models_dir

MODELS_DIR = models_dir()
DEFAULT_MODEL = MODELS_DIR / "fer_edge_int8.tflite"
DEFAULT_EYE_MODEL = MODELS_DIR / "eye_state_int8.tflite"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """Where frames come from."""

    type: Literal["auto", "picamera2", "opencv", "file", "url", "folder"] = Field(
        "auto", description="auto picks from 'uri': an integer or /dev/video* is a camera, a folder is a "
        "folder, a scheme:// is a URL, anything else a video file")
    uri: str = Field("0", description="camera index, device path, video file, URL or image folder")
    width: int = Field(640, ge=32, le=4096, description="requested capture width (cameras)")
    height: int = Field(480, ge=32, le=4096, description="requested capture height (cameras)")
    fps: float = Field(30.0, gt=0, le=240, description="requested camera rate; folders are played at this rate")
    loop: bool = Field(False, description="restart a video file or folder at its end")
    realtime: bool = Field(False, description="pace file/folder playback at the file's frame rate")
    reconnect_initial_s: float = Field(0.5, gt=0, description="first wait before reopening a failed live source")
    reconnect_max_s: float = Field(30.0, gt=0, description="longest wait between reopen attempts")
    lores_width: int = Field(320, ge=32, description="picamera2: width of the grey analysis stream")
    lores_height: int = Field(240, ge=32, description="picamera2: height of the grey analysis stream")

    @field_validator("uri", mode="before")
    @classmethod
    def _camera_index_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class DetectorConfig(_Strict):
    """Haar-cascade face detection on a downscaled grey analysis frame."""

    cascade: str = Field("haarcascade_frontalface_default.xml", description="file in cv2.data.haarcascades, or a path")
    analysis_width: int = Field(320, ge=64, le=4096, description="frames are scaled to this width for detection")
    scale_factor: float = Field(1.2, gt=1.0, le=2.0, description="Haar pyramid step")
    min_neighbors: int = Field(5, ge=1, le=50, description="higher = fewer false faces")
    min_size: int = Field(24, ge=8, description="smallest face side in analysis-frame pixels "
                          "(24 at 320 wide = 48 px at 640, the model's own input size)")
    every_n_frames: int = Field(3, ge=1, le=100, description="detect on every Nth frame; the tracker carries faces")
    max_faces: int = Field(4, ge=1, le=32, description="largest faces kept per frame")
    redetect: bool = Field(True, description="when a tracked face is missed, search again around its last box "
                           "with relaxed settings (closed eyes weaken Haar's frontal-face features)")
    redetect_min_neighbors: int = Field(2, ge=1, le=50, description="minNeighbors of that second search")
    redetect_min_score: float | None = Field(0.5, gt=0, le=1, description="a face that search finds is kept only "
                                             "when it resembles the face's last detected appearance with at least "
                                             "this normalized correlation (a false face in a textured background "
                                             "does not); null keeps any")
    hold_min_score: float | None = Field(0.7, gt=0, le=1, description="when both searches miss a tracked face, "
                                         "it is held where its last detected appearance matches the frame with "
                                         "at least this normalized correlation (a face whose eyes close changes "
                                         "little; an empty seat does not match); null turns holding off")
    hold_max_s: float = Field(10.0, gt=0, description="longest a face is held after its last detection; a "
                              "scene that still matches a face that left (rare) delays face_absent by at most this")


class ClassifierConfig(_Strict):
    """Expression model on the TFLite runtime (or onnxruntime for .onnx)."""

    model: Path = Field(DEFAULT_MODEL, description="model file; its .card.json must sit beside it")
    backend: Literal["auto", "tflite", "onnx"] = "auto"
    threads: int = Field(1, ge=1, le=16, description="interpreter threads")
    verify_hash: bool = Field(True, description="refuse a model whose SHA-256 is not among its card's artifacts "
                              "(false: load it anyway, with a warning)")


class TrackerConfig(_Strict):
    """Track ids by IoU matching, probability smoothing in seconds."""

    iou_threshold: float = Field(0.3, gt=0, lt=1, description="minimum overlap to continue a track")
    max_missed_s: float = Field(1.0, gt=0, description="a track unseen this long is dropped")
    smoothing_s: float = Field(0.5, ge=0, description="EMA time constant of the class probabilities (0 = off)")
    uncertain_below: float = Field(0.6, ge=0, le=1, description="top smoothed probability under this is 'uncertain'")


class OutputConfig(_Strict):
    """Where per-frame expression events go."""

    events: str = Field("-", description="'-' for stdout, or a file path (JSON lines, appended)")
    every_n_frames: int = Field(1, ge=1, description="emit one expression event per track every N frames")
    annotated_video: Path | None = Field(None, description="write an annotated video here (privacy: off)")
    stats_interval_s: float = Field(10.0, gt=0, description="how often a 'stats' event is written")


class EyesConfig(_Strict):
    """Eye state of the monitored face (for drowsiness and sleep rules)."""

    enabled: bool = Field(True, description="classify eye state (needed by the driver profile)")
    model: Path = Field(DEFAULT_EYE_MODEL, description="eye-state model; its .card.json must sit beside it")
    method: Literal["anchored", "geometry", "cascade"] = Field(
        "anchored", description="how eyes are located in the face box: anchored = where the eye cascade last saw "
        "this face's eyes open (geometry positions until then); geometry = fixed positions; cascade = the eye "
        "cascade on every frame (closed eyes are often not found: unknown)")
    closed_threshold: float = Field(0.5, gt=0, lt=1, description="closed probability at or above this = closed")
    verify_hash: bool = Field(True, description="refuse an eye model whose SHA-256 is not among its card's "
                              "artifacts (false: load it anyway, with a warning)")
    min_face_px: int = Field(72, ge=0, description="faces narrower than this (full-frame pixels) have unknown eyes: "
                             "their eye patches (0.28 of the face) fall below the eye model's 24-px input")
    min_patch_contrast: float = Field(6.0, ge=0, description="an eye patch whose grey-level standard deviation is "
                                      "below this shows no eye (sunglasses, glare, darkness): unknown")
    require_both: bool = Field(False, description="closed only when both eyes read closed; one open and one "
                               "closed (turned head, occlusion, wink) is unknown. Off: the mean of the two eyes")
    smile_at: float | None = Field(0.4, gt=0, le=1, description="when the face's smoothed 'happy' probability is at "
                                   "or above this, a closed reading needs smile_closed_at (a laugh narrows the "
                                   "eyes); null turns the gate off")
    require_open_sighting: bool = Field(True, description="anchored method: eyes count as closed only on a face "
                                        "whose eyes were seen open at least once (a closure is a change from open; "
                                        "until then a closed reading is unknown). A patient already asleep when "
                                        "monitoring starts is not reported asleep until the eyes open once")
    smile_closed_at: float = Field(0.95, gt=0, le=1, description="closed probability a smiling face's eyes need "
                                   "to count as closed; below it they are unknown (1 = never closed)")


class SignalsConfig(_Strict):
    perclos_window_s: float = Field(60.0, ge=5, description="rolling PERCLOS window (the literature uses 60 s)")
    perclos_min_coverage_s: float = Field(20.0, ge=0, description="PERCLOS is unknown until this much eye time")
    blink_max_s: float = Field(0.5, gt=0, description="closures up to this long count as blinks")
    closure_gap_s: float = Field(0.2, ge=0, le=1, description="open or unknown eye readings shorter than "
                                 "this inside a closure do not end it (a misread or unreadable frame must not "
                                 "restart the microsleep clock)")
    distress_weights: dict[str, float] = Field(
        default_factory=lambda: {"angry": 1.0, "disgust": 1.0, "fear": 1.0, "sad": 1.0},
        description="distress = sum of weight x smoothed probability over these classes")
    distress_top_only: bool = Field(True, description="distress is 0 unless the top smoothed class is one of "
                                    "distress_weights' classes (a smile is never distress)")

    @field_validator("distress_weights")
    @classmethod
    def _weights_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, w in value.items() if not 0 <= w <= 1]
        if bad:
            raise ValueError(f"weights must be in [0, 1]: {', '.join(bad)}")
        return value


class AlertsConfig(_Strict):
    """Which rule set runs, and per-rule overrides of its defaults (see edge/monitor/profiles.py)."""

    profile: Literal["driver", "patient", "none"] = Field("none", description="driver, patient, or none")
    subject: Literal["largest", "all"] = Field("largest", description="rules watch one face (the largest when "
                                               "one is chosen, kept while it stays in view), or every face")
    min_face_px: int = Field(48, ge=0, description="faces narrower than this (full-frame pixels) are too small to "
                             "judge and are never the subject (48 = the expression model's input)")
    rules: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                             description="overrides by rule name, e.g. microsleep: {raise_at: 2.0}")

    @model_validator(mode="after")
    def _rules_valid(self) -> AlertsConfig:
        self.effective_rules()
        return self

    def effective_rules(self) -> dict[str, RuleConfig]:
        rules = dict(PROFILES[self.profile])
        for name, override in self.rules.items():
            if name not in rules and not (isinstance(override, dict) and "signal" in override):
                # A typo must not pass as a new rule: a new one has to name its signal.
                valid = ", ".join(sorted(rules)) or "none"
                raise ValueError(f"rules.{name}: unknown rule {name!r} (profile {self.profile} has: {valid}; a new "
                                 "rule needs signal, raise_at and clear_at)")
            base = rules[name].model_dump() if name in rules else {}
            try:
                rules[name] = RuleConfig.model_validate({**base, **override})
            except ValidationError as exc:
                problems = "; ".join(f"rules.{name}.{'.'.join(map(str, e['loc'])) or '(rule)'}: {e['msg']}"
                                     for e in exc.errors())
                raise ValueError(problems) from None
        return rules


class MqttConfig(_Strict):
    """MQTT delivery of alerts, state, availability and stats (off by default)."""

    enabled: bool = False
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    device: str | None = Field(None, description="topic segment for this monitor (default: the hostname)")
    topic_prefix: str = Field("fer-edge", min_length=1)
    client_id: str | None = Field(None, description="default: fer-edge-<device>")
    username: str | None = None
    password_file: Path | None = Field(None, description="file holding the password (never put it in the config)")
    password_credential: str | None = Field(None, description="systemd credential name ($CREDENTIALS_DIRECTORY)")
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive: int = Field(10, ge=2, le=3600, description="seconds; a frozen broker is noticed within 1-2x this, "
                           "and the broker publishes the last will (offline) after 1.5x")
    reconnect_min_s: int = Field(1, ge=1)
    reconnect_max_s: int = Field(30, ge=1)
    stats_interval_s: float = Field(30.0, gt=0)
    outbox_max: int = Field(10_000, ge=10, description="queued events kept during an outage (oldest non-critical "
                            "dropped first when full)")
    ha_discovery: bool = Field(False, description="publish Home Assistant MQTT discovery for each rule")
    ha_prefix: str = "homeassistant"

    @model_validator(mode="after")
    def _check(self) -> MqttConfig:
        if self.password_file and self.password_credential:
            raise ValueError("set only one of password_file and password_credential")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self


class GpioConfig(_Strict):
    """A buzzer and LEDs via gpiozero (BCM pin numbers); a pattern per severity."""

    enabled: bool = False
    buzzer_pin: int | None = Field(None, ge=0, le=53)
    info_led_pin: int | None = Field(None, ge=0, le=53)
    warning_led_pin: int | None = Field(None, ge=0, le=53)
    critical_led_pin: int | None = Field(None, ge=0, le=53)
    active_high: bool = Field(True, description="False for parts that switch on when the pin is low")


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1: reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class WebConfig(_Strict):
    """Local status page and JSON/Prometheus endpoints (off by default; loopback unless a token is set)."""

    enabled: bool = False
    host: str = Field("127.0.0.1", description="bind address; anything but loopback (127.0.0.0/8, ::1, localhost) "
                      "requires a token")
    allowed_hosts: list[str] = Field(default_factory=list, description="extra names the page may be reached by "
                                     "(Host header), e.g. bed-12.local; loopback names are always allowed")
    port: int = Field(8080, ge=0, le=65535, description="0 picks a free port (tests)")
    token_file: Path | None = Field(None, description="file holding the access token")
    token_credential: str | None = Field(None, description="systemd credential name holding the token")
    preview: bool = Field(False, description="serve a live annotated JPEG preview (privacy: off by default)")
    preview_fps: float = Field(4.0, gt=0, le=30, description="most preview frames encoded per second")

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> WebConfig:
        if self.enabled and not is_loopback(self.host) and not (self.token_file or self.token_credential):
            raise ValueError(f"host {self.host!r} is not loopback: set token_file or token_credential")
        if self.token_file and self.token_credential:
            raise ValueError("set only one of token_file and token_credential")
        return self


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = Field("text", description="json gives one structured record per line")


class RunConfig(_Strict):
    max_frames: int = Field(0, ge=0, description="stop after N frames (0 = run until the source ends)")
    state_dir: Path | None = Field(None, description="outbox and state (default: $STATE_DIRECTORY, else "
                                   "~/.local/state/fer-edge)")
    shutdown_flush_s: float = Field(3.0, ge=0, description="on SIGTERM, how long to try delivering queued alerts")

    def resolved_state_dir(self) -> Path:
        import os

        if self.state_dir is not None:
            return self.state_dir
        env = os.environ.get("STATE_DIRECTORY")
        return Path(env.split(":")[0]) if env else Path.home() / ".local" / "state" / "fer-edge"


class AppConfig(_Strict):
    source: SourceConfig = SourceConfig()
    detector: DetectorConfig = DetectorConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    tracker: TrackerConfig = TrackerConfig()
    eyes: EyesConfig = EyesConfig()
    signals: SignalsConfig = SignalsConfig()
    alerts: AlertsConfig = AlertsConfig()
    mqtt: MqttConfig = MqttConfig()
    gpio: GpioConfig = GpioConfig()
    web: WebConfig = WebConfig()
    output: OutputConfig = OutputConfig()
    logging: LoggingConfig = LoggingConfig()
    run: RunConfig = RunConfig()

    @model_validator(mode="after")
    def _check(self) -> AppConfig:
        if self.source.reconnect_max_s < self.source.reconnect_initial_s:
            raise ValueError("source.reconnect_max_s must be >= source.reconnect_initial_s")
        return self


class ConfigError(ValueError):
    """An invalid config file, with the file and every bad key in the message."""


def _format_errors(path: str, exc: ValidationError) -> str:
    lines = [f"{path}: invalid config"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].replace("Value error, ", "")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def parse_config(data: object, source: str = "<config>", base_dir: Path | None = None) -> AppConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        config = AppConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from None
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    return config


def _resolve_paths(config: AppConfig, base: Path) -> AppConfig:
    """Relative paths in a config file are relative to that file."""
    classifier = config.classifier
    if not classifier.model.is_absolute():
        classifier = classifier.model_copy(update={"model": (base / classifier.model).resolve()})
    eyes = config.eyes
    if not eyes.model.is_absolute():
        eyes = eyes.model_copy(update={"model": (base / eyes.model).resolve()})
    source = config.source
    if source.type in ("file", "folder", "auto") and not source.uri.isdigit() and "://" not in source.uri:
        candidate = Path(source.uri)
        if not candidate.is_absolute() and (base / candidate).exists():
            source = source.model_copy(update={"uri": str((base / candidate).resolve())})
    return config.model_copy(update={"classifier": classifier, "source": source, "eyes": eyes})


def load_config(path: str | Path) -> AppConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data, str(path), path.parent)

