#!/usr/bin/env bash
# npm test: provisions what the tests need (pgvector built from Debian source, code-server and
# Chromium for the extension tests, the real Letta 0.16.8 server and moto (S3) in Python virtualenvs), builds,
# type-checks, lints (ESLint + Prettier), then runs every suite:
#   unit + integration (mocha, real PostgreSQL 15 + pgvector and PGlite; the real Letta server; S3 via moto; Qdrant test double),
#   extension (in the real VS Code extension host of code-server), e2e (Playwright + Chromium).
# Ends with one line "total: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }
fail() { echo "npm test: $*" >&2; exit 1; }

if [ ! -d node_modules ]; then
  step "npm ci"
  npm ci --no-audit --no-fund || fail "npm ci failed"
fi

step "provision pgvector"
bash scripts/provision-pgvector.sh || fail "could not provision pgvector (see above)"
step "provision moto (S3-compatible test server)"
bash scripts/provision-moto.sh || fail "could not provision moto (see above)"
step "provision letta server (Python virtualenv)"
bash scripts/provision-letta.sh || fail "could not provision the Letta server (see above)"
step "provision code-server + chromium"
bash scripts/provision-vscode.sh || fail "could not provision code-server/chromium (see above)"

step "build"
node scripts/build.mjs || fail "build failed"
step "type-check"
npx tsc -p . --noEmit || fail "type errors in src/"
npx tsc -p test --noEmit || fail "type errors in test/, bench/ or scripts/"
step "lint (ESLint + Prettier)"
npm run -s lint || fail "lint failed (run npm run lint; npm run format fixes formatting)"

counts=$(mktemp)
trap 'rm -f "$counts"' EXIT
export AGENT_VAULT_COUNTS_FILE="$counts"
status=0

step "unit and integration tests"
AGENT_VAULT_SUITE=unit npm run -s test:unit || status=1
step "extension tests (code-server extension host)"
AGENT_VAULT_SUITE=extension npm run -s test:extension || status=1
step "end-to-end tests (Chromium + code-server + packaged .vsix)"
AGENT_VAULT_SUITE=e2e npm run -s test:e2e || status=1

node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").filter(Boolean).map(JSON.parse);
  const sum = (k) => lines.reduce((a, l) => a + (l[k] || 0), 0);
  for (const l of lines) console.log(`  ${l.label}: ${l.passed} passed, ${l.failed} failed`);
  const suites = new Set(lines.map((l) => l.label));
  const missing = ["unit", "extension", "e2e"].filter((s) => !suites.has(s));
  if (missing.length) console.log(`  suites that did not report: ${missing.join(", ")}`);
  console.log(`total: ${sum("passed")} passed, ${sum("failed") + missing.length} failed`);
  process.exit(missing.length ? 1 : 0);
' "$counts" || status=1
exit $status
