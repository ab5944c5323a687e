"""Monitor: signals over time (closure, PERCLOS, blinks, distress, absence), alert rules and their profiles.

May import the shared modules, edge.capture and edge.vision; never edge.delivery or the daemon."""
