"""The README's example output is what the shipped model prints now (scripts/readme_examples.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "readme_examples.py"


def test_readme_example_is_real_output_of_the_shipped_model():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr


def test_check_fails_on_an_example_the_model_does_not_print(tmp_path: Path):
    text = (ROOT / "README.md").read_text().replace('"label":"happy"', '"label":"sad"', 1)
    readme = tmp_path / "README.md"
    readme.write_text(text)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check", "--readme", str(readme)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1 and "differs from what the shipped model prints" in proc.stderr
