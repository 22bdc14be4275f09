#!/usr/bin/env bash
# Installs what the test suites need on a fresh Debian machine, skipping what is there.
# Debian: chromium (browser tests), coturn (turnutils_* clients, TURN tests and bench),
# janus (the peer of `tandem bench sfu`).
# PyPI: PyJWT (a token minted by an independent JWT library), aiortc (WebRTC peer).
set -euo pipefail

need_apt=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v turnutils_uclient >/dev/null 2>&1 || need_apt+=(coturn)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v janus >/dev/null 2>&1 || need_apt+=(janus)  # bench sfu's peer (smoke test)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

pip_need=()
python3 -c 'import jwt' 2>/dev/null || pip_need+=(pyjwt)
if [ ${#pip_need[@]} -gt 0 ]; then
  echo "install-deps: pip install ${pip_need[*]}"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "${pip_need[@]}"
fi
