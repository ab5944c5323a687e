from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture.sources import (
    FolderSource,
    Frame,
    OpenCVSource,
    Picamera2Source,
    ReconnectingSource,
    SourceError,
    open_source,
)
from edge.config import SourceConfig


def write_clip(path: Path, frames: int = 12, fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), i * 20 % 255, np.uint8))
    writer.release()
    return path


def read_all(source) -> list[Frame]:
    source.open()
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    source.close()
    return frames


def test_video_file_source(tmp_path: Path):
    clip = write_clip(tmp_path / "c.mp4")
    frames = read_all(open_source(SourceConfig(uri=str(clip))))
    assert len(frames) == 12
    assert frames[0].grey.shape == (48, 64) and frames[0].colour.shape == (48, 64, 3)
    assert [f.timestamp for f in frames[:3]] == pytest.approx([0.0, 0.1, 0.2])  # media time from the file's fps


def test_video_file_loops(tmp_path: Path):
    clip = write_clip(tmp_path / "c.mp4", frames=5)
    source = open_source(SourceConfig(uri=str(clip), loop=True))
    source.open()
    frames = [source.read() for _ in range(12)]
    assert all(f is not None for f in frames) and frames[-1].index == 11


def test_folder_source_skips_unreadable_files(tmp_path: Path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((30, 40), i * 50, np.uint8))
    (tmp_path / "03.jpg").write_bytes(b"broken")
    (tmp_path / "notes.txt").write_text("ignored")
    frames = read_all(open_source(SourceConfig(uri=str(tmp_path), fps=4)))
    assert [int(f.grey[0, 0]) for f in frames] == [0, 50, 100]
    assert frames[2].timestamp == pytest.approx(0.5)


def test_missing_inputs_are_reported(tmp_path: Path):
    with pytest.raises(SourceError, match="video file not found"):
        open_source(SourceConfig(uri=str(tmp_path / "none.mp4"))).open()
    with pytest.raises(SourceError, match="no images"):
        FolderSource(str(tmp_path), SourceConfig()).open()


def test_v4l2_like_live_source_reconnects_with_backoff(tmp_path: Path):
    """An OpenCV live source (a camera) that stops delivering is closed and reopened, forever."""
    clip = write_clip(tmp_path / "cam.mp4", frames=3)
    sleeps: list[float] = []
    states: list[str] = []
    inner = OpenCVSource(str(clip), SourceConfig(), live=True)  # a file played as if it were a camera
    source = ReconnectingSource(inner, SourceConfig(reconnect_initial_s=0.5, reconnect_max_s=2),
                                sleep=sleeps.append, on_state=lambda s, d: states.append(s))
    source.open()
    got = [source.read() for _ in range(7)]  # 3 frames, camera "dies", reopen, 3 more, dies, reopen...
    assert all(f is not None for f in got)
    assert states.count("lost") == 2 and source.failures == 2


class FlakyCamera:
    """Opens fail twice, then frames flow, then it vanishes mid-run."""

    live = True
    description = "flaky"

    def __init__(self):
        self.open_calls = 0
        self.reads = 0

    def open(self):
        self.open_calls += 1
        if self.open_calls <= 2:
            raise SourceError("flaky: no camera")

    def read(self):
        self.reads += 1
        if self.reads == 4:
            raise SourceError("flaky: camera unplugged")
        return Frame(np.zeros((4, 4), np.uint8), float(self.reads), self.reads)

    def close(self):
        pass


def test_backoff_doubles_up_to_the_cap():
    sleeps: list[float] = []
    source = ReconnectingSource(FlakyCamera(), SourceConfig(reconnect_initial_s=1, reconnect_max_s=1.5),
                                sleep=sleeps.append)
    source.open()
    assert sleeps == [1, 1.5]
    frames = [source.read() for _ in range(5)]
    assert [f.index for f in frames] == [1, 2, 3, 5, 6]  # read 4 failed; reopened and carried on
    assert source.reconnects == 2  # the first open after failed tries, and the reopen after the unplug


def test_stop_ends_a_source_that_keeps_failing():
    class Dead(FlakyCamera):
        def open(self):
            raise SourceError("dead")

    source = ReconnectingSource(Dead(), SourceConfig(), sleep=lambda s: source.stop())
    source.open()
    assert source.read() is None


def test_picamera2_uses_the_lores_y_plane():
    class FakeCamera:
        def create_preview_configuration(self, main, lores):
            self.sizes = (main["size"], lores["size"], lores["format"])
            return {}

        def configure(self, config):
            pass

        def start(self):
            pass

        def capture_array(self, stream):
            assert stream == "lores"
            yuv = np.zeros((240 * 3 // 2, 320), np.uint8)
            yuv[:240] = 77  # Y plane
            return yuv

        def stop(self):
            pass

        def close(self):
            pass

    camera = FakeCamera()
    source = Picamera2Source(SourceConfig(), camera_factory=lambda: camera)
    source.open()
    frame = source.read()
    assert frame.grey.shape == (240, 320) and int(frame.grey.max()) == 77
    assert camera.sizes == ((640, 480), (320, 240), "YUV420")


def test_picamera2_missing_is_a_clear_error():
    with pytest.raises(SourceError, match="python3-picamera2"):
        Picamera2Source(SourceConfig()).open()


def test_http_url_source_on_loopback(tmp_path: Path):
    """A real HTTP stream (the clip served by a loopback server) through the URL path of OpenCVSource."""
    import functools
    import http.server
    import threading

    write_clip(tmp_path / "clip.mp4", frames=8)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
        source = open_source(SourceConfig(uri=url))
        assert source.live and source.description == f"opencv:{url}"
        source.open()
        frames = [source.read() for _ in range(5)]
        assert all(f.grey.shape == (48, 64) for f in frames)
        source.close()
    finally:
        server.shutdown()
