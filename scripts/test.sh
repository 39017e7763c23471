#!/usr/bin/env bash
# The whole test suite: type check, then every test file on Deno and on Bun.
# Usage: bash scripts/test.sh        (from the repository root, after `npm ci`)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=node_modules/.bin
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

echo "== deno check"
"$bin/deno" check mod.ts lib receivers examples bench tests

echo "== deno test"
"$bin/deno" test -A --quiet tests/ 2>&1 | tee "$log/deno.txt"

echo "== bun test"
"$bin/bun" test --timeout 60000 ./tests 2>&1 | tee "$log/bun.txt"

# One closing line for both runtimes: Deno counts test steps, Bun counts tests.
strip() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
deno_passed=$(strip "$log/deno.txt" | grep -oE '[0-9]+ passed \(([0-9]+) steps\)' | tail -1 | grep -oE '\(([0-9]+)' | tr -d '(')
deno_failed=$(strip "$log/deno.txt" | grep -oE '\| [0-9]+ failed' | tail -1 | grep -oE '[0-9]+')
bun_passed=$(strip "$log/bun.txt" | grep -oE '^ *[0-9]+ pass$' | tail -1 | grep -oE '[0-9]+')
bun_failed=$(strip "$log/bun.txt" | grep -oE '^ *[0-9]+ fail$' | tail -1 | grep -oE '[0-9]+')
echo "Deno: ${deno_passed:-0} passed, ${deno_failed:-0} failed; Bun: ${bun_passed:-0} passed, ${bun_failed:-0} failed"
echo "tests: $(( ${deno_passed:-0} + ${bun_passed:-0} )) passed, $(( ${deno_failed:-0} + ${bun_failed:-0} )) failed"
