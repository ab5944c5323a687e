"""fer-edge device runtime. Never imports TensorFlow: a Pi has LiteRT, NumPy and OpenCV only."""

__version__ = "0.1.0"
