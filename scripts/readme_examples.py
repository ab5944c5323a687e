#!/usr/bin/env python3
"""Regenerate (or check) the README's example output from the shipped model on the bundled clip.

The README shows the first expression event that `fer-edge run` prints on `edge/samples/astronaut.mp4` with
the default config. This script runs that command and writes the event into the JSON block that follows the
marker line `<!-- example: fer-edge run -->`, so the example is always real output of the shipped model.

    python scripts/readme_examples.py           # rewrite the example in README.md
    python scripts/readme_examples.py --check   # exit 1 if README.md's example is not what the model prints now
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- example: fer-edge run -->"
BLOCK = re.compile(re.escape(MARKER) + r"\n```json\n(?P<line>.*)\n```")
VOLATILE = ("time", "fps")  # wall clock and machine speed: the only fields allowed to differ


def first_expression_event(frames: int = 12) -> dict:
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--max-frames", str(frames)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"readme_examples: fer-edge run exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    for line in proc.stdout.splitlines():
        event = json.loads(line)
        if event.get("event") == "expression":
            return event
    raise SystemExit("readme_examples: fer-edge run printed no expression event on the bundled clip")


def stable(event: dict) -> dict:
    return {k: v for k, v in event.items() if k not in VOLATILE}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of rewriting; exit 1 on a difference")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args()
    text = args.readme.read_text()
    match = BLOCK.search(text)
    if match is None:
        print(f"readme_examples: {args.readme}: no JSON block after the marker {MARKER!r}", file=sys.stderr)
        return 2
    event = first_expression_event()
    if args.check:
        shown = json.loads(match.group("line"))
        if stable(shown) != stable(event):
            print(f"readme_examples: {args.readme}: the example differs from what the shipped model prints now:\n"
                  f"  README: {json.dumps(stable(shown), separators=(',', ':'))}\n"
                  f"  now:    {json.dumps(stable(event), separators=(',', ':'))}\n"
                  "run `python scripts/readme_examples.py` to regenerate it", file=sys.stderr)
            return 1
        print("README example matches the shipped model's output")
        return 0
    line = json.dumps(event, separators=(",", ":"))
    args.readme.write_text(text[: match.start("line")] + line + text[match.end("line"):])
    print(f"wrote the example into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
