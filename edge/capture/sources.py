"""Frame sources behind one small interface: picamera2, OpenCV (V4L2/file/URL), and image folders.

A source yields :class:`Frame` objects holding the grey analysis image (what detection and
classification read) and, when available, the colour image (only for annotated output). Live
sources that fail are reopened with exponential backoff by :class:`ReconnectingSource`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edge.config import SourceConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff"}


@dataclass
class Frame:
    grey: np.ndarray  # uint8 (H, W)
    timestamp: float  # seconds; wall clock for live sources, media time for files
    index: int
    colour: np.ndarray | None = None  # BGR, when the source has it


class SourceError(RuntimeError):
    """A source could not be opened or stopped delivering frames."""


class FrameSource(Protocol):
    live: bool
    description: str

    def open(self) -> None: ...

    def read(self) -> Frame | None:
        """The next frame; None at the end of a file or folder. Raises SourceError on failure."""

    def close(self) -> None: ...


class OpenCVSource:
    """cv2.VideoCapture: a camera index or /dev/video path (V4L2), a video file, or an RTSP/HTTP URL."""

    def __init__(self, uri: str, cfg: SourceConfig, live: bool):
        self.uri, self.cfg, self.live = uri, cfg, live
        self.description = f"opencv:{uri}"
        self._cap: cv2.VideoCapture | None = None
        self._index = 0
        self._fps = 0.0
        self._started = 0.0

    def open(self) -> None:
        target: int | str = int(self.uri) if self.uri.isdigit() else self.uri
        if not self.live and not Path(self.uri).is_file():
            raise SourceError(f"{self.uri}: video file not found")
        backend = cv2.CAP_V4L2 if isinstance(target, int) or self.uri.startswith("/dev/video") else cv2.CAP_ANY
        cap = cv2.VideoCapture(target, backend)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.uri}: cannot open (no such camera, unreadable file or unreachable URL)")
        if self.live:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
            cap.set(cv2.CAP_PROP_FPS, self.cfg.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a backlog
        self._fps = cap.get(cv2.CAP_PROP_FPS) or self.cfg.fps
        if not np.isfinite(self._fps) or self._fps <= 0 or self._fps > 1000:
            self._fps = self.cfg.fps
        self._cap = cap
        self._started = time.monotonic()
        log.info("opened %s (%s fps)", self.description, round(self._fps, 2))

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceError(f"{self.uri}: not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            if self.live:
                raise SourceError(f"{self.uri}: camera stopped delivering frames")
            if self.cfg.loop and self._index > 0:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = self._cap.read()
            if not ok or image is None:
                return None
        if self.live:
            timestamp = time.time()
        else:
            timestamp = self._index / self._fps
            if self.cfg.realtime:
                delay = self._started + timestamp - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        frame = _to_frame(image, timestamp, self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FolderSource:
    """Images in a folder, in name order, played at ``cfg.fps`` media time."""

    live = False

    def __init__(self, folder: str, cfg: SourceConfig):
        self.folder, self.cfg = Path(folder), cfg
        self.description = f"folder:{folder}"
        self._files: list[Path] = []
        self._pos = 0
        self._index = 0

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder}: image folder not found")
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f"{self.folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")

    def read(self) -> Frame | None:
        unreadable_in_a_row = 0
        while True:
            if self._pos >= len(self._files):
                if not self.cfg.loop:
                    if self._index == 0:
                        raise SourceError(f"{self.folder}: no readable images ({len(self._files)} unreadable)")
                    return None
                self._pos = 0
            path = self._files[self._pos]
            self._pos += 1
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is None:
                unreadable_in_a_row += 1
                if unreadable_in_a_row >= len(self._files):  # a whole pass: looping would spin forever
                    raise SourceError(f"{self.folder}: no readable images ({len(self._files)} unreadable)")
                log.warning("skipping unreadable image %s", path)
                continue
            frame = _to_frame(image, self._index / self.cfg.fps, self._index)
            self._index += 1
            return frame

    def close(self) -> None:
        self._files = []


class Picamera2Source:
    """Raspberry Pi camera via picamera2 (imported lazily: it needs libcamera from the OS).

    Like picamera2's face-detection example: a colour main stream for display and a small YUV420
    'lores' stream whose Y plane is a free grey image for analysis.
    """

    live = True

    def __init__(self, cfg: SourceConfig, camera_factory: Callable[[], object] | None = None):
        self.cfg = cfg
        self.description = "picamera2"
        self._factory = camera_factory
        self._camera = None
        self._index = 0

    def open(self) -> None:
        if self._factory is None:
            try:
                from picamera2 import Picamera2
            except ImportError:
                raise SourceError("picamera2 is not installed (on a Pi: sudo apt install python3-picamera2, "
                                  "and a venv created with --system-site-packages)") from None
            self._factory = Picamera2
        try:
            camera = self._factory()
            config = camera.create_preview_configuration(
                main={"size": (self.cfg.width, self.cfg.height), "format": "RGB888"},
                lores={"size": (self.cfg.lores_width, self.cfg.lores_height), "format": "YUV420"},
            )
            camera.configure(config)
            camera.start()
        except Exception as exc:  # libcamera raises assorted errors for a missing or busy camera
            raise SourceError(f"picamera2: cannot start the camera ({exc})") from None
        self._camera = camera

    def read(self) -> Frame | None:
        if self._camera is None:
            raise SourceError("picamera2: not open")
        try:
            yuv = self._camera.capture_array("lores")
        except Exception as exc:
            raise SourceError(f"picamera2: capture failed ({exc})") from None
        grey = np.ascontiguousarray(yuv[: self.cfg.lores_height, : self.cfg.lores_width])
        frame = Frame(grey=grey, timestamp=time.time(), index=self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._camera is not None:
            try:
                self._camera.stop()
                self._camera.close()
            except Exception:  # closing a vanished camera must not take the daemon down
                log.debug("picamera2 close failed", exc_info=True)
            self._camera = None


class ReconnectingSource:
    """Wraps a live source: on failure, close and reopen with exponential backoff, forever.

    ``read`` returns None only when the wrapped (non-live) source ends or ``stop()`` was called.
    """

    def __init__(self, inner: FrameSource, cfg: SourceConfig, sleep: Callable[[float], None] | None = None,
                 on_state: Callable[[str, str], None] | None = None):
        self.inner, self.cfg = inner, cfg
        self.live = inner.live
        self.description = inner.description
        self.failures = 0
        self.reconnects = 0
        self._stopped = threading.Event()
        self._open = False
        self._on_state = on_state or (lambda state, detail: None)
        self._sleep = sleep or self._stopped.wait  # the backoff wait ends as soon as stop() is called

    def stop(self) -> None:
        """Thread- and signal-safe: ends a backoff wait at once."""
        self._stopped.set()

    def open(self) -> None:
        self._reopen()

    def _reopen(self) -> None:
        delay = self.cfg.reconnect_initial_s
        while not self._stopped.is_set():
            try:
                self.inner.open()
                self._open = True
                if self.failures:
                    self.reconnects += 1
                    self._on_state("reconnected", self.description)
                return
            except SourceError as exc:
                if not self.live:
                    raise
                self.failures += 1
                log.warning("%s; retrying in %.1f s", exc, delay)
                self._on_state("unavailable", str(exc))
                self._sleep(delay)
                delay = min(delay * 2, self.cfg.reconnect_max_s)

    def read(self) -> Frame | None:
        while not self._stopped.is_set():
            if not self._open:
                self._reopen()
                continue
            try:
                return self.inner.read()
            except SourceError as exc:
                if not self.live:
                    raise
                self.failures += 1
                log.warning("%s; reopening", exc)
                self._on_state("lost", str(exc))
                self.inner.close()
                self._open = False
        return None

    def close(self) -> None:
        self.inner.close()
        self._open = False


def _to_frame(image: np.ndarray, timestamp: float, index: int) -> Frame:
    if image.ndim == 2:
        return Frame(grey=image, timestamp=timestamp, index=index)
    if image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return Frame(grey=cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), timestamp=timestamp, index=index, colour=image)


def source_kind(cfg: SourceConfig) -> str:
    """``cfg.type`` with ``auto`` resolved from the URI: opencv (a camera), url, folder, file or picamera2."""
    uri = cfg.uri
    if cfg.type != "auto":
        return cfg.type
    if uri.isdigit() or uri.startswith("/dev/video"):
        return "opencv"
    if "://" in uri:
        return "url"
    return "folder" if Path(uri).is_dir() else "file"


def open_source(cfg: SourceConfig, on_state: Callable[[str, str], None] | None = None) -> ReconnectingSource:
    """Build the configured source (not yet opened), wrapped for reconnection."""
    kind = source_kind(cfg)
    uri = cfg.uri
    inner: FrameSource
    if kind == "picamera2":
        inner = Picamera2Source(cfg)
    elif kind == "folder":
        inner = FolderSource(uri, cfg)
    elif kind == "file":
        inner = OpenCVSource(uri, cfg, live=False)
    else:  # opencv device or url
        inner = OpenCVSource(uri, cfg, live=True)
    return ReconnectingSource(inner, cfg, on_state=on_state)
