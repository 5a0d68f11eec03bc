#!/usr/bin/env bash
# Provision the S3-compatible test server for the object-storage tests: moto's standalone server
# (PyPI `moto[server]`, pinned) in a project-local, git-ignored virtualenv (.tools/moto/).
# Python is only a test peer here, never part of the product. Idempotent: a stamp file records
# the installed pin, and a second run only checks it.
#
# Env overrides: AGENT_VAULT_TOOLS_DIR (default <repo>/.tools).
set -euo pipefail

MOTO_VERSION=5.2.5

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${AGENT_VAULT_TOOLS_DIR:-$REPO_ROOT/.tools}"
VENV="$TOOLS_DIR/moto"
STAMP="$VENV/.installed-moto-$MOTO_VERSION"

step() { printf '[provision-moto] %s\n' "$*"; }
fail() { printf '[provision-moto] ERROR: %s\n' "$*" >&2; exit 1; }

if [ -f "$STAMP" ] && [ -x "$VENV/bin/moto_server" ]; then
  step "moto $MOTO_VERSION already installed in $VENV"
  exit 0
fi

command -v python3 >/dev/null 2>&1 || fail "python3 is needed (Debian package python3)"
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  step "installing Debian package python3-venv"
  [ "$(id -u)" = 0 ] || fail "python3-venv is missing and installing it needs root"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; } || fail "apt-get install python3-venv failed"
fi

rm -rf "$VENV"
mkdir -p "$TOOLS_DIR"
step "creating virtualenv $VENV"
python3 -m venv "$VENV" || fail "python3 -m venv $VENV failed"
# Debian 12's venv pip (23.0) has a resolver bug on extras that name the same extra twice.
"$VENV/bin/pip" install -q --disable-pip-version-check -U 'pip>=24' || fail "pip upgrade failed"
step "pip install moto[server]==$MOTO_VERSION"
"$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" || fail "pip install moto[server]==$MOTO_VERSION failed"
"$VENV/bin/moto_server" --help >/dev/null 2>&1 || fail "moto_server does not start: $VENV/bin/moto_server --help"
touch "$STAMP"
step "moto $("$VENV/bin/python" -c 'import moto; print(moto.__version__)') installed in $VENV"
