"""Delivery: the outbox, MQTT, GPIO, the status page, systemd notify and the secrets they read.

May import the shared modules and every earlier stage; never the daemon, the CLI or preflight."""
