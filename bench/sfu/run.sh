#!/usr/bin/env bash
# tandem bench sfu: the same str0m load (P publishers of VP8 + Opus, S subscribers)
# through Tandem's SFU and through Janus's VideoRoom, release build, in one run.
# Usage: bench/sfu/run.sh [--publishers P] [--subscribers S] [--bitrate-kbps K]
#        [--duration SECS] [--client-threads N] [--janus off] …
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v janus >/dev/null 2>&1 && [[ " $* " != *" --janus off "* ]]; then
    echo "run.sh: installing janus (Debian package)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends janus >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends janus >/dev/null; }
fi
cargo build --release -j2 -q -p tandem
# Every participant holds a UDP socket (and a WebSocket for Tandem).
ulimit -n "$(ulimit -Hn)"
exec target/release/tandem bench sfu "$@"
