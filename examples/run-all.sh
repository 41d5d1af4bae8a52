#!/usr/bin/env bash
# CI entry for the client examples: installs their dependencies, generates
# the Python stubs, runs the Python and Node examples against real browserd
# processes (BROWSERD_BIN, default target/debug/browserd) and lints proto/
# with buf. Exits non-zero on the first failure.
set -euo pipefail
examples="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$examples")"
export BROWSERD_BIN="${BROWSERD_BIN:-$repo/target/debug/browserd}"
if [ ! -x "$BROWSERD_BIN" ]; then
  echo "run-all.sh: no browserd binary at $BROWSERD_BIN (cargo build first)" >&2
  exit 1
fi
# Playwright must use only its driver (connect_over_cdp); never fetch browsers.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1

echo "== python: deps, stubs, pytest"
cd "$examples/python"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -r requirements.txt
PYTHON=.venv/bin/python ./gen_stubs.sh
.venv/bin/python -m pytest -v

echo "== node: npm ci, node --test"
cd "$examples/node"
npm ci --no-audit --no-fund --loglevel=error
node --test --test-concurrency=1 test/

echo "== buf lint (module root: proto/, see buf.yaml)"
cd "$repo"
"$examples/node/node_modules/.bin/buf" lint
echo "buf lint: clean"
