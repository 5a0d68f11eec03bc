#!/usr/bin/env bash
# Provision what the VS Code extension tests need on this machine (Debian + Node 20):
#   - Debian packages `chromium` (drives the web workbench) and `ripgrep`, plus the build deps of
#     code-server's native modules (libkrb5-dev, build-essential, pkg-config, python3);
#   - code-server (VS Code for the browser, Node 20 server) in a project-local,
#     git-ignored tools dir (.tools/code-server/), NOT as a project dependency.
# Idempotent and fast when everything is already there. One line per step.
#
# Env overrides: AGENT_VAULT_TOOLS_DIR (default <repo>/.tools).
set -euo pipefail

CODE_SERVER_VERSION=4.100.3
# code-server 4.100.3 pins @vscode/ripgrep 1.15.11 (lib/vscode/npm-shrinkwrap.json), whose postinstall
# downloads `ripgrep-<RG_ASSET_VERSION>-<target>.tar.gz` unless that archive is already in its cache
# dir `${TMPDIR}/vscode-ripgrep-cache-<package version>/`. No download is possible here, so we put
# Debian's rg into that cache, packaged as it expects (a tar.gz holding `rg` at the top level).
RG_PKG_VERSION=1.15.11
RG_ASSET_VERSION=v13.0.0-10

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${AGENT_VAULT_TOOLS_DIR:-$REPO_ROOT/.tools}"
CS_DIR="$TOOLS_DIR/code-server"
CS_PKG="$CS_DIR/node_modules/code-server"
STAMP="$CS_DIR/.installed-$CODE_SERVER_VERSION"

step() { printf '[provision-vscode] %s\n' "$*"; }
fail() { printf '[provision-vscode] ERROR: %s\n' "$*" >&2; exit 1; }

# --- 1. Debian packages ------------------------------------------------------------------------
# chromium + ripgrep are used at run time; the rest builds code-server's native modules
# (node-pty, spdlog, kerberos, ...) during its npm postinstall.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v rg >/dev/null 2>&1 || missing+=(ripgrep)
[ -f /usr/include/gssapi/gssapi.h ] || missing+=(libkrb5-dev)
{ command -v make && command -v g++; } >/dev/null 2>&1 || missing+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${#missing[@]}" -eq 0 ]; then
  step "debian packages: chromium, ripgrep and build deps (libkrb5-dev, build-essential) already installed"
else
  [ "$(id -u)" -eq 0 ] || fail "need root to install Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  need_update=0
  for p in "${missing[@]}"; do
    # No candidate in the local package lists (or no lists at all) -> refresh them first.
    policy="$(apt-cache policy "$p" 2>/dev/null || true)"
    case "$policy" in *"Candidate: (none)"* | "") need_update=1 ;; esac
  done
  if [ "$need_update" -eq 1 ]; then
    step "debian packages: apt-get update (package lists lack ${missing[*]})"
    apt-get update -qq >/dev/null
  fi
  step "debian packages: installing ${missing[*]}"
  apt_log="$(mktemp)"
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$apt_log" 2>&1; then
    # Stale lists can point at files that are gone; refresh once and retry.
    step "debian packages: install failed, apt-get update and retry"
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$apt_log" 2>&1 ||
      { tail -n 30 "$apt_log" >&2; fail "apt-get install ${missing[*]} failed"; }
  fi
  rm -f "$apt_log"
fi

# --- 2. code-server ----------------------------------------------------------------------------
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" = "20" ] || fail "code-server $CODE_SERVER_VERSION needs Node 20 (found $(node --version))"

installed_version=""
if [ -f "$CS_PKG/package.json" ]; then
  installed_version="$(node -p "require('$CS_PKG/package.json').version" 2>/dev/null || true)"
fi
RG_BIN="$CS_PKG/lib/vscode/node_modules/@vscode/ripgrep/bin/rg"
if [ -f "$STAMP" ] && [ "$installed_version" = "$CODE_SERVER_VERSION" ] && [ -x "$RG_BIN" ]; then
  step "code-server: $CODE_SERVER_VERSION already installed in $CS_DIR"
else
  case "$(uname -m)" in
    x86_64) rg_target=x86_64-unknown-linux-musl ;;
    aarch64 | arm64) rg_target=aarch64-unknown-linux-musl ;;
    *) fail "unsupported architecture $(uname -m)" ;;
  esac
  mkdir -p "$CS_DIR"
  install_tmp="$CS_DIR/.tmp"
  rm -rf "$install_tmp"
  rg_cache="$install_tmp/vscode-ripgrep-cache-$RG_PKG_VERSION"
  mkdir -p "$rg_cache/stage"
  cp "$(command -v rg)" "$rg_cache/stage/rg"
  tar -czf "$rg_cache/ripgrep-$RG_ASSET_VERSION-$rg_target.tar.gz" -C "$rg_cache/stage" rg
  step "code-server: seeded ripgrep cache with Debian's rg ($rg_cache)"

  [ -f "$CS_DIR/package.json" ] || printf '{\n  "name": "agent-vault-tools-code-server",\n  "private": true\n}\n' > "$CS_DIR/package.json"
  step "code-server: npm install code-server@$CODE_SERVER_VERSION (builds native modules; takes minutes)"
  log="$CS_DIR/install.log"
  start=$(date +%s)
  if ! (
    cd "$CS_DIR" &&
      TMPDIR="$install_tmp" npm_config_unsafe_perm=true npm_config_yes=true \
        npm install --save-exact --no-audit --no-fund --no-package-lock --loglevel=warn \
        "code-server@$CODE_SERVER_VERSION"
  ) >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    fail "npm install code-server failed (full log: $log)"
  fi
  [ -x "$RG_BIN" ] || fail "code-server installed but $RG_BIN is missing (see $log)"
  rm -rf "$install_tmp"
  touch "$STAMP"
  step "code-server: installed $CODE_SERVER_VERSION in $(($(date +%s) - start))s"
fi

version_line="$(node "$CS_PKG/out/node/entry.js" --version 2>/dev/null | head -n1)" ||
  fail "code-server does not start: node $CS_PKG/out/node/entry.js --version"
step "code-server: ready ($version_line)"
step "done"
