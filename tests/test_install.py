"""Shipped-model lookup outside a checkout, and ``fer-edge --version``.

The full install (wheel + sdist built, the wheel in a clean venv, the commands run from elsewhere) is
``scripts/wheel_check.sh``, a CI stage after the tests.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge import __version__
from edge.cli import main
from edge.config import DEFAULT_EYE_MODEL, DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent.parent


def _models_dir_in(site: Path) -> Path:
    code = "from edge.shipped import models_dir; print(models_dir())"
    out = subprocess.run([sys.executable, "-c", code], cwd=site.parent, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(site)})
    return Path(out.stdout.strip())


def test_installed_package_data_is_found_without_a_checkout(tmp_path: Path):
    site = tmp_path / "site-packages"
    (site / "edge").mkdir(parents=True)
    for name in ("__init__.py", "shipped.py"):
        shutil.copy(ROOT / "edge" / name, site / "edge")
    assert _models_dir_in(site) == site / "models"  # nothing shipped anywhere: errors name the checkout path
    data = site / "edge" / "shipped_models"
    data.mkdir()
    shutil.copy(ROOT / "models" / "fer_edge.card.json", data)
    assert _models_dir_in(site) == data
    (site / "models").mkdir()
    shutil.copy(ROOT / "models" / "fer_edge.card.json", site / "models")
    assert _models_dir_in(site) == site / "models"  # a checkout's models/ wins over package data


def test_checkout_defaults_point_at_the_repository_models():
    assert DEFAULT_MODEL == ROOT / "models" / "fer_edge_int8.tflite" and DEFAULT_MODEL.is_file()
    assert DEFAULT_EYE_MODEL == ROOT / "models" / "eye_state_int8.tflite" and DEFAULT_EYE_MODEL.is_file()


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"fer-edge {__version__} (models: {ROOT / 'models'})"
