#!/usr/bin/env bash
# tandem bench fanout against a minimal Node ws broadcast server, release build.
# Usage: bench/fanout/run.sh [--subscribers N] [--messages M] [--idle N] …
set -euo pipefail
cd "$(dirname "$0")/../.."
(cd bench/fanout && npm ci --silent --no-audit --no-fund)
cargo build --release -q -p tandem
ulimit -n "$(ulimit -Hn)"
exec target/release/tandem bench fanout --node-server bench/fanout/node-server.mjs "$@"
