#!/usr/bin/env bash
# Tandem's STUN/TURN server against coturn's own clients (Debian `coturn`):
# turnutils_stunclient, turnutils_uclient (UDP, TCP, TLS, static and REST
# credentials, client-to-client, via turnutils_peer) and turnutils_peer.
# Loopback only. Prints "N passed, M failed" and exits non-zero on failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PROFILE="${PROFILE:-debug}"
PORT="${TURN_TEST_PORT:-21780}"
TLS_PORT="${TURN_TEST_TLS_PORT:-21781}"
PEER_PORT="${TURN_TEST_PEER_PORT:-21790}"
MSGS="${TURN_TEST_MSGS:-200}"
CLIENTS="${TURN_TEST_CLIENTS:-4}"

if ! command -v turnutils_uclient >/dev/null 2>&1; then
    echo "installing coturn (for its test clients)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y coturn >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y coturn >/dev/null; }
fi
command -v openssl >/dev/null 2>&1 || apt-get install -y openssl >/dev/null
# Independent WebRTC peers: Debian's Chromium (driven by playwright-core from npm)
# and aiortc (PyPI). Set TURN_TEST_WEBRTC=0 to skip them.
WEBRTC="${TURN_TEST_WEBRTC:-1}"
if [ "$WEBRTC" = 1 ]; then
    if ! [ -x /usr/bin/chromium ] || ! command -v ip >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y chromium iproute2 >/dev/null 2>&1 ||
            { apt-get update >/dev/null && apt-get install -y chromium iproute2 >/dev/null; }
    fi
    python3 -c 'import aiortc' 2>/dev/null ||
        python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore aiortc
    [ -d "$ROOT/tests/turn/node_modules/playwright-core" ] ||
        (cd "$ROOT/tests/turn" && timeout 600 npm install --no-audit --no-fund --silent)
fi

cd "$ROOT"
if [ "$PROFILE" = release ]; then
    timeout 1200 cargo build -j2 --release -p tandem-turn --example turnd
else
    timeout 1200 cargo build -j2 -p tandem-turn --example turnd
fi
TURND="$ROOT/target/$PROFILE/examples/turnd"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1

cat >"$WORK/turn.toml" <<TOML
udp_bind = "127.0.0.1:$PORT"
tcp_bind = "127.0.0.1:$PORT"
tls_bind = "127.0.0.1:$TLS_PORT"
tls_cert = "$WORK/cert.pem"
tls_key = "$WORK/key.pem"
public_ip = "127.0.0.1"
relay_bind_ip = "127.0.0.1"
relay_port_min = 22000
relay_port_max = 22999
realm = "tandem"
# Many short test runs share these users; allocations of UDP runs live on.
max_allocations_per_user = 1000
secret = "restsecret"
# Loopback peers are refused by default; the test explicitly allows them.
allowed_peer_ips = ["127.0.0.1/32"]
[static_users]
alice = "alicepw"
TOML

"$TURND" "$WORK/turn.toml" >"$WORK/turnd.log" 2>&1 &
PIDS+=($!)
TURND_PID=$!
for _ in $(seq 1 100); do
    grep -q "turnd ready" "$WORK/turnd.log" && break
    sleep 0.1
done
grep -q "turnd ready" "$WORK/turnd.log" || { cat "$WORK/turnd.log"; echo "0 passed, 1 failed"; exit 1; }

turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >"$WORK/peer.log" 2>&1 &
PIDS+=($!)
sleep 0.3

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "ok   - $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $1"; [ -n "${2:-}" ] && tail -n 15 "$2" | sed 's/^/       /'; return 0; }

# STUN Binding: the reflexive address is ours.
out="$WORK/stun.out"
if timeout 20 turnutils_stunclient -p "$PORT" 127.0.0.1 >"$out" 2>&1 &&
    grep -q "UDP reflexive addr: 127.0.0.1:" "$out"; then
    pass "stunclient gets its reflexive address"
