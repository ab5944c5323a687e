"""Vision: face detection, tracking, expression classification (with the tie-break), eye state, the per-frame pipeline.

May import the shared modules and edge.capture; never edge.monitor, edge.delivery or the daemon."""
