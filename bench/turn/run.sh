#!/usr/bin/env bash
# TURN relay benchmark: the same turnutils_uclient load against coturn's
# `turnserver` and against Tandem's TURN server (release build), in one run,
# on 127.0.0.1. Reports delivered packets/s (tot_recv_msgs / wall time),
# loss, and each server's CPU seconds (utime+stime from /proc/PID/stat).
#
# Tunables (environment): CLIENTS, MSGS, LEN, INTERVAL_MS, ROUNDS, TRANSPORT
# (udp|tcp), MODE (peer|c2c).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CLIENTS="${CLIENTS:-50}"
MSGS="${MSGS:-2000}"
LEN="${LEN:-170}"
INTERVAL_MS="${INTERVAL_MS:-2}"
ROUNDS="${ROUNDS:-2}"
TRANSPORT="${TRANSPORT:-udp}"
MODE="${MODE:-peer}"
COTURN_PORT=23478
TANDEM_PORT=24478
PEER_PORT=25490

if ! command -v turnserver >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y coturn >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y coturn >/dev/null; }
fi

cd "$ROOT"
timeout 1800 cargo build -j2 --release -p tandem-turn --example turnd >&2
TURND="$ROOT/target/release/examples/turnd"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# coturn: its own defaults plus the minimum to run here (a user, loopback
# peers allowed, no CLI/TLS/DTLS, its own ports).
turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 \
    --listening-port="$COTURN_PORT" --min-port=26000 --max-port=27999 \
    --lt-cred-mech --user=alice:alicepw --realm=tandem \
    --allow-loopback-peers --no-cli --no-tls --no-dtls \
    --log-file=stdout --simple-log >"$WORK/coturn.log" 2>&1 &
COTURN_PID=$!
PIDS+=("$COTURN_PID")

cat >"$WORK/turn.toml" <<TOML
udp_bind = "127.0.0.1:$TANDEM_PORT"
tcp_bind = "127.0.0.1:$TANDEM_PORT"
public_ip = "127.0.0.1"
relay_bind_ip = "127.0.0.1"
relay_port_min = 28000
relay_port_max = 29999
realm = "tandem"
max_allocations_per_user = 100000
allowed_peer_ips = ["127.0.0.1/32"]
[static_users]
alice = "alicepw"
TOML
"$TURND" "$WORK/turn.toml" >"$WORK/tandem.log" 2>&1 &
TANDEM_PID=$!
PIDS+=("$TANDEM_PID")

turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >/dev/null 2>&1 &
PIDS+=($!)
sleep 1
kill -0 "$COTURN_PID" || { cat "$WORK/coturn.log"; exit 1; }
kill -0 "$TANDEM_PID" || { cat "$WORK/tandem.log"; exit 1; }

TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

ARGS=(-u alice -w alicepw -c -n "$MSGS" -m "$CLIENTS" -l "$LEN" -z "$INTERVAL_MS")
[ "$TRANSPORT" = tcp ] && ARGS+=(-t)
if [ "$MODE" = c2c ]; then ARGS+=(-y); else ARGS+=(-e 127.0.0.1 -r "$PEER_PORT"); fi
echo "uclient parameters: turnutils_uclient ${ARGS[*]} -p PORT 127.0.0.1" >&2

declare -A SUM_PPS SUM_CPU SUM_SENT SUM_RECV
run_one() { # name pid port
    local name=$1 pid=$2 port=$3 out="$WORK/$1.out"
    local c0 c1 t0 t1
    c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
    timeout 600 turnutils_uclient "${ARGS[@]}" -p "$port" 127.0.0.1 >"$out" 2>&1 || true
    t1=$(date +%s.%N); c1=$(cpu_ticks "$pid")
    local line sent recv
    line=$(grep -E "tot_send_msgs=[0-9]+, tot_recv_msgs=[0-9]+$" "$out" | tail -n1)
    sent=$(sed -E 's/.*tot_send_msgs=([0-9]+),.*/\1/' <<<"$line")
    recv=$(sed -E 's/.*tot_recv_msgs=([0-9]+)$/\1/' <<<"$line")
    sent=${sent:-0}; recv=${recv:-0}
    local pps cpu
    pps=$(awk -v r="$recv" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", r/(b-a)}')
    cpu=$(awk -v a="$c0" -v b="$c1" -v t="$TCK" 'BEGIN{printf "%.2f", (b-a)/t}')
    local connect
    connect=$(grep -Eo "Total connect time is [0-9]+" "$out" | tail -n1 | grep -Eo "[0-9]+$" || true)
    printf "%-7s round %s: sent %7s recv %7s  %8s pkt/s delivered  cpu %6ss  wall %.1fs (uclient connect phase %ss)\n" \
        "$name" "$r" "$sent" "$recv" "$pps" "$cpu" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" "${connect:-?}"
    SUM_PPS[$name]=$(( ${SUM_PPS[$name]:-0} + pps ))
    SUM_CPU[$name]=$(awk -v a="${SUM_CPU[$name]:-0}" -v b="$cpu" 'BEGIN{print a+b}')
    SUM_SENT[$name]=$(( ${SUM_SENT[$name]:-0} + sent ))
    SUM_RECV[$name]=$(( ${SUM_RECV[$name]:-0} + recv ))
}

for r in $(seq 1 "$ROUNDS"); do
    run_one coturn "$COTURN_PID" "$COTURN_PORT"
    run_one tandem "$TANDEM_PID" "$TANDEM_PORT"
done

echo
printf "%-8s %14s %10s %12s\n" server "pkt/s (mean)" "loss %" "cpu s (sum)"
for n in coturn tandem; do
    loss=$(awk -v s="${SUM_SENT[$n]}" -v r="${SUM_RECV[$n]}" 'BEGIN{ if (s==0) print "n/a"; else printf "%.3f", 100*(s-r)/s }')
    printf "%-8s %14s %10s %12s\n" "$n" "$(( ${SUM_PPS[$n]} / ROUNDS ))" "$loss" "${SUM_CPU[$n]}"
done
awk -v t="${SUM_PPS[tandem]}" -v c="${SUM_PPS[coturn]}" -v tc="${SUM_CPU[tandem]}" -v cc="${SUM_CPU[coturn]}" \
    'BEGIN{ printf "ratio tandem/coturn: delivered pkt/s %.2fx, cpu %.2fx\n", (c>0?t/c:0), (cc>0?tc/cc:0) }'
