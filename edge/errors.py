"""Exit codes of ``fer-edge`` and the errors that stop the daemon with one line instead of a traceback.

| code | meaning |
|---:|---|
| 0 | ok (the source ended, ``--max-frames`` reached, or SIGTERM) |
| 1 | runtime failure (an unexpected error; ``fer-edge status``: stale or stopped) |
| 2 | bad input: the config, a file it names (source, model, card, secret, certificate), an image |
| 3 | a resource the config names is unavailable at start (``web.port`` already in use) |
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3


class StartupError(RuntimeError):
    """Bad input found while starting: the message names the key and the file."""

    exit_code = EXIT_BAD_INPUT


class ResourceUnavailable(StartupError):
    """Something the config names exists but cannot be had now (a port in use)."""

    exit_code = EXIT_UNAVAILABLE
