#!/usr/bin/env bash
# The whole suite: format, lint, doc lint and type check; then every test file on Deno and on Bun,
# the core unit tests on Node (smoke), and the npm consumer test (pack, install, tsc, run on all three).
# Usage: bash scripts/test.sh        (from the repository root, after `npm ci`)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=node_modules/.bin
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

echo "== deno fmt --check"
"$bin/deno" fmt --check

echo "== deno lint"
"$bin/deno" lint

echo "== deno doc --lint (mod.ts, lib/Testing.ts)"
"$bin/deno" run --allow-read --allow-run scripts/doc_lint.ts

echo "== deno check"
"$bin/deno" check mod.ts lib receivers examples bench tests scripts

# Every test file runs on Deno and on Bun, except the consumer test, which runs once (on Node)
# and itself runs the packed library on Node, Bun and Deno.
mapfile -t files < <(find tests -type f \( -name '*.test.ts' -o -name '*_test.ts' \) ! -name consumer.test.ts | sort)
# Node smoke: the core unit tests (operators, windows, state, checkpoints, lifecycle, a real socket) on
# Node 22, from the TypeScript sources (--experimental-transform-types: lib/ uses parameter properties).
smoke=(tests/basic_operations.test.ts tests/window_operations.test.ts tests/state_operations.test.ts
  tests/state_checkpoint.test.ts tests/streaming_context.test.ts tests/socket_stream.test.ts tests/lines.test.ts
  tests/pid_rate_estimator.test.ts tests/services.test.ts tests/testing_kit.test.ts tests/from_stream.test.ts
  tests/layering.test.ts tests/platform.test.ts tests/state_checkpoint_format.test.ts
  tests/state_checkpoint_keymap.test.ts tests/kafka_scale_unit.test.ts tests/kafka_eos_model.test.ts)
failed=0

echo "== deno test"
"$bin/deno" test -A --quiet "${files[@]}" 2>&1 | tee "$log/deno.txt" || failed=1

echo "== bun test"
"$bin/bun" test --timeout 60000 "${files[@]/#/./}" 2>&1 | tee "$log/bun.txt" || failed=1

echo "== node test (smoke: core unit tests on Node $("$bin/node" --version))"
"$bin/node" --experimental-transform-types --disable-warning=ExperimentalWarning --test --test-reporter=spec \
  "${smoke[@]}" 2>&1 | tee "$log/node.txt" || failed=1

echo "== consumer test (npm pack, install into a scratch project, tsc, run on Node, Bun and Deno)"
"$bin/node" --test --test-reporter=spec tests/consumer.test.ts 2>&1 | tee "$log/consumer.txt" || failed=1

# One closing line for all runs: Deno counts test steps, Bun counts tests, Node counts tests.
strip() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
deno_summary=$(strip "$log/deno.txt" | grep -E '(ok|FAILED) \| [0-9]+ passed' | tail -1 || true)
deno_passed=$(grep -oE '[0-9]+ passed \([0-9]+ steps\)' <<<"$deno_summary" | grep -oE '\([0-9]+' | tr -d '(' || true)
deno_failed=$(grep -oE '[0-9]+ failed \([0-9]+ steps\)' <<<"$deno_summary" | grep -oE '\([0-9]+' | tr -d '(' || true)
[ -n "$deno_failed" ] || deno_failed=$(grep -oE '\| [0-9]+ failed' <<<"$deno_summary" | grep -oE '[0-9]+' || true)
bun_passed=$(strip "$log/bun.txt" | grep -oE '^ *[0-9]+ pass$' | tail -1 | grep -oE '[0-9]+' || true)
bun_failed=$(strip "$log/bun.txt" | grep -oE '^ *[0-9]+ fail$' | tail -1 | grep -oE '[0-9]+' || true)
node_count() { strip "$1" | grep -oE "^ℹ $2 [0-9]+$" | tail -1 | grep -oE '[0-9]+' || true; }
node_passed=$(node_count "$log/node.txt" pass)
node_failed=$(node_count "$log/node.txt" fail)
consumer_passed=$(node_count "$log/consumer.txt" pass)
consumer_failed=$(node_count "$log/consumer.txt" fail)
# A run that died before its summary counts as one failure.
[ -n "$deno_summary" ] || deno_failed=${deno_failed:-1}
[ -n "$bun_passed$bun_failed" ] || bun_failed=1
[ -n "$node_passed$node_failed" ] || node_failed=1
[ -n "$consumer_passed$consumer_failed" ] || consumer_failed=1
# node:test cancels the tests of a suite whose `before` hook failed: they count as failed
node_failed=$(( ${node_failed:-0} + $(node_count "$log/node.txt" cancelled | grep . || echo 0) ))
consumer_failed=$(( ${consumer_failed:-0} + $(node_count "$log/consumer.txt" cancelled | grep . || echo 0) ))
passed=$((${deno_passed:-0} + ${bun_passed:-0} + ${node_passed:-0} + ${consumer_passed:-0}))
failures=$((${deno_failed:-0} + ${bun_failed:-0} + ${node_failed:-0} + ${consumer_failed:-0}))
# The failures again, at the end where a CI log's tail shows them: what failed, and the lines before it.
if [ "$failures" -ne 0 ]; then
  echo "== failures"
  strip "$log/deno.txt" | sed -n '/^ ERRORS /,/^ FAILURES /p' | head -80 || true
  strip "$log/deno.txt" | sed -n '/^ FAILURES /,$p' | grep -E '=>' || true
  # Bun: each failing test with the lines before it (its error), then Bun's closing list
  strip "$log/bun.txt" | sed -E '/^[0-9]+ tests? failed:$/,$d' | grep -B 25 -E '^\(fail\)' | head -120 || true
  strip "$log/bun.txt" | sed -nE '/^[0-9]+ tests? failed:$/,$p' | grep -E '^\(fail\)' || true
  for f in node consumer; do strip "$log/$f.txt" | sed -n '/failing tests:/,$p' | head -60 || true; done
fi
echo "Deno: ${deno_passed:-0} passed, ${deno_failed:-0} failed; Bun: ${bun_passed:-0} passed, ${bun_failed:-0} failed;" \
  "Node: ${node_passed:-0} passed, ${node_failed:-0} failed; consumer: ${consumer_passed:-0} passed, ${consumer_failed:-0} failed"
echo "tests: $passed passed, $failures failed"
if [ "$failed" -ne 0 ] || [ "$failures" -ne 0 ]; then exit 1; fi
