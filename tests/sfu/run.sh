#!/usr/bin/env bash
# Chromium participants through the SFU of a real `tandem serve`. Exits non-zero on
# failure. Needs /usr/bin/chromium (Debian's; scripts/install-deps.sh) and npm.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "tests/sfu: chromium is missing (apt-get install chromium)" >&2
  exit 1
fi
if [ ! -d node_modules/playwright-core ]; then
  npm install --no-audit --no-fund --loglevel=error
fi
(cd "$root" && cargo build -j2 -p tandem --quiet)
exec node sfu.test.mjs "$root/target/debug/tandem"
