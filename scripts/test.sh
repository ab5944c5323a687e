#!/usr/bin/env bash
# Set up a fresh machine for the test suite and run it: the README's test command, and what CI runs.
# Installs the OS packages the tests use (when apt is available and we are root), then fer-edge with
# every extra into the virtual environment .venv-dev (created if absent; the system Python is never
# written to, so this works on Debian 12's externally-managed Python, as root or as a user), then runs
# ruff and pytest. Extra arguments go to pytest. The install is redone only when pyproject.toml or the
# Python version changes (a stamp in the venv). scripts/demo.sh's edge-only .venv is a separate one.
#
#   PYTHON=python3.12 scripts/test.sh   # the interpreter that creates the venv (default python3)
#   FER_EDGE_DEV_VENV=/path scripts/test.sh -k replay
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${FER_EDGE_DEV_VENV:-.venv-dev}
apt_packages=(python3-venv mosquitto mosquitto-clients systemd shellcheck openssl chromium)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing OS packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "== note: OS packages missing (${missing[*]}); tests that need them will be skipped" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating the virtual environment $VENV"
  "$PYTHON" -m venv "$VENV" || {
    echo "test.sh: '$PYTHON -m venv' failed; on Debian/Ubuntu install python3-venv (sudo apt install python3-venv)" >&2
    exit 1
  }
fi
stamp=$({ sha256sum pyproject.toml; "$VENV/bin/python" --version; } | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.fer-edge-stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "== installing fer-edge with the train, convert and dev extras into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]"
  echo "$stamp" >"$VENV/.fer-edge-stamp"
else
  echo "== $VENV is up to date with pyproject.toml"
fi

# As if activated: tests start `python` and the console scripts from PATH.
VIRTUAL_ENV=$(cd "$VENV" && pwd)
export VIRTUAL_ENV PATH=$VIRTUAL_ENV/bin:$PATH

echo "== ruff"
python -m ruff check .

echo "== pytest"
exec python -m pytest "$@"
