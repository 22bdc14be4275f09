#!/usr/bin/env bash
# Runs every test suite. Installs what it needs first (scripts/install-deps.sh).
# Suites: formatting and lints, Rust unit and integration tests (real sockets, the real
# binary), then the browser suite (Chromium) and the TURN suite (coturn's clients) when
# present.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

passed=0
failed=0
run_suite() {
  local name=$1; shift
  echo "=== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "=== $name FAILED"; fi
}

run_suite "cargo fmt --check" cargo fmt --all --check
run_suite "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
run_suite "cargo test" cargo test --workspace
for suite in tests/browser/run.sh tests/turn/run.sh tests/sfu/run.sh; do
  if [ -x "$suite" ]; then run_suite "$suite" "$suite"; fi
done

echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
