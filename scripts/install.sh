#!/usr/bin/env bash
# Install fer-edge as a systemd service on Raspberry Pi OS (64-bit Bookworm) or a Jetson
# (Ubuntu / JetPack). Idempotent: re-running upgrades the code and models and keeps your config.
#
#   sudo bash scripts/install.sh              # install or upgrade, enable and start the service
#   sudo bash scripts/install.sh --dry-run    # print what would be done, change nothing
#   sudo bash scripts/install.sh --uninstall  # stop and remove the service and code (config/state kept)
#   sudo bash scripts/install.sh --uninstall --purge   # also remove /etc/fer-edge and /var/lib/fer-edge
set -euo pipefail

PREFIX=/opt/fer-edge
SHARE=/usr/local/share/fer-edge
CONF=/etc/fer-edge
STATE=/var/lib/fer-edge
UNIT=/etc/systemd/system/fer-edge.service
SYSUSERS=/usr/lib/sysusers.d/fer-edge.conf
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

DRY_RUN=0
UNINSTALL=0
PURGE=0
NO_START=0

usage() {
  sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  echo "options: --dry-run --uninstall --purge --no-start -h|--help"
}

for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    --no-start) NO_START=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown option '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

say() { printf '== %s\n' "$*"; }
run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '+ %s\n' "$*"
  else
    "$@"
  fi
}

board() {
  if grep -qi 'raspberry pi' /proc/device-tree/model 2>/dev/null; then
    echo raspberry-pi
  elif [ -f /etc/nv_tegra_release ]; then
    echo jetson
  else
    echo generic
  fi
}

require_root() {
  if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (sudo), or with --dry-run to see the steps" >&2
    exit 1
  fi
}

uninstall() {
  say "stopping and removing the fer-edge service"
  if command -v systemctl >/dev/null && systemctl list-unit-files fer-edge.service >/dev/null 2>&1; then
    run systemctl disable --now fer-edge.service || true
  fi
  run rm -f "$UNIT" "$SYSUSERS"
  run rm -rf "$PREFIX" "$SHARE"
  if command -v systemctl >/dev/null; then run systemctl daemon-reload; fi
  if [ "$PURGE" = 1 ]; then
    say "purging configuration and state"
    run rm -rf "$CONF" "$STATE"
    if id fer-edge >/dev/null 2>&1; then run userdel fer-edge; fi
  else
    say "kept $CONF and $STATE (use --purge to remove them)"
  fi
}

install() {
  local kind arch
  kind=$(board)
  arch=$(uname -m)
  say "board: $kind, architecture: $arch"
  case "$arch" in
    aarch64 | x86_64) ;;
    *) echo "install.sh: $arch is not supported: ai-edge-litert needs a 64-bit OS (Raspberry Pi OS 64-bit)" >&2
       exit 1 ;;
  esac

  say "OS packages"
  local packages=(python3-venv python3-pip)
  if [ "$kind" = raspberry-pi ]; then
    packages+=(python3-picamera2 python3-libcamera python3-lgpio)
  fi
  run apt-get update -q
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"

  say "service user fer-edge (groups: video, gpio where present)"
  run install -D -m 0644 "$SRC/systemd/fer-edge.sysusers" "$SYSUSERS"
  if command -v systemd-sysusers >/dev/null; then
    run systemd-sysusers "$SYSUSERS"
  elif ! id fer-edge >/dev/null 2>&1; then
    run useradd --system --home-dir "$STATE" --shell /usr/sbin/nologin fer-edge
  fi
  for group in video gpio; do
    if getent group "$group" >/dev/null; then run usermod -a -G "$group" fer-edge; fi
  done

  say "code and virtual environment in $PREFIX (edge runtime only, no TensorFlow)"
  run mkdir -p "$PREFIX/src"
  run cp -r "$SRC/edge" "$SRC/pyproject.toml" "$SRC/README.md" "$PREFIX/src/"
  run mkdir -p "$PREFIX/src/models/ferplus" "$PREFIX/src/train" "$PREFIX/src/convert"
  # The package carries the int8 models (pyproject.toml maps edge.shipped_models onto models/).
  for file in "$SRC"/models/*_int8.tflite "$SRC"/models/*.card.json "$SRC"/models/*.golden.csv; do
    run cp "$file" "$PREFIX/src/models/"
  done
  for file in "$SRC"/models/ferplus/*_int8.tflite "$SRC"/models/ferplus/*.card.json "$SRC"/models/ferplus/*.golden.csv; do
    run cp "$file" "$PREFIX/src/models/ferplus/"
  done
  run cp "$SRC/train/__init__.py" "$PREFIX/src/train/"
  run cp "$SRC/convert/__init__.py" "$PREFIX/src/convert/"
  # --system-site-packages: picamera2 and libcamera come from the OS, not from PyPI.
  if [ ! -x "$PREFIX/venv/bin/python" ]; then
    run python3 -m venv --system-site-packages "$PREFIX/venv"
  fi
  run "$PREFIX/venv/bin/pip" install -q --upgrade "$PREFIX/src"

  say "models in $SHARE/models"
  run install -d -m 0755 "$SHARE/models"
  for file in "$SRC"/models/*_int8.tflite "$SRC"/models/*.card.json "$SRC"/models/*.golden.csv; do
    run install -m 0644 "$file" "$SHARE/models/"
  done

  say "configuration in $CONF (an existing config.yaml is kept)"
  run install -d -m 0755 "$CONF"
  if [ ! -f "$CONF/config.yaml" ]; then
    run install -m 0644 "$SRC/systemd/config.yaml" "$CONF/config.yaml"
  fi
  if [ ! -f "$CONF/mqtt.pass" ]; then
    # LoadCredential= needs the file; put the broker password in it (root-only) when MQTT needs one.
    run install -m 0600 /dev/null "$CONF/mqtt.pass"
  fi

  say "systemd unit"
  run install -m 0644 "$SRC/systemd/fer-edge.service" "$UNIT"
  run systemctl daemon-reload
  run "$PREFIX/venv/bin/fer-edge" validate-config "$CONF/config.yaml"
  run "$PREFIX/venv/bin/fer-edge" selftest --model "$SHARE/models/fer_edge_int8.tflite"
  if [ "$NO_START" = 1 ]; then
    run systemctl enable fer-edge.service
  else
    run systemctl enable fer-edge.service
    run systemctl restart fer-edge.service
    say "started; follow it with: journalctl -u fer-edge -f   and check: $PREFIX/venv/bin/fer-edge status"
  fi
}

require_root
if [ "$UNINSTALL" = 1 ]; then
  uninstall
else
  install
fi
