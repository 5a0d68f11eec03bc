#!/usr/bin/env bash
# Installs the pgvector extension into the local PostgreSQL 15 (Debian bookworm), for the
# test suite's throwaway clusters. Idempotent: exits at once when vector.control is present.
#
# pgvector is not packaged for bookworm, but its Debian source package is in trixie. The
# source is fetched with a temporary apt configuration whose only entry is a `deb-src` line
# for suite `trixie` on the same mirror the system already uses (read from the system's
# apt sources at run time), then built against postgresql-server-dev-15 and installed.
#
# Run as root:  bash scripts/provision-pgvector.sh
set -euo pipefail

PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"
PG_CONFIG="${PG_BIN}/pg_config"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
export DEBIAN_FRONTEND=noninteractive

step() { printf '[provision-pgvector] %s\n' "$*"; }
die() { printf '[provision-pgvector] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get install, make install)"

APT_UPDATED=0
apt_update_once() {
  if [ "$APT_UPDATED" = 0 ]; then
    step "apt-get update (system sources)"
    apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
}
is_installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }
apt_install() {
  local missing=()
  for p in "$@"; do is_installed "$p" || missing+=("$p"); done
  if [ "${#missing[@]}" = 0 ]; then
    step "already installed: $*"
    return 0
  fi
  step "apt-get install ${missing[*]}"
  # The package lists may be absent (fresh container) or stale: on failure update once, retry.
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt_update_once
    step "apt-get install ${missing[*]} (retry after update)"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# 1. PostgreSQL 15 itself (server + pg_config of that version).
if [ ! -x "${PG_BIN}/postgres" ] || [ ! -x "$PG_CONFIG" ]; then
  step "PostgreSQL ${PG_MAJOR} not found: installing postgresql-${PG_MAJOR}"
  apt_install "postgresql-${PG_MAJOR}"
fi
[ -x "$PG_CONFIG" ] || die "$PG_CONFIG is missing after installing postgresql-${PG_MAJOR}"

EXT_DIR="$("$PG_CONFIG" --sharedir)/extension"
if [ -f "${EXT_DIR}/vector.control" ]; then
  step "pgvector already installed (${EXT_DIR}/vector.control); nothing to do"
  exit 0
fi
step "pgvector missing in ${EXT_DIR}; building it from the Debian trixie source package"

# 2. Build tools and server headers (needs the normal apt configuration).
apt_install "postgresql-server-dev-${PG_MAJOR}" build-essential dpkg-dev

# 3. The mirror URI the system already uses (never hard-coded here).
URI=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  URI="$(sed -n -E 's/^[Uu][Rr][Ii][Ss]:[[:space:]]*([^[:space:]]+).*/\1/p' /etc/apt/sources.list.d/debian.sources | head -n1)"
fi
if [ -z "$URI" ] && [ -f /etc/apt/sources.list ]; then
  # One-line format fallback: "deb [options] URI suite components".
  URI="$(awk '$1=="deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)"
fi
[ -n "$URI" ] || die "could not find a Debian mirror URI in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
step "mirror from system apt sources: ${URI}"

# 4. Temporary apt configuration: a single deb-src line for trixie/main.
WORK="$(mktemp -d /tmp/provision-pgvector.XXXXXX)"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/etc/sources.list.d" "$WORK/lists/partial" "$WORK/cache/archives/partial" "$WORK/src"
chmod 755 "$WORK" "$WORK/src"
SIGNED=""
[ -f "$KEYRING" ] && SIGNED="[signed-by=${KEYRING}] "
echo "deb-src ${SIGNED}${URI} trixie main" > "$WORK/etc/sources.list"
APT_TMP=(
  -o "Dir::Etc::sourcelist=$WORK/etc/sources.list"
  -o "Dir::Etc::sourceparts=$WORK/etc/sources.list.d"
  -o "Dir::State::Lists=$WORK/lists"
  -o "Dir::Cache=$WORK/cache"
  -o "Dir::Cache::archives=$WORK/cache/archives"
  -o "APT::Sandbox::User=root"
)

step "apt-get update (temporary config: deb-src trixie main)"
if ! apt-get "${APT_TMP[@]}" update -qq >"$WORK/update.log" 2>&1 || grep -Eq '^E:|GPG error|NO_PUBKEY' "$WORK/update.log"; then
  cat "$WORK/update.log" >&2
  die "apt-get update with the temporary trixie deb-src configuration failed"
fi

step "apt-get source pgvector (trixie)"
( cd "$WORK/src" && apt-get "${APT_TMP[@]}" source -qq pgvector >"$WORK/source.log" 2>&1 ) || {
  cat "$WORK/source.log" >&2
  die "apt-get source pgvector failed"
}
SRC_DIR="$(find "$WORK/src" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n1)"
[ -n "$SRC_DIR" ] && [ -f "$SRC_DIR/Makefile" ] || die "unpacked pgvector source not found under $WORK/src"
step "unpacked $(basename "$SRC_DIR")"

# 5. Build and install. OPTFLAGS="" drops -march=native (portable binary); with_llvm=no skips
#    the JIT bitcode, which is not needed.
step "make (PG_CONFIG=${PG_CONFIG})"
make -C "$SRC_DIR" -s -j"$(nproc)" OPTFLAGS="" with_llvm=no PG_CONFIG="$PG_CONFIG" >"$WORK/make.log" 2>&1 || {
  tail -n 50 "$WORK/make.log" >&2
  die "building pgvector failed"
}
step "make install"
make -C "$SRC_DIR" -s OPTFLAGS="" with_llvm=no PG_CONFIG="$PG_CONFIG" install >"$WORK/install.log" 2>&1 || {
  tail -n 50 "$WORK/install.log" >&2
  die "installing pgvector failed"
}

[ -f "${EXT_DIR}/vector.control" ] || die "make install finished but ${EXT_DIR}/vector.control is missing"
step "pgvector $(awk -F"'" '/default_version/ { print $2 }' "${EXT_DIR}/vector.control") installed into ${EXT_DIR}"
step "cleaning temporary apt configuration and sources"
