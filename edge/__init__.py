"""fer-edge device runtime. Never imports TensorFlow: a Pi has LiteRT, NumPy and OpenCV only."""

import time as _time

__version__ = "0.1.0"
PROCESS_START = _time.monotonic()  # for start-up-to-first-frame figures (interpreter start not included)
