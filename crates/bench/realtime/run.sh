#!/usr/bin/env bash
# Realtime benchmark driver (issue #5). Builds nothing: uses target/release/thingline
# (cargo build --release -p thingline) and the npm packages of this folder (npm ci here).
# Usage: crates/bench/realtime/run.sh [--quick] [extra realtime-bench.js flags...]
#   run 1: latency (1,000 subscribers, 20 writes/s) and fan-out steps, then the reference
#   run 2: memory of 10,000 idle Socket.IO connections, then the reference
# Results: stdout (summary), $OUT_DIR/{traffic,memory}.json, server logs in $OUT_DIR.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
BIN="${THINGLINE_BIN:-$ROOT/target/release/thingline}"
OUT_DIR="${OUT_DIR:-$(mktemp -d /tmp/thingline-rt-bench.XXXXXX)}"
EXTRA=()
QUICK=0
for a in "$@"; do
  if [[ "$a" == --quick ]]; then QUICK=1; else EXTRA+=("$a"); fi
done

[[ -x "$BIN" ]] || { echo "missing $BIN: cargo build --release -p thingline" >&2; exit 1; }
[[ -d "$HERE/node_modules/socket.io-client" && -d "$HERE/node_modules/socket.io" ]] || {
  echo "missing npm packages: npm ci --prefix $HERE" >&2; exit 1; }

# 10,000 sockets: the server and the reference need > 10k descriptors (clients are split over workers).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "open files limit: $(ulimit -n)" >&2
if (( $(ulimit -n) < 12000 )); then echo "ulimit -n $(ulimit -n) < 12000: cannot hold 10,000 sockets" >&2; exit 1; fi

export THINGLINE_PANEL_EMAIL=rt-bench@example.com
export THINGLINE_PANEL_PASSWORD=rt-bench-password
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
trap cleanup EXIT INT TERM

# start_server NAME: a fresh data dir, port 0, HTTPS only; sets SERVER_PID, PORT, DATA.
start_server() {
  DATA="$OUT_DIR/data-$1"; mkdir -p "$DATA"
  LOG="$OUT_DIR/server-$1.log"
  "$BIN" serve --data-dir "$DATA" --https-addr 127.0.0.1:0 --mqtt-addr off --mqtts-addr off \
    --coap-addr off --max-connections 30000 --log info --log-format text 2>"$LOG" >/dev/null &
  SERVER_PID=$!
  PORT=""
  for _ in $(seq 300); do
    PORT="$(sed -n 's/.*listening.*listener=https.*addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$LOG" | head -1)"
    [[ -n "$PORT" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited:" >&2; cat "$LOG" >&2; exit 1; }
    sleep 0.1
  done
  [[ -n "$PORT" ]] || { echo "server did not log its port within 30 s" >&2; cat "$LOG" >&2; exit 1; }
  echo "server $1: pid $SERVER_PID port $PORT log $LOG" >&2
}

bench() {
  timeout --signal=KILL 900 node "$HERE/realtime-bench.js" main --url "https://127.0.0.1:$PORT" \
    --ca "$DATA/tls/cert.pem" --key "$DATA/tls/key.pem" --pid "$SERVER_PID" --server-log "$LOG" "$@"
}

Q_TRAFFIC=(); Q_MEMORY=()
if (( QUICK )); then
  Q_TRAFFIC=(--latency-seconds 3 --fanout-seconds 2 --fanout 1000x100 --stats-wait 0)
  Q_MEMORY=(--idle 1000 --settle-seconds 1)
fi

start_server traffic
bench --phases latency,fanout --client raw,sio --json "$OUT_DIR/traffic.json" "${Q_TRAFFIC[@]}" "${EXTRA[@]}"
cleanup

start_server memory
bench --phases memory --client raw --json "$OUT_DIR/memory.json" "${Q_MEMORY[@]}" "${EXTRA[@]}"
cleanup
echo "results in $OUT_DIR" >&2
