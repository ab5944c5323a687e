"""Capture: frame sources (picamera2, OpenCV camera/file/URL, image folder) with reconnect and backoff.

May import the shared modules (edge.config, edge.contract, edge.errors) only; no later stage."""
