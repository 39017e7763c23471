#!/usr/bin/env bash
# The whole test suite: type check, then every test file on Deno and on Bun.
# Usage: bash scripts/test.sh        (from the repository root, after `npm ci`)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=node_modules/.bin

echo "== deno check"
"$bin/deno" check mod.ts lib receivers examples bench tests

echo "== deno test"
"$bin/deno" test -A --quiet tests/

echo "== bun test"
"$bin/bun" test --timeout 60000 ./tests

echo "All suites passed on Deno and Bun"
