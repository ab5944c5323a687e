"""Where the shipped int8 models, their cards and golden files are, however fer-edge was installed.

A checkout (editable install, or ``PYTHONPATH`` on the repository) reads the repository's ``models/``
folder; a wheel carries the same files as the package data ``edge/shipped_models`` (pyproject.toml maps
that package onto ``models/``, so the repository layout stays as it is). A model named in a config
file or with ``--model`` always wins over both.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGE_DATA = "shipped_models"
_MARKER = "fer_edge.card.json"


def models_dir() -> Path:
    """The checkout's ``models/`` when it holds the shipped card, else the installed package data.

    When neither does, the checkout path is returned so that errors name the place a developer expects.
    """
    checkout = Path(__file__).resolve().parent.parent / "models"
    if (checkout / _MARKER).is_file():
        return checkout
    installed = Path(str(resources.files("edge").joinpath(PACKAGE_DATA)))
    if (installed / _MARKER).is_file():
        return installed
    return checkout