else
    fail "stunclient gets its reflexive address" "$out"
fi

# uclient NAME ARGS...: relays MSGS*CLIENTS messages with zero loss.
uclient() {
    local name="$1"; shift
    local out="$WORK/$(echo "$name" | tr -c 'a-zA-Z0-9' _).out"
    local want=$((MSGS * CLIENTS))
    if timeout 120 turnutils_uclient "$@" -n "$MSGS" -m "$CLIENTS" -l 170 -z 5 127.0.0.1 >"$out" 2>&1 &&
        grep -Eq "tot_send_msgs=$want, tot_recv_msgs=$want\$" "$out" &&
        grep -q "Total lost packets 0 (" "$out"; then
        pass "$name ($want messages, 0 lost)"
    else
        fail "$name" "$out"
    fi
}

STATIC=(-u alice -w alicepw)
REST=(-u carol -W restsecret)
PEER=(-e 127.0.0.1 -r "$PEER_PORT")
uclient "UDP static user via turnutils_peer" -c "${STATIC[@]}" "${PEER[@]}" -p "$PORT"
uclient "TCP static user via turnutils_peer" -t -c "${STATIC[@]}" "${PEER[@]}" -p "$PORT"
uclient "UDP REST credentials via turnutils_peer" -c "${REST[@]}" "${PEER[@]}" -p "$PORT"
uclient "TCP REST credentials via turnutils_peer" -t -c "${REST[@]}" "${PEER[@]}" -p "$PORT"
uclient "UDP client-to-client (-y) static" -y -c "${STATIC[@]}" -p "$PORT"
uclient "TCP client-to-client (-y) REST" -t -y -c "${REST[@]}" -p "$PORT"
uclient "UDP RTP+RTCP pair (EVEN-PORT + RESERVATION-TOKEN)" "${STATIC[@]}" "${PEER[@]}" -p "$PORT"
uclient "UDP send indications (-s)" -s -c "${STATIC[@]}" "${PEER[@]}" -p "$PORT"
uclient "UDP with DONT-FRAGMENT (-g)" -g -c "${REST[@]}" "${PEER[@]}" -p "$PORT"
uclient "TLS REST credentials via turnutils_peer" -t -S -c "${REST[@]}" "${PEER[@]}" -p "$TLS_PORT"
uclient "TLS client-to-client (-y) static" -t -S -y -c "${STATIC[@]}" -p "$TLS_PORT"
# RFC 6062 TCP relays (-T implies TCP, client-to-client): Connect, ConnectionAttempt,
# ConnectionBind, then raw data connections.
uclient "RFC 6062 TCP relay, static user" -T "${STATIC[@]}" -p "$PORT"
uclient "RFC 6062 TCP relay, REST credentials" -T "${REST[@]}" -p "$PORT"
uclient "RFC 6062 TCP relay over TLS" -T -S "${STATIC[@]}" -p "$TLS_PORT"

# refused NAME ARGS...: the allocation must fail and nothing may be relayed.
refused() {
    local name="$1"; shift
    local out="$WORK/$(echo "$name" | tr -c 'a-zA-Z0-9' _).out"
    if timeout 60 turnutils_uclient "$@" -n 5 -m 1 -l 100 127.0.0.1 >"$out" 2>&1; then
        fail "$name: uclient succeeded" "$out"
    elif grep -q "Cannot complete Allocation" "$out" && ! grep -Eq "tot_recv_msgs=[1-9]" "$out"; then
        pass "$name"
    else
        fail "$name" "$out"
    fi
}
refused "wrong static password is refused" -c -u alice -w wrong "${PEER[@]}" -p "$PORT"
refused "wrong REST secret is refused" -c -u carol -W notthesecret "${PEER[@]}" -p "$PORT"
refused "unknown user over TCP is refused" -t -c -u mallory -w x "${PEER[@]}" -p "$PORT"

