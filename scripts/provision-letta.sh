#!/usr/bin/env bash
# Installs the real Letta V1 server the tests run against (test/helpers/letta-server.ts):
#   letta[postgres,server]==0.16.8, the release whose alembic head is 1c28e167b74f (the revision
#   the project's DDL and restores target), into a project-local, git-ignored virtualenv
#   ${AGENT_VAULT_TOOLS_DIR:-<repo>/.tools}/letta/venv.
#
# Pins:
#   - Every dependency is pinned to the version in Letta's own lock file (uv.lock of the 0.16.8
#     source distribution), turned into a pip constraints file: a plain `pip install letta==0.16.8`
#     resolves ~180 of its dependencies to much newer releases (SQLAlchemy 2.1, Starlette 1.x,
#     pydantic 2.14, ...) than the ones Letta 0.16.8 was released and tested with.
#   - pip itself is upgraded to PIP_VERSION first: the pip bundled with Python 3.11 (23.2) aborts
#     while resolving letta's extras ("AssertionError: Internal issue: Candidate is not for this
#     requirement lxml[html-clean,html-clean] vs lxml[html-clean]").
#   - The wheel does not contain Letta's alembic migrations (the Docker image runs
#     `alembic upgrade head` from the source tree before `letta server`), so the 0.16.8 source
#     distribution from PyPI is unpacked into .tools/letta/src (alembic.ini, alembic/, uv.lock).
#
# Idempotent: a stamp file records a finished install; a second run only prints the facts.
# Prints the installed Letta version and the alembic head of its migrations.
set -euo pipefail

LETTA_VERSION=0.16.8
LETTA_ALEMBIC_HEAD=1c28e167b74f
PIP_VERSION=26.3

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${AGENT_VAULT_TOOLS_DIR:-$REPO_ROOT/.tools}"
LETTA_DIR="$TOOLS_DIR/letta"
VENV="$LETTA_DIR/venv"
SRC="$LETTA_DIR/src"
STAMP="$LETTA_DIR/.installed-$LETTA_VERSION"

step() { printf '[provision-letta] %s\n' "$*"; }
fail() { printf '[provision-letta] ERROR: %s\n' "$*" >&2; exit 1; }

report() {
  local version head
  version="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("letta"))')" ||
    fail "letta is not importable from $VENV"
  head="$(cd "$SRC" && "$VENV/bin/alembic" heads 2>/dev/null | awk '{print $1}')" ||
    fail "could not read the alembic head from $SRC"
  [ "$version" = "$LETTA_VERSION" ] || fail "installed letta is $version, expected $LETTA_VERSION"
  [ "$head" = "$LETTA_ALEMBIC_HEAD" ] || fail "letta's alembic head is '$head', expected $LETTA_ALEMBIC_HEAD"
  step "letta $version in $VENV"
  step "alembic head $head (migrations in $SRC)"
}

if [ -f "$STAMP" ] && [ -x "$VENV/bin/letta" ] && [ -f "$SRC/alembic.ini" ]; then
  step "already installed ($STAMP)"
  report
  exit 0
fi

# --- 1. Python ---------------------------------------------------------------------------------
PY="${AGENT_VAULT_PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || fail "$PY not found (Letta $LETTA_VERSION needs Python 3.11-3.13)"
"$PY" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 14) else 1)' ||
  fail "Letta $LETTA_VERSION needs Python >=3.11,<3.14 (found $("$PY" --version 2>&1))"
"$PY" -c 'import venv, ensurepip' 2>/dev/null || fail "$PY lacks venv/ensurepip (Debian: apt-get install python3-venv)"

rm -f "$STAMP"
mkdir -p "$LETTA_DIR"
if [ ! -x "$VENV/bin/python" ]; then
  step "creating virtualenv $VENV ($("$PY" --version 2>&1))"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input)
step "pip $PIP_VERSION"
"${PIP[@]}" install -q "pip==$PIP_VERSION"

# --- 2. Letta's source distribution: migrations and lock file --------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/provision-letta.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
step "downloading the letta $LETTA_VERSION source distribution (alembic migrations, uv.lock)"
"${PIP[@]}" download -q --no-deps --no-binary :all: -d "$WORK" "letta==$LETTA_VERSION" ||
  fail "pip download letta==$LETTA_VERSION (sdist) failed"
SDIST="$WORK/letta-$LETTA_VERSION.tar.gz"
[ -f "$SDIST" ] || fail "expected $SDIST"
rm -rf "$SRC" "$WORK/x"
mkdir -p "$WORK/x"
tar -xzf "$SDIST" -C "$WORK/x"
mkdir -p "$SRC"
for f in alembic.ini alembic uv.lock; do
  [ -e "$WORK/x/letta-$LETTA_VERSION/$f" ] || fail "the sdist lacks $f"
  cp -R "$WORK/x/letta-$LETTA_VERSION/$f" "$SRC/"
done

# --- 3. Constraints from Letta's uv.lock ---------------------------------------------------------
"$VENV/bin/python" - "$SRC/uv.lock" "$LETTA_DIR/constraints.txt" <<'PY'
import sys, tomllib
lock = tomllib.load(open(sys.argv[1], "rb"))
pins = {}
for p in lock["package"]:
    src = p.get("source", {})
    if "registry" not in src or p["name"] == "letta":
        continue  # the project itself (editable/virtual source)
    if p["name"] in pins and pins[p["name"]] != p["version"]:
        sys.exit(f"uv.lock pins {p['name']} twice ({pins[p['name']]}, {p['version']}): cannot make one constraint")
    pins[p["name"]] = p["version"]
with open(sys.argv[2], "w") as f:
    for n in sorted(pins):
        f.write(f"{n}=={pins[n]}\n")
print(f"[provision-letta] {len(pins)} constraints from uv.lock")
PY

# --- 4. Letta ----------------------------------------------------------------------------------
step "pip install letta[postgres,server]==$LETTA_VERSION (constrained to uv.lock)"
"${PIP[@]}" install -q -c "$LETTA_DIR/constraints.txt" "letta[postgres,server]==$LETTA_VERSION" ||
  fail "pip install letta[postgres,server]==$LETTA_VERSION failed (see above)"

report
date -u +%FT%TZ > "$STAMP"
step "done"
