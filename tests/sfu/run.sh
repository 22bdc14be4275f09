#!/usr/bin/env bash
# Independent WebRTC stacks through the SFU of a real `tandem serve`: Chromium pages
# (Debian's /usr/bin/chromium driven by playwright-core: the reference participant and
# the browser SDK) and aiortc peers. Exits
# non-zero when any check fails. Installs playwright-core (npm) and aiortc +
# websockets (pip) when missing; never downloads a browser.
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
if ! python3 -c 'import aiortc, websockets' 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore aiortc websockets
fi
(cd "$root" && cargo build -j2 -p tandem --quiet)
tandem="$root/target/debug/tandem"
status=0
echo "--- Chromium"
node sfu.test.mjs "$tandem" || status=1
echo "--- Chromium with the browser SDK (web/sdk)"
timeout 420 node sdk.test.mjs "$tandem" || status=1
echo "--- aiortc"
python3 aiortc_participant.py "$tandem" || status=1
exit $status
