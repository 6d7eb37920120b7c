#!/usr/bin/env bash
# Runs corestream's own real-client tests (node's test runner, @deepstream/client pinned by the
# package-lock.json beside this script) against a running server.
# Usage: run.sh WS_URL [test files...]   (default: every client/*.test.mjs)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export DS_URL="${1:?usage: run.sh WS_URL [test files...]}"
shift
export DS_CLIENT_HOME="$here"
# One install at a time (tests run in parallel), marked done once it succeeded.
if [ ! -e "$here/node_modules/.corestream-installed" ]; then
  (cd "$here" && flock .npm-install.lock sh -c 'test -e node_modules/.corestream-installed || \
    { npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.corestream-installed; }')
fi
cd "$here"
if [ "$#" -gt 0 ]; then files=("$@"); else files=(client/*.test.mjs); fi
exec node --test --test-concurrency=1 --test-timeout=30000 "${files[@]}"
