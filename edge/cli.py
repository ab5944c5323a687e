"""``fer-edge``: the device command line (daemon, one-shot classification, config check, bench, selftest)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge import __version__
from edge.config import DEFAULT_MODEL, MODELS_DIR, ConfigError
from edge.contract import ModelCardError
from edge.delivery.secrets import SecretError
from edge.errors import EXIT_BAD_INPUT, StartupError
from edge.vision.classifier import ModelLoadError

log = logging.getLogger("fer-edge")
SAMPLE_CONFIG = Path(__file__).resolve().parent / "samples" / "sample.yaml"

EPILOG = """examples:
  fer-edge run                                   # the bundled sample: shipped model on the astronaut clip
  fer-edge run --config /etc/fer-edge/config.yaml
  fer-edge classify photo.jpg another.png
  fer-edge validate-config /etc/fer-edge/config.yaml
  fer-edge bench --frames 300
  fer-edge selftest
  fer-edge replay drive.mp4 --profile driver --out replay/
exit status (every failure is one line naming the key, file or port):
  0  ok: the source ended, --max-frames reached, or SIGTERM
  1  runtime failure (an unexpected error); for `status`: stale or stopped
  2  bad input: the config, a file it names (video, image folder, model, card, password, token,
     certificate), a model that fails its card's SHA-256, a source with no readable frames
  3  a resource the config names is unavailable at start: web.port already in use"""


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                 "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (it may be replaced after set-up, e.g. by a test runner)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = _StderrHandler()
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _int_at_least(low: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value

    return parse


_positive_int = _int_at_least(1)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-edge",
        description="Facial-expression recognition on a Raspberry Pi or Jetson: camera -> faces -> expressions.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"fer-edge {__version__} (models: {MODELS_DIR})")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon (JSON-lines events on stdout or a file)")
    run.add_argument("--config", type=Path, default=SAMPLE_CONFIG,
                     help="YAML config (default: the bundled sample, the astronaut clip)")
    run.add_argument("--max-frames", type=_int_at_least(0), default=None,
                     help="stop after N frames, 0 = never (overrides run.max_frames)")
    run.add_argument("--allow-unverified-models", action="store_true",
                     help="load models whose SHA-256 is not in their card (sets classifier.verify_hash and "
                     "eyes.verify_hash to false; a warning is logged)")

    cls = sub.add_parser("classify", help="classify faces in still images; one JSON object per image")
    cls.add_argument("images", type=Path, nargs="+")
    cls.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                     help="model file with its card (default: the shipped int8 model)")
    cls.add_argument("--allow-unverified-model", action="store_true",
                     help="load a model whose SHA-256 is not in its card")
    cls.add_argument("--whole", action="store_true",
                     help="treat each image as one face crop (no detection), e.g. for 48x48 dataset-style images")

    val = sub.add_parser("validate-config", help="check a config file and print the effective settings")
    val.add_argument("config", type=Path)

    bench = sub.add_parser("bench", help="time detect+track+classify per frame and the classifier per face")
    bench.add_argument("--config", type=Path, default=SAMPLE_CONFIG)
    bench.add_argument("--frames", type=_positive_int, default=300, help="frames to time (the clip loops)")
    bench.add_argument("--json", action="store_true", help="print the result as JSON only")

    rp = sub.add_parser("replay", help="run a recording through detection, eye state, signals and alert rules; "
                        "write the alert timeline (JSON) and a signal plot (PNG)")
    rp.add_argument("video", type=Path)
    rp.add_argument("--profile", choices=["driver", "patient"], required=True)
    rp.add_argument("--config", type=Path, default=None, help="use this config's detector/rules/eyes settings")
    rp.add_argument("--out", type=Path, default=Path("replay"), help="folder for the timeline and plot")

    status = sub.add_parser("status", help="health of the running daemon: state, fps, last frame age, outbox, "
                            "model (exit 0 running, 1 stale or stopped, 2 no status)")
    status.add_argument("--config", type=Path, default=None, help="read run.state_dir from this config")
    status.add_argument("--state-dir", type=Path, default=None, help="default: $STATE_DIRECTORY, else "
                        "/var/lib/fer-edge if present, else ~/.local/state/fer-edge")
    status.add_argument("--json", action="store_true")

    st = sub.add_parser("selftest", help="check the model against its golden outputs with this machine's runtime")
    st.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    return p


def cmd_run(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.daemon import Daemon

    cfg = load_config(args.config)
    if args.allow_unverified_models:
        cfg = cfg.model_copy(update={"classifier": cfg.classifier.model_copy(update={"verify_hash": False}),
                                     "eyes": cfg.eyes.model_copy(update={"verify_hash": False})})
    _preflight(args.config, cfg, source=False)
    if args.max_frames is not None:
        cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"max_frames": args.max_frames})})
    setup_logging(cfg.logging.level, cfg.logging.format)
    daemon = Daemon(cfg, config_path=args.config)
    daemon.install_signal_handlers()
    try:
        return daemon.run()
    except StartupError as exc:
        exc.args = (f"{args.config}: {exc}",)
        raise


def cmd_classify(args: argparse.Namespace) -> int:
    import cv2

    from edge.config import DetectorConfig
    from edge.vision.classifier import load_model_with_card
    from edge.vision.detect import HaarFaceDetector, crop_face

    classifier, card = load_model_with_card(args.model, verify=not args.allow_unverified_model)
    detector = HaarFaceDetector(DetectorConfig(analysis_width=4096, min_neighbors=5, min_size=24))
    size = classifier.input_size[0]
    status = 0
    for path in args.images:
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            print(json.dumps({"image": str(path), "error": "unreadable image or file not found"}))
            status = 2
            continue
        boxes = [(0, 0, grey.shape[1], grey.shape[0])] if args.whole else detector.detect(grey)
        faces = []
        for box in boxes:
            crop = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA) if args.whole else \
                crop_face(grey, box, size, card.input.crop_scale)
            probs = classifier.predict(crop)[0]
            top = int(np.argmax(probs))
            faces.append({"box": [int(v) for v in box], "label": card.labels[top], "score": round(float(probs[top]), 4),
                          "probs": {lb: round(float(p), 4) for lb, p in zip(card.labels, probs, strict=True)}})
        print(json.dumps({"image": str(path), "model": card.name, "faces": faces}))
    return status


def _preflight(path: Path, cfg, source: bool = True) -> None:
    from edge import preflight

    problems = preflight.check(cfg, source)
    if problems:
        raise StartupError("\n".join(f"{path}: {p}" for p in problems))


def cmd_validate(args: argparse.Namespace) -> int:
    from edge.config import load_config

    cfg = load_config(args.config)
    _preflight(args.config, cfg)
    print(f"{args.config}: OK")
    print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    return 0


@contextlib.contextmanager
def _source_is_input() -> Iterator[None]:
    """A video the command was given that cannot be read is bad input (one line, exit 2), not a traceback."""
    from edge.capture.sources import SourceError  # imports OpenCV: only for the commands that read video

    try:
        yield
    except SourceError as exc:
        raise StartupError(str(exc)) from None


def cmd_bench(args: argparse.Namespace) -> int:
    from edge.bench import print_result, run_bench

    with _source_is_input():
        print_result(run_bench(args.config, args.frames), args.json)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from edge.config import AppConfig, load_config
    from edge.replay import replay

    if not args.video.is_file():
        print(f"fer-edge: {args.video}: video not found", file=sys.stderr)
        return 2
    cfg = load_config(args.config) if args.config else AppConfig()
    with _source_is_input():
        summary = replay(args.video, args.profile, cfg, args.out)
    for event in summary["alerts"]:
        print(f"{event['t']:9.2f} s  {event['action']:12s} {event['rule']:12s} {event['severity']:8s} "
              f"{json.dumps(event['values'])}")
    for note in summary["notes"].values():
        print(f"note: {note}")
    print(f"{summary['frames']} frames, {summary['duration_s']:.1f} s, {summary['alerts_raised']} alerts raised; "
          f"per hour: {summary['alerts_per_hour']}")
    print(f"wrote {summary['timeline']} and {summary['plot']}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import time

    from edge.config import RunConfig, load_config

    if args.state_dir:
        state_dir = args.state_dir
    elif args.config:
        state_dir = load_config(args.config).run.resolved_state_dir()
    elif Path("/var/lib/fer-edge/status.json").is_file():
        state_dir = Path("/var/lib/fer-edge")
    else:
        state_dir = RunConfig().resolved_state_dir()
    path = state_dir / "status.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        print(f"fer-edge: {path}: no status (is the daemon running with this state directory?)", file=sys.stderr)
        return 2
    age = time.time() - data.get("updated", 0)
    healthy = data.get("state") == "running" and age < 10
    data["status_age_s"] = round(age, 1)
    data["healthy"] = healthy
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        keys = ("state", "healthy", "fps", "faces", "last_frame_age_s", "status_age_s", "uptime_s", "outbox_depth",
                "outbox_oldest_age_s", "mqtt_connected", "active_alerts", "profile", "model", "model_sha256",
                "backend", "pid")
        for key in keys:
            print(f"{key:19s} {data.get(key)}")
    return 0 if healthy else 1


def cmd_selftest(args: argparse.Namespace) -> int:
    from edge.golden import GOLDEN_SUFFIX, check_golden
    from edge.vision.classifier import TFLiteClassifier

    golden = args.model.with_name(args.model.name.split("_int8")[0].split(".")[0] + GOLDEN_SUFFIX)
    if not golden.is_file():
        print(f"fer-edge: {golden}: golden file not found", file=sys.stderr)
        return 2
    classifier = TFLiteClassifier(args.model)
    problems = check_golden(classifier, golden)
    for problem in problems:
        print(f"MISMATCH {problem}")
    print(f"selftest {'FAILED' if problems else 'passed'}: {args.model.name} on {classifier.backend}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "run":
        setup_logging("WARNING")
    commands = {"run": cmd_run, "classify": cmd_classify, "validate-config": cmd_validate, "bench": cmd_bench,
                "selftest": cmd_selftest, "replay": cmd_replay,
                "status": cmd_status}
    try:
        return commands[args.command](args)
    except (ConfigError, ModelLoadError, ModelCardError, SecretError) as exc:
        print(f"fer-edge: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StartupError as exc:
        print(f"fer-edge: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
