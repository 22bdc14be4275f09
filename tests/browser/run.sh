#!/usr/bin/env bash
# Browser tests of the SDK and the demo app in real Chromium, on a fresh machine:
# installs Chromium and the npm packages if missing, builds the server if needed,
# then runs the server and the tests inside a private network namespace where only
# `lo` is up (so ICE can only use 127.0.0.1). Exits non-zero on any failure.
#
#   bash tests/browser/run.sh              # every test
#   bash tests/browser/run.sh mesh.test.js # some of them
set -euo pipefail

# Everything is inside main so that editing this file during a run is harmless.
main() {

  HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  ROOT="$(cd "$HERE/../.." && pwd)"
  PORT="${TANDEM_TEST_PORT:-7880}"
  TOTAL_TIMEOUT="${BROWSER_TESTS_TIMEOUT:-900}"

  log() { echo "[browser-tests] $*" >&2; }
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

  # ---- prerequisites -----------------------------------------------------------
  need_apt=()
  [ -x /usr/bin/chromium ] || need_apt+=(chromium)
  command -v node >/dev/null || need_apt+=(nodejs)
  command -v npm >/dev/null || need_apt+=(npm)
  command -v ip >/dev/null || need_apt+=(iproute2)
  if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing ${need_apt[*]} (Debian packages)"
    as_root env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
  if [ ! -d "$HERE/node_modules/playwright-core" ] || [ ! -d "$HERE/node_modules/ws" ]; then
    log "npm ci"
    (cd "$HERE" && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
  fi
  BIN="${TANDEM_BIN:-$ROOT/target/debug/tandem}"
  if [ -z "${TANDEM_BIN:-}" ] && { [ ! -x "$BIN" ] || command -v cargo >/dev/null; }; then
    # Builds when missing; a no-op (about a second) when the binary is up to date.
    log "cargo build -p tandem"
    (cd "$ROOT" && timeout 1800 cargo build -q -p tandem)
  fi

  # ---- SDK unit tests (pure logic, no browser) -------------------------------------
  log "SDK unit tests"
  (cd "$ROOT" && timeout 60 node --test web/sdk/test/)

  # ---- network namespace with only loopback -------------------------------------
  NS="tandem-web-$$"
  DATA_DIR="$(mktemp -d /tmp/tandem-web-data.XXXXXX)"
  SERVER_LOG="$ROOT/test-artifacts/server.log"
  mkdir -p "$ROOT/test-artifacts"
  cleanup() {
    local rc=$?
    if [ -n "${SERVER_PID:-}" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    as_root ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    as_root ip netns del "$NS" 2>/dev/null || true
    rm -rf "$DATA_DIR"
    exit $rc
  }
  trap cleanup EXIT INT TERM
  as_root ip netns add "$NS"
  as_root ip -n "$NS" link set lo up
  in_ns() { as_root ip netns exec "$NS" "$@"; }

  log "server: $BIN serve --dev on 127.0.0.1:$PORT (namespace $NS)"
  in_ns "$BIN" serve --dev --bind "127.0.0.1:$PORT" --data-dir "$DATA_DIR" --web-dir "$ROOT/web" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if in_ns node -e "fetch('http://127.0.0.1:$PORT/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))" 2>/dev/null; then break; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { log "server exited:"; cat "$SERVER_LOG" >&2; exit 1; }
    sleep 0.1
  done

  # ---- the tests -----------------------------------------------------------------
  cd "$HERE"
  if [ $# -gt 0 ]; then FILES=("$@"); else FILES=(*.test.js); fi
  log "running ${FILES[*]}"
  set +e
  in_ns env TANDEM_URL="http://127.0.0.1:$PORT" TANDEM_BIN="$BIN" HOME="${HOME:-/root}" \
    timeout --kill-after=10 "$TOTAL_TIMEOUT" node --test --test-concurrency=1 --test-timeout=240000 "${FILES[@]}"
  RC=$?
  set -e
  [ $RC -eq 0 ] || { log "FAILED (exit $RC); server log: $SERVER_LOG"; tail -n 30 "$SERVER_LOG" >&2 || true; }
  return $RC
}

main "$@"
exit $?