# The server is still healthy and counted what happened.
if timeout 20 turnutils_stunclient -p "$PORT" 127.0.0.1 >"$WORK/stun2.out" 2>&1 &&
    grep -q "UDP reflexive addr" "$WORK/stun2.out"; then
    pass "server still serves after the refused clients"
else
    fail "server still serves after the refused clients" "$WORK/stun2.out"
fi
kill -INT "$TURND_PID"
for _ in $(seq 1 50); do kill -0 "$TURND_PID" 2>/dev/null || break; sleep 0.1; done
if grep -Eq "^tandem_turn_auth_failures_total [1-9]" "$WORK/turnd.log" &&
    grep -Eq "^tandem_turn_relayed_packets_total\{direction=\"to_peer\"\} [1-9]" "$WORK/turnd.log" &&
    grep -Eq "^tandem_turn_allocations_total [1-9]" "$WORK/turnd.log"; then
    pass "metrics count allocations, relayed packets and auth failures"
else
    fail "metrics count allocations, relayed packets and auth failures" "$WORK/turnd.log"
fi

# --- Independent WebRTC peers, relay-only, in a network namespace with only lo. ---
if [ "$WEBRTC" = 1 ]; then
    NS="tandem-turn-$$"
    ip netns add "$NS"
    trap 'cleanup; ip netns del "$NS" 2>/dev/null || true' EXIT
    ip -n "$NS" link set lo up
    cat >"$WORK/ns.toml" <<TOML
udp_bind = "127.0.0.1:3478"
tcp_bind = "127.0.0.1:3478"
public_ip = "127.0.0.1"
relay_bind_ip = "127.0.0.1"
relay_port_min = 49152
relay_port_max = 65535
secret = "restsecret"
allowed_peer_ips = ["127.0.0.1/32"]
TOML
    ip netns exec "$NS" "$TURND" "$WORK/ns.toml" >"$WORK/ns-turnd.log" 2>&1 &
    NS_PID=$!
    PIDS+=("$NS_PID")
    for _ in $(seq 1 100); do grep -q "turnd ready" "$WORK/ns-turnd.log" && break; sleep 0.1; done
    mint() { # identity -> "username credential" (coturn REST scheme, minted independently)
        python3 -c 'import base64,hashlib,hmac,sys,time
u = "%d:%s" % (time.time() + 3600, sys.argv[1])
print(u, base64.b64encode(hmac.new(b"restsecret", u.encode(), hashlib.sha1).digest()).decode())' "$1"
    }
    for transport in udp tcp; do
        url="turn:127.0.0.1:3478?transport=$transport"
        out="$WORK/aiortc-$transport.out"
        if timeout 90 ip netns exec "$NS" python3 "$ROOT/tests/turn/aiortc_relay.py" "$url" restsecret 50 >"$out" 2>&1; then
            pass "aiortc data channel, relay only, TURN over ${transport^^} ($(tail -n1 "$out"))"
        else
            fail "aiortc data channel, relay only, TURN over ${transport^^}" "$out"
        fi
        out="$WORK/chromium-$transport.out"
        # shellcheck disable=SC2046
        if timeout 120 ip netns exec "$NS" node "$ROOT/tests/turn/chromium_relay.js" "$url" $(mint "chromium-$transport") >"$out" 2>&1 &&
            grep -q '^PASS$' "$out"; then
            pass "Chromium video call + data channel, relay only, TURN over ${transport^^} ($(head -c 120 "$out"))"
        else
            fail "Chromium video call + data channel, relay only, TURN over ${transport^^}" "$out"
        fi
    done
    kill -INT "$NS_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$NS_PID" 2>/dev/null || break; sleep 0.1; done
    if grep -Eq '^tandem_turn_relayed_packets_total\{direction="to_client"\} [1-9]' "$WORK/ns-turnd.log"; then
        pass "the WebRTC media went through the relay (metrics)"
    else
        fail "the WebRTC media went through the relay (metrics)" "$WORK/ns-turnd.log"
    fi
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
