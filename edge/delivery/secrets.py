"""Secrets (MQTT password, web token) come from a file or a systemd credential, never from the config."""

from __future__ import annotations

import os
from pathlib import Path


class SecretError(ValueError):
    pass


def read_secret(what: str, file: Path | None, credential: str | None, key: str | None = None) -> str | None:
    """``credential`` names a file in ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``).

    ``key`` (e.g. ``mqtt.password_file``) starts every error message, so the bad line of the config is named.
    """
    where = f"{key}: " if key else ""
    if credential:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise SecretError(f"{where}{what} credential {credential!r} is configured but $CREDENTIALS_DIRECTORY "
                              "is not set (use LoadCredential= in the systemd unit)")
        path = Path(directory) / credential
    elif file:
        path = Path(file)
    else:
        return None
    try:
        return path.read_text().strip("\r\n")
    except OSError as exc:
        raise SecretError(f"{where}{path}: cannot read the {what} ({exc.strerror})") from None
