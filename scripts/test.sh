#!/usr/bin/env bash
# Set up a fresh machine for the test suite and run it: the README's test command, and what CI runs.
# Installs the OS packages the tests use (when apt is available and we are root) and the Python
# package with every extra, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
apt_packages=(mosquitto mosquitto-clients systemd shellcheck openssl chromium)
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

echo "== installing fer-edge with the train, convert and dev extras"
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[dev]"

echo "== ruff"
"$PYTHON" -m ruff check .

echo "== pytest"
exec "$PYTHON" -m pytest "$@"
