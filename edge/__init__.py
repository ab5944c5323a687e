"""fer-edge device runtime. Never imports TensorFlow: a Pi has LiteRT, NumPy and OpenCV only.

Stages in data-path order: ``capture`` -> ``vision`` -> ``monitor`` -> ``delivery``; each imports only
the ones before it and the shared ``contract``, ``config``, ``errors`` and ``shipped``. ``daemon``,
``preflight`` and ``cli`` sit on top (tests/test_layers.py holds the rule).
"""

import time as _time

__version__ = "0.1.0"
PROCESS_START = _time.monotonic()  # for start-up-to-first-frame figures (interpreter start not included)
