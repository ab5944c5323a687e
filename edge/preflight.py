"""Checks of what a config names on this machine (files, secrets, certificates), before anything starts.

``fer-edge validate-config`` and ``fer-edge run`` both call :func:`check`, so a missing video, folder,
password file, token file or CA file is named with its key instead of surfacing later as a traceback.
What only the running daemon can know (a port in use, unreadable frames) is reported by the daemon.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from edge.capture.sources import FolderSource, SourceError, source_kind
from edge.config import AppConfig
from edge.contract import ModelCard, ModelCardError, card_path_for, verify_model_bytes
from edge.delivery.mqtt import read_password
from edge.delivery.secrets import SecretError
from edge.delivery.web import read_token


def _file(key: str, path: Path | None, what: str) -> list[str]:
    if path is None:
        return []
    if not Path(path).is_file():
        return [f"{key}: {path}: {what} not found"]
    if not os.access(path, os.R_OK):
        return [f"{key}: {path}: {what} is not readable"]
    return []


def _source(cfg: AppConfig) -> list[str]:
    kind, uri = source_kind(cfg.source), cfg.source.uri
    if kind == "file":
        return _file("source.uri", Path(uri), "video file")
    if kind == "folder":
        try:
            FolderSource(uri, cfg.source).open()  # lists the folder, reads no image
        except SourceError as exc:
            return [f"source.uri: {exc}"]
    return []


def _model(key: str, path: Path, verify: bool, needs_label: str | None = None) -> list[str]:
    """The model file and its card exist, (with ``verify``) its bytes hash to one of the card's artifacts, and
    its card names ``needs_label`` when one is given."""
    problems = _file(key, path, "model file")
    if problems:
        return problems
    card_file = card_path_for(path)
    try:
        card = ModelCard.load(card_file)
        if verify:
            verify_model_bytes(card, card_file, path, path.read_bytes())
    except ModelCardError as exc:
        return [f"{key}: {exc}"]
    if needs_label and needs_label not in card.labels:
        return [f"{key}: {card_file}: labels {list(card.labels)} have no {needs_label!r} class"]
    return []


def _secret(credential: str | None, read: Callable[[], object]) -> list[str]:
    """``read`` the secret; a systemd credential only the service has is checked when the daemon starts."""
    if credential and not os.environ.get("CREDENTIALS_DIRECTORY"):
        return []
    try:
        read()
    except SecretError as exc:
        return [str(exc)]
    return []


def check(cfg: AppConfig, source: bool = True) -> list[str]:
    """Every problem found, one line each, each starting with the config key.

    ``source=False`` leaves the source to the daemon, which reports it with its start and stop events.
    """
    problems = _source(cfg) if source else []
    problems += _model("classifier.model", Path(cfg.classifier.model), cfg.classifier.verify_hash)
    if cfg.eyes.enabled:
        problems += _model("eyes.model", Path(cfg.eyes.model), cfg.eyes.verify_hash, needs_label="closed")
    if cfg.mqtt.enabled:
        m = cfg.mqtt
        problems += _secret(m.password_credential, lambda: read_password(m))
        if m.tls:
            problems += _file("mqtt.ca_file", m.ca_file, "CA file")
            problems += _file("mqtt.cert_file", m.cert_file, "certificate file")
            problems += _file("mqtt.key_file", m.key_file, "key file")
    if cfg.web.enabled:
        problems += _secret(cfg.web.token_credential, lambda: read_token(cfg.web))
    return problems
